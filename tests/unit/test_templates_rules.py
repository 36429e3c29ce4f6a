"""cbuild's load-time rules applied to worker results (pure: no sandbox needed)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from test_templates_helpers import raw

from apkfarm.profiles import resolve_context
from apkfarm.templates import LoadPolicy
from apkfarm.templates.fields import inherited_options, resolve_options
from apkfarm.templates.model import Subpackage, Template
from apkfarm.templates.rules import (
    RuleOutcome,
    _parse_problem,
    apply_rules,
    dependency,
    pkgdesc_problems,
    url_problems,
)

NATIVE = resolve_context("x86_64", host="x86_64")
CROSS = resolve_context("aarch64", host="x86_64")


def check(
    result: dict[str, Any],
    *,
    dirname: str | None = None,
    category: str = "main",
    context: Any = NATIVE,
    policy: LoadPolicy | None = None,
) -> RuleOutcome:
    return apply_rules(
        result,
        category=category,
        dirname=dirname or result["fields"]["pkgname"],
        context=context,
        policy=policy or LoadPolicy(),
    )


def errors_of(result: dict[str, Any], **kwargs: Any) -> list[str]:
    outcome = check(result, **kwargs)
    assert outcome.template is None, "expected the template to be refused"
    return list(outcome.errors)


def test_a_valid_template_gets_defaults_filled_in() -> None:
    outcome = check(raw("foo", makedepends=["bar-devel"]))
    template = outcome.template
    assert template is not None and not outcome.errors
    assert template.full_name == "main/foo"
    assert template.version == "1.0-r0"
    assert template.makedepends == ("bar-devel",)
    assert template.fields["make_cmd"] == "make"  # a default
    assert template.fields["origin"] == "foo"  # cbuild fills origin in
    assert template.options["check"] is True
    assert template.excluded is None


def test_worker_failures_become_errors() -> None:
    result = {"ok": False, "error": "syntax error at line 3: invalid syntax"}
    assert errors_of(result, dirname="foo") == ["syntax error at line 3: invalid syntax"]


@pytest.mark.parametrize("missing", ["pkgname", "pkgver", "pkgrel", "pkgdesc", "license", "url"])
def test_every_mandatory_field_is_required(missing: str) -> None:
    result = raw("foo")
    del result["fields"][missing]
    errors = errors_of(result, dirname="foo")
    assert f"mandatory template field not declared: {missing}" in errors


def test_type_problems_from_the_worker_refuse_the_template() -> None:
    result = raw("foo")
    result["problems"] = ["invalid value for field makedepends (expected 'list' but got 'str')"]
    assert errors_of(result) == result["problems"]


def test_a_wrongly_typed_mandatory_field_is_not_also_reported_missing() -> None:
    result = raw("foo")
    del result["fields"]["pkgrel"]
    result["problems"] = ["invalid value for field pkgrel (expected 'int' but got 'str')"]
    assert errors_of(result) == result["problems"]


def test_pkgname_must_match_the_directory() -> None:
    assert errors_of(raw("foo"), dirname="bar") == [
        "declared pkgname does not match template (bar)"
    ]


def test_names_must_be_lowercase() -> None:
    assert "package name must be lowercase" in errors_of(raw("Foo"))
    errors = errors_of(raw("foo", subpackages=["Foo-devel"]))
    assert "subpackage 'Foo-devel' must be lowercase" in errors


def test_subpackage_names_must_be_unique() -> None:
    errors = errors_of(raw("foo", subpackages=["foo-devel", "foo-devel", "foo"]))
    assert "subpackage 'foo-devel' already exists" in errors
    assert "subpackage 'foo' already exists" in errors


def test_unknown_options_are_errors_and_known_ones_resolve() -> None:
    assert "unknown option: frobnicate" in errors_of(raw("foo", options=["!frobnicate"]))
    template = check(raw("foo", options=["!check", "bootstrap"])).template
    assert template is not None
    assert template.options["check"] is False and template.options["bootstrap"] is True
    assert template.written_options == ("!check", "bootstrap")


def test_subpackage_options_inherit_global_ones_only() -> None:
    result = raw(
        "foo",
        options=["!check", "!strip"],
        subpackages=[{"name": "foo-devel", "options": ["!lintstatic"]}],
    )
    template = check(result).template
    assert template is not None
    devel = template.subpackages[0]
    assert devel.options["check"] is False  # global: inherited
    assert devel.options["strip"] is True  # per package: default
    assert devel.options["lintstatic"] is False
    assert devel.options["splitstatic"] is True  # -devel packages split static libs
    assert "unknown subpackage option: nope" in errors_of(
        raw("foo", subpackages=[{"name": "foo-devel", "options": ["nope"]}])
    )


@pytest.mark.parametrize(
    ("pkgver", "pkgrel"),
    [("1.0-beta", 0), ("v1.0", 0), ("1.0_foo", 0), ("", 0), ("1.0", -1), ("1..0", 0)],
)
def test_pkgver_must_be_a_valid_apk_version(pkgver: str, pkgrel: int) -> None:
    errors = errors_of(raw("foo", pkgver=pkgver, pkgrel=pkgrel))
    assert any(e.startswith("pkgver has an invalid format") for e in errors), errors


@pytest.mark.parametrize("pkgver", ["1.0", "1.2.3_rc1", "2024.01.01", "1.0a_p2", "0.1~abc1"])
def test_valid_versions_pass(pkgver: str) -> None:
    assert check(raw("foo", pkgver=pkgver)).template is not None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Frobnicator for foo files.", "pkgdesc should not end with a period"),
        (" Frobnicator", "pkgdesc should not start with whitespace"),
        ("Frobnicator ", "pkgdesc should not end with whitespace"),
        ("A frobnicator", "pkgdesc should not start with an article"),
        ("An editor", "pkgdesc should not start with an article"),
        ("The editor", "pkgdesc should not start with an article"),
        ("frobnicator", "pkgdesc should start with an uppercase letter"),
        ("F" * 73, "pkgdesc should be no longer than 72 characters"),
        ("Editor written in Rust", "pkgdesc should not mention the choice of language"),
        (
            "Editor (development files)",
            "pkgdesc should not contain a (subdescription); use 'subdesc'",
        ),
    ],
)
def test_pkgdesc_rules(text: str, problem: str) -> None:
    assert problem in pkgdesc_problems(text)
    assert problem in errors_of(raw("foo", pkgdesc=text))


@pytest.mark.parametrize("text", ["F" * 72, "Anemone viewer", "Theme engine", "X11 editor"])
def test_good_pkgdescs_pass(text: str) -> None:
    assert pkgdesc_problems(text) == []


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.org/foo", "url must be http or https"),
        ("example.org/foo", "failed to parse url"),
        ("https://example.org/foo/", "url path must not end with a slash"),
        ("https://example.org/", "url path must not end with a slash"),
        ("https:///foo", "url has no host"),
    ],
)
def test_url_rules(url: str, problem: str) -> None:
    assert problem in url_problems(url)
    assert problem in errors_of(raw("foo", url=url))


@pytest.mark.parametrize(
    "url", ["https://example.org", "http://example.org/foo", "https://x.org/a/b?c=d/"]
)
def test_good_urls_pass(url: str) -> None:
    assert url_problems(url) == []


def test_lint_rules_are_skipped_with_not_lint_as_cbuild_does() -> None:
    result = raw("foo", pkgdesc="a lowercase desc.", url="https://example.org/", options=["!lint"])
    result["unknown_variables"] = ["stray"]
    assert check(result).template is not None


def test_unknown_variables_and_hooks_are_errors() -> None:
    result = raw("foo")
    result["unknown_variables"] = ["maintainer", "homepage"]
    result["unknown_hooks"] = ["do_frobnicate"]
    errors = errors_of(result)
    assert "unknown variable: maintainer" in errors
    assert "unknown variable: homepage" in errors
    assert "unknown hook: do_frobnicate" in errors


@pytest.mark.parametrize(
    "dependency", ["so:libz.so.1", "cmd:awk", "pc:zlib>=1.2", "virtual:editor"]
)
def test_virtual_runtime_dependencies_need_a_provider(dependency: str) -> None:
    errors = errors_of(raw("foo", depends=[dependency]))
    assert (
        f"virtual dependency '{dependency}' has no specified provider "
        "(specify one by appending '!provider')"
    ) in errors
    errors = errors_of(raw("foo", subpackages=[{"name": "foo-x", "depends": [dependency]}]))
    assert any(e.startswith("subpackage 'foo-x': virtual dependency") for e in errors)


def test_virtual_dependencies_with_provider_and_conflicts_pass() -> None:
    template = check(
        raw("foo", depends=["cmd:awk!base-files", "so:libz.so.1!zlib", "!oldfoo", "bar>=2"])
    ).template
    assert template is not None
    assert template.depends == ("cmd:awk!base-files", "so:libz.so.1!zlib", "!oldfoo", "bar>=2")


@pytest.mark.parametrize("entry", ["bar>=1", "!bar", "pc:zlib!zlib-devel", "so:libfoo.so.1"])
def test_build_dependencies_name_templates_only(entry: str) -> None:
    errors = errors_of(raw("foo", makedepends=[entry]))
    assert f"makedepends entry '{entry}' must be a plain template or subpackage name" in errors


def test_malformed_dependencies_are_reported() -> None:
    errors = errors_of(raw("foo", depends=["bar baz"], hostmakedepends=[3]))
    assert any("invalid dependency 'bar baz'" in e for e in errors)
    assert "hostmakedepends contains a int, not a string" in errors


def test_provides_must_be_names_with_optional_exact_version() -> None:
    assert check(raw("foo", provides=["so:libfoo.so.1=1.0", "foo-compat"])).template
    errors = errors_of(raw("foo", provides=["bar>=1"]))
    assert "provides entry 'bar>=1' must be 'name' or 'name=version'" in errors


def test_unknown_hardening_and_build_style_are_errors() -> None:
    errors = errors_of(raw("foo", hardening=["!pie", "warp"], build_style="autotools"))
    assert "unknown hardening option 'warp'" in errors
    assert "unknown build_style 'autotools'" in errors


def test_install_if_needs_an_exact_own_version() -> None:
    errors = errors_of(raw("foo", install_if=["bar"]))
    assert "install_if for 'foo' must have at least one exact '=1.0-r0'" in errors
    assert check(raw("foo", install_if=["bar", "foo-base=1.0-r0"])).template


def test_priorities_must_not_be_negative() -> None:
    assert "provider_priority must be positive" in errors_of(raw("foo", provider_priority=-1))


def test_subpackage_fields_start_from_the_template_or_the_default() -> None:
    result = raw(
        "foo",
        license="GPL-2.0-or-later",
        provides=["foo-compat"],
        subpackages=[{"name": "foo-devel", "depends": ["foo=1.0-r0"]}],
    )
    template = check(result).template
    assert template is not None
    devel = template.subpackages[0]
    assert devel.fields["license"] == "GPL-2.0-or-later"  # inherited
    assert devel.fields["origin"] == "foo"  # inherited, filled in by cbuild
    assert devel.provides == ()  # not inherited
    assert devel.depends == ("foo=1.0-r0",)


# --- exclusions: valid templates that may not build here ---------------------------


def exclusion(result: dict[str, Any], **kwargs: Any) -> str | None:
    outcome = check(result, **kwargs)
    assert outcome.template is not None, outcome.errors
    return outcome.template.excluded


def test_broken_templates_are_excluded_with_the_reason() -> None:
    assert (
        exclusion(raw("foo", broken="segfaults"))
        == "cannot be built, it's currently broken: segfaults"
    )


def test_restricted_templates_are_excluded_unless_allowed() -> None:
    result = raw("foo", restricted="patents")
    assert exclusion(result) == "cannot be built, it's restricted: patents"
    assert exclusion(result, policy=LoadPolicy(allow_restricted=True)) is None


def test_not_ci_templates_are_excluded_only_when_ci_is_not_allowed() -> None:
    result = raw("foo", options=["!ci"])
    assert exclusion(result) is None
    assert (
        exclusion(result, policy=LoadPolicy(allow_ci=False)) == "cannot be built in CI environment"
    )


def test_disallowed_categories_are_excluded() -> None:
    reason = exclusion(raw("foo"), category="contrib")
    assert reason == "cannot be built, disallowed category (not in main, user)"


def test_not_cross_templates_are_excluded_when_cross_compiling() -> None:
    result = raw("foo", options=["!cross"])
    assert exclusion(result) is None
    assert exclusion(result, context=CROSS) == "cannot be cross-compiled"


def test_archs_decide_last_and_broken_wins_first() -> None:
    assert exclusion(raw("foo", archs=["aarch64"])) == "this package cannot be built for x86_64"
    assert exclusion(raw("foo", archs=["aarch64"]), context=CROSS) is None
    both = raw("foo", archs=["aarch64"], broken="no")
    assert exclusion(both) == "cannot be built, it's currently broken: no"


def test_archs_must_be_strings() -> None:
    assert "archs must be a list of strings" in errors_of(raw("foo", archs=["x86_64", 3]))


# Every character apk allows in a name, and a few it does not.
NAME_CHARACTERS = "abcXYZ019+-._,:/[]"
ODD_CHARACTERS = " !<=>~@*\t"


@pytest.mark.parametrize("character", list(NAME_CHARACTERS + ODD_CHARACTERS))
def test_plain_build_dependencies_are_judged_as_parsing_would(character: str) -> None:
    # Build lists skip parsing for bare names; what they say must not change.
    for entry in (f"foo{character}bar", f"{character}foo", f"foo{character}"):
        parsed = dependency(entry)
        expected = []
        if parsed is None:
            expected.append(f"makedepends: {_parse_problem(entry)}")
        elif parsed.conflict or parsed.op or parsed.provider or ":" in parsed.name:
            expected.append(
                f"makedepends entry '{entry}' must be a plain template or subpackage name"
            )
        result = raw("foo", makedepends=[entry])
        assert [e for e in check_errors(result) if e.startswith("makedepends")] == expected


def check_errors(result: dict[str, Any]) -> list[str]:
    return list(check(result).errors)


def test_repeated_dependency_entries_are_reported_for_every_template() -> None:
    # Verdicts are remembered per entry; each template still gets its message.
    for name in ("foo", "bar", "baz"):
        assert errors_of(raw(name, makedepends=["x>=1"], depends=["cmd:y", "cmd:y"])) == [
            "makedepends entry 'x>=1' must be a plain template or subpackage name",
            "virtual dependency 'cmd:y' has no specified provider "
            "(specify one by appending '!provider')",
            "virtual dependency 'cmd:y' has no specified provider "
            "(specify one by appending '!provider')",
        ]


@pytest.mark.parametrize(
    "fields",
    [
        {"pkgdesc": 3},
        {"provider_priority": "high"},
        {"url": ["https://example.org"]},
        {"hardening": 5},
    ],
)
def test_a_forged_worker_result_is_refused_not_raised(fields: dict[str, Any]) -> None:
    # Template code shares the worker's process and may forge its report.
    result = raw("foo")
    result["fields"].update(fields)
    errors = errors_of(result)
    assert len(errors) == 1
    assert errors[0].startswith("the evaluation worker sent a malformed result")


def test_a_forged_result_without_field_mapping_is_refused() -> None:
    errors = errors_of({"ok": True, "fields": ["pkgname"]}, dirname="foo")
    assert errors[0].startswith("the evaluation worker sent a malformed result")


def test_assembled_templates_equal_constructed_ones() -> None:
    outcome = check(
        raw(
            "foo",
            makedepends=["bar"],
            depends=["so:libz.so.1!zlib"],
            provides=["cmd:foo=1.0-r0"],
            subpackages=[{"name": "foo-devel", "depends": ["bar"], "provides": ["pc:foo"]}],
        )
    )
    assembled = outcome.template
    assert assembled is not None
    values = {f.name: getattr(assembled, f.name) for f in dataclasses.fields(Template) if f.init}
    constructed = Template(**values)
    assert constructed == assembled
    for name in ("full_name", "version", "makedepends", "depends", "provides", "package_names"):
        assert getattr(constructed, name) == getattr(assembled, name)
    assert assembled.depends == ("so:libz.so.1!zlib",)
    (sub,) = assembled.subpackages
    sub_values = {f.name: getattr(sub, f.name) for f in dataclasses.fields(Subpackage) if f.init}
    rebuilt = Subpackage(**sub_values)
    assert rebuilt == sub
    assert (
        (rebuilt.depends, rebuilt.provides)
        == (sub.depends, sub.provides)
        == (("bar",), ("pc:foo",))
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        assembled.pkgname = "bar"  # type: ignore[misc]


@pytest.mark.parametrize("written", [[], ["!check"], ["!cross", "lto", "!strip"], ["bogus"]])
@pytest.mark.parametrize(("parent", "sub"), [("foo", "foo-devel"), ("foo-devel", "foo-progs")])
def test_subpackage_options_from_the_parents_written_ones_match_the_full_resolution(
    written: list[str], parent: str, sub: str
) -> None:
    parent_options, _ = resolve_options(written, parent)
    expected, unknown = resolve_options((), sub, parent_options)
    assert unknown == []
    assert dict(inherited_options(written, parent, sub)) == dict(expected)
