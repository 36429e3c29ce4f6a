"""apk version strings: validity, ordering, fuzzy matching and dependency constraints.

The rules are apk-tools' (``src/version.c`` of apk-tools 2.14 / 3.x), because the
versions we write are compared by apk on the machines that install them:

    version  = digits { "." digits } [ letter ] { "_" suffix [ digits ] }
               [ "~" hash ] [ "-r" digits ]
    letter   = one of a-z, directly after the last digit group
    suffix   = alpha | beta | pre | rc          (sort below the release)
             | cvs | svn | git | hg | p         (sort above the release)
    hash     = lowercase hex digits (a commit id)

A version is read as a sequence of tokens and two versions are compared token by
token. Three details that surprise people:

* A dot-separated digit group that starts with ``0`` (on either side) is compared
  as a string, like Gentoo does: ``1.02 < 1.1`` and ``1.010 < 1.02``. The first
  group is always numeric: ``006 > 1.0``.
* When one version runs out first, the longer one is newer unless the next token
  is a pre-release suffix: ``1.0 < 1.0.1``, ``1.0 < 1.0-r0``, ``1.0_rc1 < 1.0``.
* A commit hash (``~abc``) counts as one more token, ranked above a revision:
  ``1.0 < 1.0-r9 < 1.0~abc`` (hashes compare as strings among themselves).
* Numbers are unsigned 64-bit in apk, so digit groups wrap modulo 2**64; we do
  the same so that we never order two versions differently from apk.

Fuzzy matching (``foo~1.2``) holds when the version's leading tokens equal all the
pattern's tokens: ``1.2.3 ~ 1.2`` and ``1.2_rc1 ~ 1.2``, but not ``1.20 ~ 1.2``.
``<~`` and ``>~`` are apk's "older than or fuzzily equal" / "newer than or fuzzily
equal".

Dependencies are written ``[!]name[op version][!provider]``. The trailing
``!provider`` is cports' notation (``cmd:awk!base-files``): it tells the build
which package satisfies a virtual name; apk itself never sees it (``to_apk()``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import NamedTuple

from apkfarm.errors import ApkfarmError

__all__ = [
    "OPERATORS",
    "VIRTUAL_PREFIXES",
    "Dependency",
    "InvalidVersion",
    "VersionKey",
    "compare",
    "fuzzy_match",
    "is_valid",
    "match",
    "parse_dependency",
    "sort_key",
    "validate",
]


class InvalidVersion(ApkfarmError):
    """A string that apk would reject as a version; the message says why."""


# Token kinds, in apk's order. The order matters: when two versions agree up to a
# point and then continue with tokens of different kinds, the one whose next token
# has the *higher* kind is the older version (END sorts below everything but a
# pre-release suffix).
_INITIAL = 0
_DIGIT = 1
_LETTER = 2
_SUFFIX = 3
_SUFFIX_NO = 4
_HASH = 5
_REVISION = 6
_END = 7
_INVALID = 8

# Suffix words and their order; _RELEASE is the pivot between pre- and post-release.
_SUFFIX_ORDER = {
    "alpha": 1,
    "beta": 2,
    "pre": 3,
    "rc": 4,
    "cvs": 6,
    "svn": 7,
    "git": 8,
    "hg": 9,
    "p": 10,
}
_RELEASE = 5

_UINT64 = 1 << 64
_DIGITS = frozenset("0123456789")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_HEX = frozenset("0123456789abcdef")


class _Token(NamedTuple):
    kind: int
    text: str  # the token as written (digits, letter, suffix word, hash)
    number: int  # digit value modulo 2**64, suffix order, or letter code


class _Parsed(NamedTuple):
    tokens: tuple[_Token, ...]  # always ends with one _END or _INVALID token
    problem: str | None  # why the version is invalid, or None


def _uint64(digits: str) -> int:
    """The value apk computes for a digit run: an unsigned 64-bit number that wraps."""
    if len(digits) <= 19:  # 10**19 - 1 < 2**64: no wrap, and int() is fast
        return int(digits)
    value = 0
    for start in range(0, len(digits), 18):  # chunked: int() refuses > 4300 digits
        chunk = digits[start : start + 18]
        value = (value * 10 ** len(chunk) + int(chunk)) % _UINT64
    return value


def _span(text: str, start: int, allowed: frozenset[str], *, high_bytes: bool = False) -> int:
    """Index just past the run of characters in `allowed` that begins at `start`.

    With `high_bytes`, non-ASCII characters also continue the run: apk scans bytes
    and its character classes only cover ASCII, so bytes >= 0x80 never stop a span.
    """
    end = start
    while end < len(text) and (text[end] in allowed or (high_bytes and ord(text[end]) > 0x7F)):
        end += 1
    return end


def _scan(version: str) -> _Parsed:
    """apk's tokenizer, character by character, up to the first invalid token.

    This is the reference reading of a version: it explains what is wrong with an
    invalid one, and lenient comparison walks its tokens. Valid versions take the
    faster _key path, which the tests hold to the same answers.
    """
    tokens: list[_Token] = []
    end = _span(version, 0, _DIGITS)
    if end == 0:
        problem = "is empty" if not version else "must start with a digit"
        return _Parsed((_Token(_INVALID, "", 0),), problem)
    tokens.append(_Token(_INITIAL, version[:end], _uint64(version[:end])))
    kind = _INITIAL
    pos = end

    def invalid(problem: str) -> _Parsed:
        tokens.append(_Token(_INVALID, "", 0))
        return _Parsed(tuple(tokens), problem)

    while pos < len(version):
        char = version[pos]
        if char in _LOWER:
            if kind > _DIGIT:
                return invalid(f"letter {char!r} at offset {pos} may only follow a digit group")
            kind = _LETTER
            tokens.append(_Token(_LETTER, char, ord(char)))
            pos += 1
        elif char == "." or char in _DIGITS:
            if char == ".":
                if kind > _DIGIT:
                    return invalid(f"'.' at offset {pos} may only follow a digit group")
                pos += 1
            if kind in (_INITIAL, _DIGIT):
                kind = _DIGIT
            elif kind == _SUFFIX:
                kind = _SUFFIX_NO
            else:
                return invalid(f"digit {char!r} at offset {pos} cannot follow a letter")
            end = _span(version, pos, _DIGITS)
            if end == pos:
                return invalid(f"'.' at offset {pos - 1} must be followed by digits")
            tokens.append(_Token(kind, version[pos:end], _uint64(version[pos:end])))
            pos = end
        elif char == "_":
            if kind > _SUFFIX_NO:
                return invalid(f"suffix at offset {pos} cannot follow a commit hash or revision")
            end = _span(version, pos + 1, _LOWER, high_bytes=True)
            word = version[pos + 1 : end]
            if word not in _SUFFIX_ORDER:
                known = " ".join(f"_{w}" for w in _SUFFIX_ORDER)
                return invalid(f"unknown suffix '_{word}' at offset {pos} (known: {known})")
            kind = _SUFFIX
            tokens.append(_Token(_SUFFIX, word, _SUFFIX_ORDER[word]))
            pos = end
        elif char == "~":
            if kind >= _HASH:
                return invalid(f"commit hash '~' at offset {pos} must come once, before '-r'")
            end = _span(version, pos + 1, _HEX, high_bytes=True)
            if end == pos + 1:
                return invalid(f"'~' at offset {pos} must be followed by a lowercase hex hash")
            kind = _HASH
            tokens.append(_Token(_HASH, version[pos + 1 : end], 0))
            pos = end
        elif char == "-":
            if kind >= _REVISION:
                return invalid(f"second revision at offset {pos}")
            if not version.startswith("-r", pos):
                return invalid(f"'-' at offset {pos} must start a revision '-rN'")
            end = _span(version, pos + 2, _DIGITS)
            if end == pos + 2:
                return invalid(f"revision '-r' at offset {pos} needs a number")
            kind = _REVISION
            tokens.append(
                _Token(_REVISION, version[pos + 2 : end], _uint64(version[pos + 2 : end]))
            )
            pos = end
        else:
            return invalid(f"unexpected character {char!r} at offset {pos}")
    tokens.append(_Token(_END, "", 0))
    return _Parsed(tuple(tokens), None)


def _token_order(a: _Token, b: _Token) -> int:
    """Compare two tokens of the same kind as apk does."""
    # A digit group with a leading zero on either side compares as a string
    # (Gentoo's rule, so 1.02 < 1.1); a hash always compares as a string.
    if a.kind == _HASH or (a.kind == _DIGIT and (a.text[0] == "0" or b.text[0] == "0")):
        return (a.text > b.text) - (a.text < b.text)
    return (a.number > b.number) - (a.number < b.number)


def _walk(a: _Parsed, b: _Parsed, *, fuzzy: bool) -> int:
    """apk's comparison of two token streams, valid or not; -1, 0 or 1."""
    index = 0
    ta, tb = a.tokens[0], b.tokens[0]
    while ta.kind == tb.kind and ta.kind < _END:
        order = _token_order(ta, tb)
        if order:
            return order
        index += 1
        ta, tb = a.tokens[index], b.tokens[index]
    if ta.kind == tb.kind:  # both ended (or both broke off at the same place)
        return 0
    if fuzzy and tb.kind == _END:  # every token of the pattern matched
        return 0
    # Equal so far; the longer version is newer unless it continues with a
    # pre-release suffix (1.0_rc1 < 1.0 < 1.0.1 < 1.0-r1).
    if ta.kind == _SUFFIX and ta.number < _RELEASE:
        return -1
    if tb.kind == _SUFFIX and tb.number < _RELEASE:
        return 1
    return -1 if ta.kind > tb.kind else 1


# A sort key has one (rank, sub-rank, value) triple per token, the last one for
# the end of the version. The ranks encode _walk's rule for versions that agree
# so far and then continue with different kinds of token (pre-release suffix <
# end < revision < hash < suffix number < post-release suffix < letter < digit
# group), so plain tuple comparison of two keys gives apk's order.
VersionKey = tuple[tuple[int, int, int | str], ...]
_RANK_PRE_RELEASE = 0
_RANK_END = 1
_RANK_REVISION = 2
_RANK_HASH = 3
_RANK_SUFFIX_NO = 4
_RANK_POST_RELEASE = 5
_RANK_LETTER = 6
_RANK_DIGIT = 7
_RANK_INITIAL = 8  # always the first token, never compared with another kind

# The whole grammar of a valid version, as apk's tokenizer accepts it. apk's spans
# treat bytes >= 0x80 as hex digits, hence the range in the hash.
_VALID = re.compile(
    r"(?P<digits>[0-9]+(?:\.[0-9]+)*)(?P<letter>[a-z]?)"
    r"(?P<suffixes>(?:_(?:alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]*)*)"
    r"(?:~(?P<hash>[0-9a-f\x80-\U0010ffff]+))?(?:-r(?P<revision>[0-9]+))?"
)
_SUFFIX_PARTS = re.compile(r"_([a-z]+)([0-9]*)")


# Versions repeat a lot (every dependency on a package names its version); the
# cache is bounded because each key costs a few hundred bytes.
@functools.lru_cache(maxsize=1 << 14)
def _key(version: str) -> VersionKey | None:
    """The sort key of a valid version, or None if it is invalid."""
    found = _VALID.fullmatch(version)
    if found is None:
        return None
    first, *groups = found["digits"].split(".")
    key: list[tuple[int, int, int | str]] = [(_RANK_INITIAL, 0, _uint64(first))]
    for group in groups:
        # Zero-led groups compare as strings, and every one of them is below any
        # group without a leading zero ('0' sorts before '1'..'9').
        key.append((_RANK_DIGIT, 0, group) if group[0] == "0" else (_RANK_DIGIT, 1, _uint64(group)))
    if found["letter"]:
        key.append((_RANK_LETTER, 0, ord(found["letter"])))
    for word, number in _SUFFIX_PARTS.findall(found["suffixes"]):
        order = _SUFFIX_ORDER[word]
        key.append((_RANK_PRE_RELEASE if order < _RELEASE else _RANK_POST_RELEASE, 0, order))
        if number:
            key.append((_RANK_SUFFIX_NO, 0, _uint64(number)))
    if found["hash"] is not None:
        key.append((_RANK_HASH, 0, found["hash"]))
    if found["revision"] is not None:
        key.append((_RANK_REVISION, 0, _uint64(found["revision"])))
    key.append((_RANK_END, 0, 0))
    return tuple(key)


def _require_key(version: str) -> VersionKey:
    if not isinstance(version, str):
        raise InvalidVersion(f"invalid version {version!r}: not a string")
    key = _key(version)
    if key is None:
        problem = _scan(version).problem or "is not an apk version"
        raise InvalidVersion(f"invalid version {version!r}: {problem}")
    return key


def is_valid(version: str) -> bool:
    """Whether apk accepts `version` (``apk version --check``)."""
    return isinstance(version, str) and _key(version) is not None


def validate(version: str) -> str:
    """Return `version` unchanged, or raise InvalidVersion saying what is wrong."""
    _require_key(version)
    return version


def sort_key(version: str) -> VersionKey:
    """A key with ``sort_key(a) < sort_key(b)`` exactly when ``compare(a, b) < 0``."""
    return _require_key(version)


def _order(a: str, b: str, *, fuzzy: bool, strict: bool) -> int:
    if not strict:
        return _walk(_scan(a), _scan(b), fuzzy=fuzzy)
    key_a, key_b = _require_key(a), _require_key(b)
    # Fuzzy equality: b's tokens (without its end) are the leading tokens of a.
    if fuzzy and key_a[: len(key_b) - 1] == key_b[:-1]:
        return 0
    return (key_a > key_b) - (key_a < key_b)


def compare(a: str, b: str, *, strict: bool = True) -> int:
    """-1, 0 or 1 as `a` is older than, equal to, or newer than `b`.

    With ``strict=False`` invalid strings are compared the way apk itself compares
    them (token by token up to the first invalid token) instead of raising; that
    is for reading foreign indexes, never for deciding what to build.
    """
    return _order(a, b, fuzzy=False, strict=strict)


def fuzzy_match(version: str, pattern: str, *, strict: bool = True) -> bool:
    """apk's ``~``: the leading tokens of `version` are exactly the tokens of `pattern`."""
    return _order(version, pattern, fuzzy=True, strict=strict) == 0


# Written operators and the comparison results each accepts. "<~" and ">~" are
# apk's "<= / >= with fuzzy equality" (apk_version_result_mask); "><" is a
# checksum dependency, which names a package hash, not a version.
_ACCEPTS: dict[str, frozenset[int]] = {
    "<": frozenset({-1}),
    "<=": frozenset({-1, 0}),
    "=": frozenset({0}),
    ">=": frozenset({0, 1}),
    ">": frozenset({1}),
    "~": frozenset({0}),
    "<~": frozenset({-1, 0}),
    ">~": frozenset({0, 1}),
}
_CHECKSUM = "><"
OPERATORS: tuple[str, ...] = (*_ACCEPTS, _CHECKSUM)


def match(version: str, op: str, target: str, *, strict: bool = True) -> bool:
    """Whether ``version op target`` holds, e.g. ``match("1.2-r0", ">=", "1.2")``.

    Operators containing ``~`` compare fuzzily, as apk_version_match does.
    """
    accepts = _ACCEPTS.get(op)
    if accepts is None:
        known = " ".join(_ACCEPTS)
        raise ApkfarmError(f"unknown version operator {op!r} (known: {known})")
    return _order(version, target, fuzzy="~" in op, strict=strict) in accepts


# --- dependencies -----------------------------------------------------------------

# Virtual names that cbuild resolves through an explicit provider (name!provider).
VIRTUAL_PREFIXES: tuple[str, ...] = ("so:", "pc:", "cmd:", "alt:", "virtual:")

# Characters apk allows in a dependency name (apk_ctype DEPENDENCY_NAME).
_NAME = re.compile(r"[A-Za-z0-9+\-._,:/\[\]]+")
_OPERATOR_RUN = re.compile(r"[<=>~]+")
_SPACE = re.compile(r"\s")


def _name_problem(name: str, what: str) -> str | None:
    if _NAME.fullmatch(name):
        return None
    if not name:
        return f"{what} is empty"
    if "@" in name:
        return f"repository tags ('@') are not allowed in {what} {name!r}"
    bad = sorted({c for c in name if not _NAME.fullmatch(c)})
    return f"{what} {name!r} contains {''.join(bad)!r}"


def _dependency_problem(
    name: str, op: str | None, version: str | None, conflict: bool, provider: str | None
) -> str | None:
    """Why these fields do not form a dependency, or None when they do."""
    problem = _name_problem(name, "the package name")
    if problem:
        return problem
    if (op is None) != (version is None):
        return "an operator needs a version and a version needs an operator"
    if op is not None and version is not None:
        if op not in OPERATORS:
            return f"unknown operator {op!r} (known: {' '.join(OPERATORS)})"
        if not version:
            return f"no version after {op!r}"
        if op == _CHECKSUM:
            if not all(c.isascii() and (c.isalnum() or c in "+/=") for c in version):
                return f"checksum {version!r} is not a Q1/X1 package hash"
        elif _key(version) is None:
            problem = _scan(version).problem or "is not an apk version"
            return f"version {version!r} {problem}"
    if provider is not None:
        if conflict:
            return "a conflict ('!name') cannot name a provider"
        if ":" not in name:
            prefixes = ", ".join(VIRTUAL_PREFIXES)
            return f"a provider ('!{provider}') may only follow a virtual name ({prefixes} ...)"
        problem = _name_problem(provider, "the provider")
        if problem:
            return problem
    return None


@dataclass(frozen=True)
class Dependency:
    """One dependency as a template or an index writes it.

    ``op`` is None (any version) or one of OPERATORS; ``conflict`` is the leading
    ``!`` (the named package must *not* be installed in a matching version);
    ``provider`` is cports' ``!provider`` suffix on virtual names.
    Constructing one with inconsistent fields raises ApkfarmError.
    """

    name: str
    op: str | None = None
    version: str | None = None
    conflict: bool = False
    provider: str | None = None

    def __post_init__(self) -> None:
        problem = _dependency_problem(
            self.name, self.op, self.version, self.conflict, self.provider
        )
        if problem:
            raise ApkfarmError(f"invalid dependency {self._written()!r}: {problem}")

    def _written(self, *, with_provider: bool = True) -> str:
        text = ("!" if self.conflict else "") + self.name
        if self.op is not None and self.version is not None:
            text += self.op + self.version
        if with_provider and self.provider is not None:
            text += "!" + self.provider
        return text

    def __str__(self) -> str:
        return self._written()

    def to_apk(self) -> str:
        """The form apk understands (in .PKGINFO / APKINDEX): without ``!provider``."""
        return self._written(with_provider=False)

    @property
    def is_virtual(self) -> bool:
        """A name cbuild resolves through its provider (so:, pc:, cmd:, alt:, virtual:)."""
        return self.name.startswith(VIRTUAL_PREFIXES)

    def matches(self, version: str) -> bool:
        """Whether a package of this name at `version` satisfies this dependency.

        As in apk, a conflict inverts the answer: ``!foo<2`` is satisfied by foo 2
        and later, and ``!foo`` by no version of foo at all.
        """
        validate(version)
        if self.op is None or self.version is None:
            satisfied = True
        elif self.op == _CHECKSUM:
            raise ApkfarmError(
                f"dependency {str(self)!r} names a package checksum; it cannot be "
                f"matched against version {version!r}"
            )
        else:
            satisfied = match(version, self.op, self.version)
        return satisfied != self.conflict


def parse_dependency(text: str) -> Dependency:
    """Parse ``[!]name[op version][!provider]``, e.g. ``pc:zlib>=1.2!zlib-devel``.

    Raises ApkfarmError naming `text` and what is wrong with it.
    """
    if not isinstance(text, str):
        raise ApkfarmError(f"invalid dependency {text!r}: not a string")

    def fail(problem: str) -> ApkfarmError:
        return ApkfarmError(f"invalid dependency {text!r}: {problem}")

    if not text:
        raise fail("it is empty")
    if _SPACE.search(text):
        raise fail("it contains whitespace (one dependency per entry)")
    conflict = text.startswith("!")
    rest = text[1:] if conflict else text
    provider: str | None = None
    name_and_constraint, bang, after = rest.partition("!")
    if bang:
        if not after:
            raise fail("nothing after the provider '!'")
        if _OPERATOR_RUN.search(after):
            raise fail(f"the provider {after!r} must be a plain package name, without a version")
        if "!" in after:
            raise fail("more than one provider '!'")
        provider = after
    op: str | None = None
    version: str | None = None
    name = name_and_constraint
    operator = _OPERATOR_RUN.search(name_and_constraint)
    if operator is not None:
        name = name_and_constraint[: operator.start()]
        op, version = operator.group(), name_and_constraint[operator.end() :]
    # The fields reassemble to exactly `text`, so the check on construction
    # reports the dependency as the user wrote it.
    return Dependency(name, op, version, conflict, provider)
