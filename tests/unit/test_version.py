"""apk version rules (apkfarm.version) against apk-tools' own test data and by hand."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest
from conftest import VECTORS

from apkfarm.errors import ApkfarmError
from apkfarm.version import (
    OPERATORS,
    Dependency,
    InvalidVersion,
    _scan,  # the reference tokenizer, held to the same answers as the fast path
    compare,
    fuzzy_match,
    is_valid,
    match,
    parse_dependency,
    sort_key,
    validate,
)

CASES = Path("versions") / "apk-version-cases.txt"


# --- the vector file ----------------------------------------------------------------


def _case_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, case) for every line that holds a case; comments stripped."""
    cases = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        case = raw.split("#", 1)[0].strip()
        if case:
            cases.append((number, case))
    return cases


def _collected_cases() -> list[tuple[int, str]]:
    # Parametrisation happens before fixtures exist; the test body still goes
    # through the `vectors` fixture, which skips (or fails in CI) if they are missing.
    path = VECTORS / CASES
    return _case_lines(path) if path.is_file() else [(0, "<vector file missing>")]


def _check_case(case: str) -> None:
    """Assert one line of the vector file, in apk-tools' test-harness syntax."""
    fields = case.split()
    if len(fields) == 1:
        text = fields[0]
        if text.startswith("!"):
            assert not is_valid(text[1:]), f"{text[1:]!r} must be rejected"
            with pytest.raises(InvalidVersion, match="invalid version"):
                sort_key(text[1:])
        else:
            assert is_valid(text), f"{text!r} must be valid"
            assert validate(text) == text
        return
    assert len(fields) == 3, f"malformed vector line {case!r}"
    a, written_op, b = fields
    negated = written_op.startswith("!")
    op = written_op.removeprefix("!")
    expected = not negated
    # apk's own token walk (used for lenient comparison) must agree on every line
    assert match(a, op, b, strict=False) is expected
    if is_valid(a) and is_valid(b):
        assert match(a, op, b) is expected
        if op == "~":
            assert fuzzy_match(a, b) is expected
        if op in {"<", "=", ">"} and not negated:
            want = {"<": -1, "=": 0, ">": 1}[op]
            assert compare(a, b) == want
            assert compare(b, a) == -want
            key_a, key_b = sort_key(a), sort_key(b)
            assert ((key_a > key_b) - (key_a < key_b)) == want
    else:
        # apk compares even strings it would not accept as versions; we refuse
        # them by default and reproduce apk's answer only when asked to.
        with pytest.raises(InvalidVersion):
            match(a, op, b)


@pytest.mark.parametrize(("line", "case"), _collected_cases(), ids=str)
def test_apk_version_case(vectors: Path, line: int, case: str) -> None:
    lines = dict(_case_lines(vectors / CASES))
    assert lines.get(line) == case, "vector file changed between collection and run"
    _check_case(case)


def test_every_line_of_the_vector_file_is_a_case(vectors: Path) -> None:
    path = vectors / CASES
    cases = _case_lines(path)
    comments = [
        line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()[:1] == "#"
    ]
    blank = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.strip()]
    total = len(path.read_text(encoding="utf-8").splitlines())
    assert len(cases) + len(comments) + len(blank) == total
    assert len(cases) > 400
    assert {len(case.split()) for _, case in cases} <= {1, 3}


# --- validity ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "version",
    ["0", "1.2.3", "1.2.3a", "1.0_alpha", "1.0_beta2_p3", "1.0_rc1-r5", "2~deadbeef-r1", "1a_p1"],
)
def test_valid_versions(version: str) -> None:
    assert is_valid(version)


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ("", "is empty"),
        ("v1.0", "must start with a digit"),
        ("1.0bc", "letter 'c' at offset 4 may only follow a digit group"),
        ("1.0a1", "digit '1' at offset 4 cannot follow a letter"),
        ("1..2", "'.' at offset 1 must be followed by digits"),
        ("1.", "'.' at offset 1 must be followed by digits"),
        ("1.0_foo", "unknown suffix '_foo'"),
        ("1.0_RC1", "unknown suffix '_'"),
        ("1.0-1", "'-' at offset 3 must start a revision"),
        ("1.0-r", "needs a number"),
        ("1.0-r1-r2", "second revision"),
        ("1.0-r1_p1", "cannot follow a commit hash or revision"),
        ("1.0~", "must be followed by a lowercase hex hash"),
        ("1.0~ab~cd", "must come once"),
        ("1.0 ", "unexpected character ' '"),
        ("1.0_pre1.1", "'.' at offset 8 may only follow a digit group"),
    ],
)
def test_invalid_versions_say_why(version: str, reason: str) -> None:
    assert not is_valid(version)
    with pytest.raises(InvalidVersion) as error:
        validate(version)
    assert repr(version) in str(error.value)
    assert reason in str(error.value)
    with pytest.raises(InvalidVersion):
        compare(version, "1")
    with pytest.raises(InvalidVersion):
        compare("1", version)


def test_grammar_and_tokenizer_agree_on_validity() -> None:
    # is_valid uses a compiled grammar; error messages and lenient comparison use
    # the character scanner that mirrors apk's tokenizer. They must never disagree.
    rng = random.Random(7)
    alphabet = "0123456789.abcfz_~-r" + "ép"
    pieces = ["_alpha", "_rc", "_p", "_pre", "_git", "-r", "~", ".", "1", "0", "a"]
    for _ in range(20000):
        text = "".join(
            rng.choice(pieces) if rng.random() < 0.4 else rng.choice(alphabet)
            for _ in range(rng.randint(0, 9))
        )
        assert is_valid(text) is (_scan(text).problem is None), text


def test_long_and_non_ascii_versions_follow_apk() -> None:
    assert is_valid("1." + "9" * 5000)  # wraps modulo 2**64 like apk, no overflow error
    assert compare("1." + "9" * 5000, "1.1") in {-1, 1}
    assert is_valid("1~abé")  # apk's hash span never stops at bytes >= 0x80
    assert not is_valid("1é")
    assert not is_valid("\u0661")  # ARABIC-INDIC DIGIT ONE is not an ASCII digit


def test_invalid_version_is_an_apkfarm_error() -> None:
    assert issubclass(InvalidVersion, ApkfarmError)
    assert not is_valid(1.0)  # type: ignore[arg-type]


# --- ordering ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.0_alpha", "1.0_beta"),
        ("1.0_beta", "1.0_pre"),
        ("1.0_pre", "1.0_rc"),
        ("1.0_rc", "1.0"),
        ("1.0", "1.0_cvs"),
        ("1.0_cvs", "1.0_svn"),
        ("1.0_svn", "1.0_git"),
        ("1.0_git", "1.0_hg"),
        ("1.0_hg", "1.0_p"),
        ("1.0_rc1", "1.0_rc2"),
        ("1.0_rc9", "1.0_rc10"),
        ("1.0", "1.0-r0"),  # any revision is newer than none
        ("1.0-r9", "1.0-r10"),
        ("1.0", "1.0a"),
        ("1.0a", "1.0b"),
        ("1.0z", "1.0.1"),  # a further digit group beats a letter
        ("1.0", "1.0.0"),
        ("1.9", "1.10"),
        ("1.02", "1.1"),  # leading zero: string comparison
        ("1.010", "1.02"),
        ("1.0", "1.00"),
        ("1.09", "1.1"),
        ("1.001", "1.01"),
        ("1.0~abc", "1.0~abd"),  # hashes compare as strings
        ("1.0", "1.0~0"),  # like any further token, a hash makes it newer ...
        ("1.0-r9", "1.0~0"),  # ... and a hash outranks a revision, as in apk
        ("1.0~abc-r1", "1.0~abc-r2"),
        ("1.0_p1", "1.0a"),
        ("9", "10"),
        ("1", "006"),  # the first group is always numeric
        ("18446744073709551616", "1.0"),  # 2**64 wraps to 0, as in apk
    ],
)
def test_order(older: str, newer: str) -> None:
    assert compare(older, newer) == -1
    assert compare(newer, older) == 1
    assert sort_key(older) < sort_key(newer)
    assert match(older, "<", newer)
    assert match(newer, ">", older)
    assert not match(older, ">=", newer)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1.0", "1.0"),
        ("01.0", "1.0"),
        ("1.0-r01", "1.0-r1"),
        ("1_p01", "1_p1"),
        ("18446744073709551617", "1"),
    ],
)
def test_equal_spellings(a: str, b: str) -> None:
    assert compare(a, b) == 0
    assert sort_key(a) == sort_key(b)
    assert match(a, "=", b)


def _random_version(rng: random.Random) -> str:
    groups = [str(rng.randint(0, 12))]
    for _ in range(rng.randint(0, 3)):
        groups.append(rng.choice(["0", "00", "01", "1", "2", "9", "10", "010", "11"]))
    text = ".".join(groups)
    if rng.random() < 0.3:
        text += rng.choice("abz")
    for _ in range(rng.choice([0, 0, 1, 2])):
        text += "_" + rng.choice(["alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"])
        if rng.random() < 0.5:
            text += str(rng.randint(0, 11))
    if rng.random() < 0.2:
        text += "~" + rng.choice(["0", "a1", "ab", "f"])
    if rng.random() < 0.5:
        text += f"-r{rng.randint(0, 11)}"
    return text


def test_sort_key_agrees_with_compare_on_generated_versions() -> None:
    rng = random.Random(20240601)
    versions = sorted({_random_version(rng) for _ in range(300)})
    assert all(is_valid(v) for v in versions)
    keys = {v: sort_key(v) for v in versions}
    for a in versions:
        for b in versions:
            key_order = (keys[a] > keys[b]) - (keys[a] < keys[b])
            assert compare(a, b) == key_order, (a, b)
    # the lenient path walks apk's tokens instead of comparing keys: same answers
    for a in versions[::12]:
        for b in versions:
            assert compare(a, b, strict=False) == compare(a, b), (a, b)
            assert fuzzy_match(a, b, strict=False) is fuzzy_match(a, b), (a, b)
    # compare is a total order, so sorting with it gives the same order as the key
    by_compare = sorted(versions, key=functools.cmp_to_key(compare))
    assert by_compare == sorted(versions, key=sort_key)


# --- fuzzy matching ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "pattern", "expected"),
    [
        ("1.2", "1.2", True),
        ("1.2.3", "1.2", True),
        ("1.2_rc1", "1.2", True),  # fuzzy is a token prefix, suffixes included
        ("1.2-r4", "1.2", True),
        ("1.2a", "1.2", True),
        ("1.20", "1.2", False),  # token values differ, not a string prefix
        ("1.3", "1.2", False),
        ("1", "1.2", False),  # the pattern has more tokens
        ("1.2", "1.2.0", False),
        ("1.02", "1.2", False),
    ],
)
def test_fuzzy_match(version: str, pattern: str, expected: bool) -> None:
    assert fuzzy_match(version, pattern) is expected
    assert match(version, "~", pattern) is expected


def test_fuzzy_range_operators() -> None:
    # "<~" accepts what is older than or fuzzily equal to the pattern, ">~" the reverse
    assert match("1.1", "<~", "1.2")
    assert match("1.2.9", "<~", "1.2")
    assert not match("1.3", "<~", "1.2")
    assert match("1.3", ">~", "1.2")
    assert match("1.2.0", ">~", "1.2")
    assert not match("1.1.9", ">~", "1.2")


def test_match_rejects_unknown_operator() -> None:
    with pytest.raises(ApkfarmError, match="unknown version operator '=>'"):
        match("1", "=>", "1")


# --- dependencies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "op", "version", "conflict", "provider"),
    [
        ("foo", "foo", None, None, False, None),
        ("foo>=1.2", "foo", ">=", "1.2", False, None),
        ("foo<2", "foo", "<", "2", False, None),
        ("foo~1.2", "foo", "~", "1.2", False, None),
        ("foo=1.2-r3", "foo", "=", "1.2-r3", False, None),
        ("foo<~1.2", "foo", "<~", "1.2", False, None),
        ("!foo", "foo", None, None, True, None),
        ("!foo<2", "foo", "<", "2", True, None),
        ("cmd:awk!base-files", "cmd:awk", None, None, False, "base-files"),
        ("so:libc.so.6", "so:libc.so.6", None, None, False, None),
        ("so:libstdc++.so.6!libstdc++", "so:libstdc++.so.6", None, None, False, "libstdc++"),
        ("pc:zlib>=1.2!zlib-devel", "pc:zlib", ">=", "1.2", False, "zlib-devel"),
        ("virtual:x!y", "virtual:x", None, None, False, "y"),
        ("cmd:[!chimerautils", "cmd:[", None, None, False, "chimerautils"),
        (
            "foo><Q1abcdefghijklmnopqrstuvwxyz0=",
            "foo",
            "><",
            "Q1abcdefghijklmnopqrstuvwxyz0=",
            False,
            None,
        ),
    ],
)
def test_parse_dependency(
    text: str, name: str, op: str | None, version: str | None, conflict: bool, provider: str | None
) -> None:
    dep = parse_dependency(text)
    assert dep == Dependency(name, op, version, conflict, provider)
    assert str(dep) == text


def test_virtual_names_and_the_apk_form() -> None:
    dep = parse_dependency("pc:zlib>=1.2!zlib-devel")
    assert dep.is_virtual
    assert dep.to_apk() == "pc:zlib>=1.2"
    assert not parse_dependency("zlib-devel>=1.2").is_virtual
    assert parse_dependency("!foo<2").to_apk() == "!foo<2"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "it is empty"),
        ("foo >=1", "whitespace"),
        (">=1.2", "the package name is empty"),
        ("foo>=", "no version after '>='"),
        ("foo=>1", "unknown operator '=>'"),
        ("foo==1", "unknown operator '=='"),
        ("foo>=1.2bc", "version '1.2bc' letter 'c'"),
        ("foo>=abc", "version 'abc' must start with a digit"),
        ("foo!bar", "may only follow a virtual name"),
        ("!cmd:awk!base-files", "a conflict ('!name') cannot name a provider"),
        ("cmd:awk!", "nothing after the provider '!'"),
        ("cmd:awk!base-files>=1", "must be a plain package name"),
        ("cmd:awk!a!b", "more than one provider"),
        ("foo@edge", "repository tags"),
        ("fo$o", "contains '$'"),
        ("foo><not a hash", "whitespace"),
        ("foo><Q1*", "is not a Q1/X1 package hash"),
    ],
)
def test_parse_dependency_rejects_malformed_input(text: str, reason: str) -> None:
    with pytest.raises(ApkfarmError) as error:
        parse_dependency(text)
    assert f"invalid dependency {text!r}" in str(error.value)
    assert reason in str(error.value)


def test_dependency_fields_are_checked_on_construction() -> None:
    with pytest.raises(ApkfarmError, match="an operator needs a version"):
        Dependency("foo", ">=")
    with pytest.raises(ApkfarmError, match="unknown operator"):
        Dependency("foo", "!=", "1")
    with pytest.raises(ApkfarmError, match="invalid dependency 'foo>=x'"):
        Dependency("foo", ">=", "x")
    assert str(Dependency("foo", ">=", "1")) == "foo>=1"


@pytest.mark.parametrize(
    ("text", "version", "expected"),
    [
        ("foo", "0.1", True),
        ("foo>=1.2", "1.2", True),
        ("foo>=1.2", "1.2_rc1", False),
        ("foo>=1.2", "1.10", True),
        ("foo<2", "1.99", True),
        ("foo<2", "2", False),
        ("foo<2", "2_alpha", True),
        ("foo>1.2", "1.2-r0", True),
        ("foo=1.2", "1.2-r0", False),
        ("foo<=1.2-r1", "1.2-r1", True),
        ("foo~1.2", "1.2.7-r3", True),
        ("foo~1.2", "1.3", False),
        ("!foo", "1", False),  # a conflict with any version: nothing satisfies it
        ("!foo<2", "1.5", False),
        ("!foo<2", "2.0", True),
        ("cmd:awk!base-files", "1", True),
    ],
)
def test_dependency_matches(text: str, version: str, expected: bool) -> None:
    assert parse_dependency(text).matches(version) is expected


def test_dependency_matches_refuses_bad_versions_and_checksums() -> None:
    with pytest.raises(InvalidVersion, match=r"'1\.0bc'"):
        parse_dependency("foo>=1").matches("1.0bc")
    with pytest.raises(ApkfarmError, match="package checksum"):
        parse_dependency("foo><Q1abc=").matches("1.0")


def test_operators_listed() -> None:
    assert set(OPERATORS) == {"<", "<=", "=", ">=", ">", "~", "<~", ">~", "><"}
