"""cbuild's load-time rules, applied to what the worker reported for one template.

The worker reports plain data (fields, subpackages, hooks, type problems);
here it becomes a ``Template`` or a list of reasons it was refused, and an
exclusion reason when it may not build for the context. Messages follow
cbuild's wording so that packagers recognise them.

Lint rules (lowercase name, pkgdesc, url, unknown variables and hooks) are
skipped for templates with ``options = ["!lint"]``, as cbuild skips them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apkfarm import version
from apkfarm.errors import ApkfarmError
from apkfarm.profiles import BuildContext
from apkfarm.templates.archs import arch_exclusion
from apkfarm.templates.fields import (
    BUILD_STYLES,
    FIELDS,
    HARDENING,
    inherited_options,
    resolve_options,
)
from apkfarm.templates.model import CustomTarget, Subpackage, Template

__all__ = [
    "DEFAULT_CATEGORIES",
    "FIELD_DEFAULTS",
    "VIRTUAL_PREFIXES",
    "LoadPolicy",
    "RuleOutcome",
    "apply_rules",
    "dependency",
    "pkgdesc_problems",
    "url_problems",
]

DEFAULT_CATEGORIES: tuple[str, ...] = ("main", "user")

# Names cbuild treats as virtual in runtime dependencies; they need '!provider'.
VIRTUAL_PREFIXES: tuple[str, ...] = (*version.VIRTUAL_PREFIXES, "soname:")

PKGDESC_MAX = 72

# Every field's default. Lists are tuples here: the same object is shared by
# every template that does not set the field, so it must not be mutable.
FIELD_DEFAULTS: Mapping[str, Any] = {
    f.name: tuple(f.default) if isinstance(f.default, list) else f.default for f in FIELDS
}
_SUBPACKAGE_FIELDS = tuple(f for f in FIELDS if f.subpkg)
# A subpackage's fields before the template's values for inherited ones (same order).
_SUBPACKAGE_BASE: Mapping[str, Any] = {f.name: FIELD_DEFAULTS[f.name] for f in _SUBPACKAGE_FIELDS}
_INHERITED: tuple[str, ...] = tuple(f.name for f in _SUBPACKAGE_FIELDS if f.inherit)
_MANDATORY_FIELDS = tuple(f for f in FIELDS if f.mandatory)
_MANDATORY_NAMES = frozenset(f.name for f in _MANDATORY_FIELDS)
_BUILD_LISTS = ("hostmakedepends", "makedepends", "checkdepends")


@functools.lru_cache(maxsize=1 << 17)
def dependency(text: str) -> version.Dependency | None:
    """version.parse_dependency, memoised (trees repeat the same strings), None if invalid."""
    try:
        return version.parse_dependency(text)
    except ApkfarmError:
        return None


@dataclass(frozen=True)
class LoadPolicy:
    """Which templates may build, beyond what the templates say themselves."""

    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    allow_restricted: bool = False
    allow_ci: bool = True


@dataclass(frozen=True)
class RuleOutcome:
    template: Template | None
    errors: tuple[str, ...]


# RFC 3986's split into scheme, authority and path (what urllib.parse.urlsplit does).
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?://(?P<host>[^/?#]*))?(?P<path>[^?#]*)")
_ARTICLE = re.compile(r"^(An?|The) ")
_SUBDESC = re.compile(r" \(.+\)$")


def pkgdesc_problems(text: str) -> list[str]:
    """What cbuild's lint says about a pkgdesc (empty when it is fine)."""
    problems = []
    if text.endswith("."):
        problems.append("pkgdesc should not end with a period")
    if text[:1].isspace():
        problems.append("pkgdesc should not start with whitespace")
    if text[-1:].isspace():
        problems.append("pkgdesc should not end with whitespace")
    if _ARTICLE.match(text):
        problems.append("pkgdesc should not start with an article")
    if text[:1].islower():
        problems.append("pkgdesc should start with an uppercase letter")
    if len(text) > PKGDESC_MAX:
        problems.append(f"pkgdesc should be no longer than {PKGDESC_MAX} characters")
    if " written in " in text:
        problems.append("pkgdesc should not mention the choice of language")
    if _SUBDESC.search(text):
        problems.append("pkgdesc should not contain a (subdescription); use 'subdesc'")
    return problems


def url_problems(url: str) -> list[str]:
    """What cbuild's lint says about a url (empty when it is fine)."""
    found = _URL.match(url)
    if found is None:
        return ["failed to parse url"]
    problems = []
    if found["scheme"].lower() not in ("http", "https"):
        problems.append("url must be http or https")
    elif not found["host"]:
        problems.append("url has no host")
    if found["path"].endswith("/"):
        problems.append("url path must not end with a slash")
    return problems


def _parse_problem(text: str) -> str:
    try:
        version.parse_dependency(text)
    except ApkfarmError as error:
        return str(error)
    return "invalid"  # pragma: no cover - only called for texts that do not parse


def _dependency_problems(
    field: str, entries: Sequence[Any], *, build: bool, runtime: bool
) -> list[str]:
    # Trees repeat the same few thousand names in every list: once a string
    # is found fine for a kind of list, a set vouches for it (for the whole
    # list at once, in C). Only new strings and bad entries are judged.
    fine = _FINE[build, runtime]
    try:
        if fine.issuperset(entries):
            return []
    except TypeError:  # an unhashable entry: judged with the others below
        pass
    if len(fine) > _FINE_MAX:
        fine.clear()  # a scheduler runs for months
    problems: list[str] = []
    for entry in entries:
        found = _entry_problems(field, entry, build=build, runtime=runtime)
        if found:
            problems += found
        elif type(entry) is str:
            fine.add(entry)
    return problems


# A dependency that is a bare package name: the characters apk allows in
# names (version._NAME) except ':', so neither a virtual name, an operator,
# a provider nor a conflict. It parses to Dependency(entry) with no problem.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9+\-._,/\[\]]+")

# (build, runtime) -> the strings found fine in such a list.
_FINE: dict[tuple[bool, bool], set[str]] = {
    (True, False): set(),  # hostmakedepends, makedepends, checkdepends
    (False, True): set(),  # depends
    (False, False): set(),  # install_if
}
_FINE_MAX = 1 << 17


def _entry_problems(field: str, entry: Any, *, build: bool, runtime: bool) -> tuple[str, ...]:
    """What is wrong with one entry of a dependency list (usually nothing)."""
    if not isinstance(entry, str):
        return (f"{field} contains a {type(entry).__name__}, not a string",)
    if build and _PLAIN_NAME.fullmatch(entry):
        return ()  # what parsing would find, without parsing (build lists are mostly these)
    parsed = dependency(entry)
    if parsed is None:
        return (f"{field}: {_parse_problem(entry)}",)
    problems: list[str] = []
    if build and (
        parsed.conflict
        or parsed.op is not None
        or parsed.provider is not None
        or ":" in parsed.name
    ):
        problems.append(f"{field} entry '{entry}' must be a plain template or subpackage name")
    if (
        runtime
        and not parsed.conflict
        and parsed.name.startswith(VIRTUAL_PREFIXES)
        and parsed.provider is None
    ):
        problems.append(
            f"virtual dependency '{entry}' has no specified provider "
            "(specify one by appending '!provider')"
        )
    return tuple(problems)


def _provides_problems(field: str, entries: Sequence[Any]) -> list[str]:
    problems: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            problems.append(f"{field} contains a {type(entry).__name__}, not a string")
            continue
        parsed = dependency(entry)
        if parsed is None:
            problems.append(f"{field}: {_parse_problem(entry)}")
            continue
        if parsed.conflict or parsed.provider is not None or parsed.op not in (None, "="):
            problems.append(f"{field} entry '{entry}' must be 'name' or 'name=version'")
    return problems


def _hardening_problems(owner: str, entries: Sequence[Any]) -> list[str]:
    problems = []
    for entry in entries:
        name = entry[1:] if isinstance(entry, str) and entry.startswith("!") else entry
        if name not in HARDENING:
            problems.append(f"{owner}unknown hardening option {entry!r}")
    return problems


def _install_if_problems(owner: str, entries: Sequence[Any], full_version: str) -> list[str]:
    if not entries:
        return []
    exact = f"={full_version}"
    if any(not isinstance(e, str) or e.endswith(exact) for e in entries):
        return []
    return [f"install_if for '{owner}' must have at least one exact '{exact}'"]


def _exclusion(
    fields: Mapping[str, Any],
    options: Mapping[str, bool],
    category: str,
    context: BuildContext,
    policy: LoadPolicy,
) -> str | None:
    """cbuild's reasons a valid template may not build, in cbuild's order."""
    broken = fields.get("broken")
    restricted = fields.get("restricted")
    if broken:
        return f"cannot be built, it's currently broken: {broken}"
    if restricted and not policy.allow_restricted:
        return f"cannot be built, it's restricted: {restricted}"
    if not options["ci"] and not policy.allow_ci:
        return "cannot be built in CI environment"
    if category not in policy.categories:
        return f"cannot be built, disallowed category (not in {', '.join(policy.categories)})"
    if context.cross and not options["cross"]:
        return "cannot be cross-compiled"
    return arch_exclusion(fields.get("archs"), context.target.arch)


def apply_rules(
    raw: Mapping[str, Any],
    *,
    category: str,
    dirname: str,
    context: BuildContext,
    policy: LoadPolicy,
    digest: str = "",
    key: str = "",
    repositories: tuple[str, ...] = (),
) -> RuleOutcome:
    """Turn one worker result into a Template, or the reasons cbuild refuses it."""
    if not raw.get("ok"):
        return RuleOutcome(None, (str(raw.get("error", "evaluation failed")),))
    try:
        return _apply_rules(
            raw,
            category=category,
            dirname=dirname,
            context=context,
            policy=policy,
            digest=digest,
            key=key,
            repositories=repositories,
        )
    except (TypeError, AttributeError, KeyError, ValueError) as error:
        # The worker checks types, but it shares its process with template
        # code, which may have tampered with it: what it sends is input.
        return RuleOutcome(None, (f"the evaluation worker sent a malformed result ({error!r})",))


def _apply_rules(
    raw: Mapping[str, Any],
    *,
    category: str,
    dirname: str,
    context: BuildContext,
    policy: LoadPolicy,
    digest: str,
    key: str,
    repositories: tuple[str, ...],
) -> RuleOutcome:
    # Runs once per template per cold load: fields left at their defaults
    # are skipped, and the common case takes as few steps as possible.
    written: Mapping[str, Any] = raw.get("fields", {})
    problems = raw.get("problems")
    errors: list[str] = [str(p) for p in problems] if problems else []
    if not written.keys() >= _MANDATORY_NAMES:
        for f in _MANDATORY_FIELDS:
            if f.name not in written and not any(
                p.startswith(f"invalid value for field {f.name} ") for p in errors
            ):
                errors.append(f"mandatory template field not declared: {f.name}")
    if errors:
        return RuleOutcome(None, tuple(errors))

    pkgname: str = written["pkgname"]
    if pkgname != dirname:
        return RuleOutcome(None, (f"declared pkgname does not match template ({dirname})",))

    fields = {**FIELD_DEFAULTS, **written}
    if "origin" not in written:
        fields["origin"] = pkgname  # cbuild fills it in; subpackages inherit it
    written_options = fields["options"]
    if written_options and any(not isinstance(o, str) for o in written_options):
        errors.append("options must be a list of strings")
        written_options = [o for o in written_options if isinstance(o, str)]
    options, unknown = resolve_options(written_options, pkgname)
    if unknown:
        errors += [f"unknown option: {name}" for name in unknown]

    pkgver: str = fields["pkgver"]
    pkgrel: int = fields["pkgrel"]
    full_version = f"{pkgver}-r{pkgrel}"
    if not version.is_valid(full_version):
        try:
            version.validate(full_version)
        except version.InvalidVersion as error:
            errors.append(f"pkgver has an invalid format: {error}")
        else:  # pragma: no cover - is_valid and validate agree
            errors.append("pkgver has an invalid format")

    if options["lint"]:
        if pkgname.lower() != pkgname:
            errors.append("package name must be lowercase")
        errors += pkgdesc_problems(fields["pkgdesc"])
        errors += url_problems(fields["url"])
        unknown_variables = raw.get("unknown_variables")
        if unknown_variables:
            errors += [f"unknown variable: {name}" for name in unknown_variables]
        unknown_hooks = raw.get("unknown_hooks")
        if unknown_hooks:
            errors += [f"unknown hook: {name}" for name in unknown_hooks]

    build_style = fields["build_style"]
    if build_style is not None and build_style not in BUILD_STYLES:
        errors.append(f"unknown build_style '{build_style}'")
    archs = fields["archs"]
    if archs is not None and (
        not isinstance(archs, list | tuple) or any(not isinstance(a, str) for a in archs)
    ):
        errors.append("archs must be a list of strings")

    for name in _BUILD_LISTS:
        entries = fields[name]
        if entries:
            errors += _dependency_problems(name, entries, build=True, runtime=False)
    if fields["depends"]:
        errors += _dependency_problems("depends", fields["depends"], build=False, runtime=True)
    install_if = fields["install_if"]
    if install_if:
        errors += _dependency_problems("install_if", install_if, build=False, runtime=False)
    if fields["provides"]:
        errors += _provides_problems("provides", fields["provides"])
    if fields["hardening"]:
        errors += _hardening_problems("", fields["hardening"])
    if install_if:
        errors += _install_if_problems(pkgname, install_if, full_version)
    if fields["provider_priority"] < 0:
        errors.append("provider_priority must be positive")
    if fields["replaces_priority"] < 0:
        errors.append("replaces_priority must be positive")

    subpackages: list[Subpackage] = []
    declared = raw.get("subpackages")
    if declared:
        errors += _subpackages(
            declared,
            pkgname=pkgname,
            fields=fields,
            written_options=written_options,
            options=options,
            full_version=full_version,
            subpackages=subpackages,
        )

    if errors:
        return RuleOutcome(None, tuple(errors))

    excluded = _exclusion(fields, options, category, context, policy)
    custom_targets = raw.get("custom_targets")
    log = raw.get("log")
    template = Template.assemble(
        category=category,
        pkgname=pkgname,
        pkgver=pkgver,
        pkgrel=pkgrel,
        fields=fields,
        options=options,
        subpackages=tuple(subpackages),
        all_subpackages=tuple(raw.get("all_subpackages") or ()),
        hooks=tuple(raw.get("hooks") or ()),
        custom_targets=tuple(
            CustomTarget(str(t.get("name")), t.get("after")) for t in custom_targets
        )
        if custom_targets
        else (),
        excluded=excluded,
        log=tuple(log) if log else (),
        digest=digest,
        key=key,
        repositories=repositories,
    )
    return RuleOutcome(template, ())


def _subpackages(
    declared: Sequence[Mapping[str, Any]],
    *,
    pkgname: str,
    fields: Mapping[str, Any],
    written_options: Sequence[str],
    options: Mapping[str, bool],
    full_version: str,
    subpackages: list[Subpackage],
) -> list[str]:
    """Check the subpackages the worker reported; append them to `subpackages`."""
    errors: list[str] = []
    seen = {pkgname}
    inherited = {name: fields[name] for name in _INHERITED}
    for entry in declared:
        name = entry["name"]
        if name in seen:
            errors.append(f"subpackage '{name}' already exists")
            continue
        seen.add(name)
        if name.lower() != name:
            errors.append(f"subpackage '{name}' must be lowercase")
        # The worker reports what differs from the default (the template's
        # value for inherited fields); the rest is rebuilt here.
        sp_fields: dict[str, Any] = {**_SUBPACKAGE_BASE, **inherited, **entry["fields"]}
        sp_written = [o for o in sp_fields.get("options", []) if isinstance(o, str)]
        if sp_written:
            sp_options, sp_unknown = resolve_options(sp_written, name, options)
            errors += [f"unknown subpackage option: {o}" for o in sp_unknown]
        else:  # most subpackages: the options follow from the template's alone
            sp_options = inherited_options(written_options, pkgname, name)
        where = f"subpackage '{name}': "
        depends = sp_fields.get("depends", [])
        if depends:
            errors += [
                where + p
                for p in _dependency_problems("depends", depends, build=False, runtime=True)
            ]
        provides = sp_fields.get("provides", [])
        if provides:
            errors += [where + p for p in _provides_problems("provides", provides)]
        errors += _hardening_problems(where, sp_fields.get("hardening", []))
        errors += _install_if_problems(name, sp_fields.get("install_if", []), full_version)
        subpackages.append(
            Subpackage.assemble(
                name=name,
                declared=entry["declared"],
                alternative=entry.get("alternative"),
                install=entry["install"],
                fields=sp_fields,
                options=sp_options,
            )
        )
    return errors
