"""Build profiles, the build context, and the tables the worker receives."""

from __future__ import annotations

from pathlib import Path

import pytest

from apkfarm.profiles import (
    BUILTIN_PROFILES,
    ProfileError,
    host_arch,
    load_profiles,
    resolve_context,
)
from apkfarm.templates.fields import (
    FIELDS_BY_NAME,
    OPTIONS,
    hook_phase,
    resolve_options,
    spec_digest,
    worker_spec,
)


@pytest.mark.parametrize(
    ("arch", "triplet", "endian", "wordsize"),
    [
        ("x86_64", "x86_64-linux-gnu", "little", 64),
        ("aarch64", "aarch64-linux-gnu", "little", 64),
        ("riscv64", "riscv64-linux-gnu", "little", 64),
        ("ppc64le", "powerpc64le-linux-gnu", "little", 64),
        ("ppc64", "powerpc64-linux-gnu", "big", 64),
    ],
)
def test_builtin_profiles_use_debian_triplets(
    arch: str, triplet: str, endian: str, wordsize: int
) -> None:
    profile = BUILTIN_PROFILES[arch]
    assert (profile.triplet, profile.endian, profile.wordsize) == (triplet, endian, wordsize)
    assert profile.machine == arch


def test_cross_is_target_differing_from_host() -> None:
    assert resolve_context("x86_64", host="x86_64").cross is False
    cross = resolve_context("riscv64", host="x86_64")
    assert cross.cross is True
    assert str(cross.sysroot) == "/usr/riscv64-linux-gnu"
    assert resolve_context(host_arch()).cross is False


def test_unknown_arches_and_stages_are_refused() -> None:
    with pytest.raises(ProfileError, match="unknown architecture 'mips'"):
        resolve_context("mips", host="x86_64")
    with pytest.raises(ProfileError, match="unknown architecture 'vax'"):
        resolve_context("x86_64", host="vax")
    with pytest.raises(ProfileError, match="stage must be"):
        resolve_context("x86_64", host="x86_64", stage=7)


def test_a_tree_overrides_and_adds_profiles(tmp_path: Path) -> None:
    profiles = tmp_path / "etc" / "build_profiles"
    profiles.mkdir(parents=True)
    (profiles / "riscv64.ini").write_text(
        "[profile]\nendian = little\nwordsize = 64\ntriplet = riscv64-chimera-linux-musl\n"
        "repos = main user\n[flags]\nCFLAGS = -march=rv64gc -O2\nCXXFLAGS = ${CFLAGS}\n"
    )
    (profiles / "armhf.ini").write_text(
        "[profile]\nendian = little\nwordsize = 32\ntriplet = arm-linux-gnueabihf\n"
        "machine = armv6l\ngoarch = arm\ngoarm = 6\n"
    )
    (profiles / "bootstrap.ini").write_text("[flags]\nCFLAGS = -O0\n")
    loaded = load_profiles(tmp_path)
    riscv = loaded["riscv64"]
    assert riscv.triplet == "riscv64-chimera-linux-musl"
    assert riscv.flags["CXXFLAGS"] == ("-march=rv64gc", "-O2")
    assert riscv.repos == ("main", "user")
    assert riscv.goarch == "riscv64"  # kept from the built-in profile
    armhf = loaded["armhf"]
    assert (armhf.wordsize, armhf.machine, armhf.goarm) == (32, "armv6l", "6")
    assert "bootstrap" not in loaded
    assert resolve_context("armhf", host="x86_64", tree=tmp_path).target == armhf


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[flags]\nCFLAGS = -O2\n", "no \\[profile\\] section"),
        ("[profile]\nendian = little\nwordsize = 64\n", "has no triplet"),
        ("[profile]\nendian = middle\nwordsize = 64\ntriplet = x\n", "unknown endianness"),
        ("[profile]\nendian = little\nwordsize = 16\ntriplet = x\n", "unknown wordsize"),
    ],
)
def test_malformed_profiles_are_errors(tmp_path: Path, text: str, problem: str) -> None:
    profiles = tmp_path / "etc" / "build_profiles"
    profiles.mkdir(parents=True)
    (profiles / "newarch.ini").write_text(text)
    with pytest.raises(ProfileError, match=problem):
        load_profiles(tmp_path)


def test_profiles_change_what_templates_are_evaluated_for() -> None:
    a = resolve_context("x86_64", host="x86_64").to_json()
    b = resolve_context("aarch64", host="x86_64").to_json()
    assert a["target"] != b["target"] and a["cross"] is False and b["cross"] is True


# --- fields, options, hooks ----------------------------------------------------------


def test_field_table_matches_cbuild_for_key_fields() -> None:
    for name in ("pkgname", "pkgver", "pkgrel", "pkgdesc", "license", "url"):
        assert FIELDS_BY_NAME[name].mandatory
    assert FIELDS_BY_NAME["pkgrel"].types == ("int",)
    assert FIELDS_BY_NAME["source"].types == ("list", "str")
    assert FIELDS_BY_NAME["depends"].subpkg and not FIELDS_BY_NAME["makedepends"].subpkg
    assert FIELDS_BY_NAME["pkgdesc"].inherit and not FIELDS_BY_NAME["depends"].inherit
    assert "maintainer" not in FIELDS_BY_NAME  # dropped by current cbuild


def test_options_resolve_with_cbuild_defaults() -> None:
    options, unknown = resolve_options(["!check", "foo", "bootstrap"], "bar")
    assert unknown == ["foo"]
    assert options["check"] is False and options["bootstrap"] is True
    assert options["lto"] is True and options["splitstatic"] is False
    devel, _ = resolve_options([], "bar-devel")
    assert devel["splitstatic"] is True
    assert set(options) == set(OPTIONS)
    with pytest.raises(TypeError):
        options["check"] = True  # type: ignore[index]


@pytest.mark.parametrize(
    ("name", "phase"),
    [
        ("build", "build"),
        ("post_install", "install"),
        ("pre_configure", "configure"),
        ("init_check", "check"),
        ("do_install", "install"),
        ("post_frobnicate", None),
        ("helper", None),
    ],
)
def test_hook_names(name: str, phase: str | None) -> None:
    assert hook_phase(name) == phase


def test_the_worker_spec_digest_is_stable_and_complete() -> None:
    spec = worker_spec()
    assert {f["name"] for f in spec["fields"]} == set(FIELDS_BY_NAME)
    assert spec_digest() == spec_digest()
