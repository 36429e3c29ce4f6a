"""Toolchains per build context, the build root they need, and the driver's flag helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from apkfarm.build.driver import toolflags
from apkfarm.build.driver.api import _expand_take
from apkfarm.build.driver.config import BuildConfig, BuildPaths
from apkfarm.build.driver.split import package_options
from apkfarm.build.toolchain import ToolchainError, resolve_toolchain
from apkfarm.profiles import resolve_context
from apkfarm.sandbox import BuildRoot, SandboxError
from apkfarm.templates.fields import HARDENING, worker_spec


def test_native_gcc() -> None:
    toolchain = resolve_toolchain(resolve_context("x86_64", host="x86_64"))
    assert toolchain.tools["CC"] == "gcc" and toolchain.tools["AR"] == "ar"
    assert toolchain.emulator == () and toolchain.libc_dir is None
    assert toolchain.flags["CFLAGS"] == ("-O2", "-pipe")
    assert "libc.so.6" in toolchain.base_libraries
    assert "ld-linux-x86-64.so.2" in toolchain.base_libraries
    assert "libgreet.so.1" not in toolchain.base_libraries


@pytest.mark.parametrize(
    ("arch", "triplet", "loader"),
    [
        ("aarch64", "aarch64-linux-gnu", "ld-linux-aarch64.so.1"),
        ("riscv64", "riscv64-linux-gnu", "ld-linux-riscv64-lp64d.so.1"),
    ],
)
def test_cross_gcc_uses_the_debian_cross_toolchain_and_qemu(
    arch: str, triplet: str, loader: str
) -> None:
    toolchain = resolve_toolchain(resolve_context(arch, host="x86_64"))
    assert toolchain.cross
    assert toolchain.tools["CC"] == f"{triplet}-gcc"
    assert toolchain.tools["STRIP"] == f"{triplet}-strip"
    assert toolchain.host_tools["CC"] == "gcc"  # CC_FOR_BUILD stays native
    assert toolchain.emulator == (f"qemu-{arch}-static", "-L", f"/usr/{triplet}")
    assert str(toolchain.libc_dir) == f"/usr/{triplet}"
    assert loader in toolchain.base_libraries


def test_clang_links_with_lld_except_on_riscv64() -> None:
    aarch64 = resolve_toolchain(resolve_context("aarch64", host="x86_64"), "clang")
    assert aarch64.tools["CC"] == "aarch64-linux-gnu-clang"
    assert aarch64.wrappers["aarch64-linux-gnu-clang"] == ("clang", "--target=aarch64-linux-gnu")
    assert aarch64.flags["LDFLAGS"][0] == "-fuse-ld=lld"
    riscv = resolve_toolchain(resolve_context("riscv64", host="x86_64"), "clang")
    assert "-fuse-ld=lld" not in riscv.flags["LDFLAGS"]
    native = resolve_toolchain(resolve_context("x86_64", host="x86_64"), "clang")
    assert native.tools["CC"] == "clang" and not native.wrappers
    with pytest.raises(ToolchainError, match="unknown compiler"):
        resolve_toolchain(resolve_context("x86_64", host="x86_64"), "icc")  # type: ignore[arg-type]


def test_profile_flags_replace_the_defaults(tmp_path: Path) -> None:
    profiles = tmp_path / "etc/build_profiles"
    profiles.mkdir(parents=True)
    (profiles / "x86_64.ini").write_text("[profile]\n[flags]\nCFLAGS = -O3 -march=x86-64-v2\n")
    context = resolve_context("x86_64", host="x86_64", tree=tmp_path)
    toolchain = resolve_toolchain(context)
    assert toolchain.flags["CFLAGS"] == ("-O3", "-march=x86-64-v2")
    assert toolchain.flags["LDFLAGS"] == ("-Wl,--as-needed", "-Wl,-z,relro", "-Wl,-z,now")


def _fake_root(tmp_path: Path, programs: list[str], libc: str | None = None) -> BuildRoot:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    for name in programs:
        (root / "usr/bin" / name).write_text("#!/bin/sh\n")
    if libc:
        (root / "usr" / libc / "include").mkdir(parents=True)
    return BuildRoot(root)


def test_a_build_root_without_the_cross_toolchain_is_refused_with_package_names(
    tmp_path: Path,
) -> None:
    toolchain = resolve_toolchain(resolve_context("aarch64", host="x86_64"))
    root = _fake_root(tmp_path, ["gcc", "make", "sh", "ar"])
    with pytest.raises(ToolchainError) as caught:
        toolchain.check(root)
    message = str(caught.value)
    assert "missing programs: aarch64-linux-gnu-ar, aarch64-linux-gnu-gcc" in message
    assert "no C library headers in /usr/aarch64-linux-gnu/include" in message
    assert "gcc-aarch64-linux-gnu libc6-dev-arm64-cross" in message
    complete = ["gcc", "make", "sh", "ar", "aarch64-linux-gnu-gcc", "aarch64-linux-gnu-ar"]
    without_qemu = _fake_root(tmp_path / "no-qemu", complete, libc="aarch64-linux-gnu")
    toolchain.check(without_qemu)  # qemu is optional: it only runs target programs
    assert toolchain.for_build_root(without_qemu).emulator == ()
    with_qemu = _fake_root(
        tmp_path / "qemu", [*complete, "qemu-aarch64-static"], libc="aarch64-linux-gnu"
    )
    assert toolchain.for_build_root(with_qemu).emulator[0] == "qemu-aarch64-static"


def test_the_build_root_binds_usr_and_only_named_etc_entries(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc/alternatives").mkdir(parents=True)
    (root / "etc/shadow").write_text("root:x:::")
    (root / "bin").symlink_to("usr/bin")
    binds, links = BuildRoot(root).mounts()
    targets = {str(b.target) for b in binds}
    assert targets == {"/usr", "/etc/alternatives"}
    assert all(not b.writable for b in binds)
    assert [(link.target, str(link.path)) for link in links] == [("usr/bin", "/bin")]
    with pytest.raises(SandboxError, match="may be bound"):
        BuildRoot(root, etc_files=("../root",)).mounts()
    with pytest.raises(SandboxError, match="no usr"):
        BuildRoot(tmp_path / "empty").mounts()


# --- the driver's helpers (stdlib code, importable here) ---------------------------------


def test_hardening_switches_and_their_flags() -> None:
    switches = toolflags.hardening(HARDENING, ["!ssp", "vis", "unknown"])
    assert switches["ssp"] is False and switches["vis"] is True
    flags = toolflags.hardening_flags(switches, "CFLAGS", compiler="gcc", arch="riscv64")
    assert "-fstack-protector-strong" not in flags and "-fvisibility=hidden" in flags
    assert "-fstack-clash-protection" not in flags  # not for riscv64
    on_x86 = toolflags.hardening_flags(HARDENING, "CFLAGS", compiler="clang", arch="x86_64")
    assert "-fstack-clash-protection" in on_x86 and "-ftrivial-auto-var-init=zero" not in on_x86
    assert toolflags.hardening_flags(HARDENING, "LDFLAGS", compiler="gcc", arch="x86_64") == []


def test_take_shorthands() -> None:
    assert _expand_take("usr/include") == [("usr/include", False)]
    assert _expand_take("cmd:greet") == [
        ("usr/bin/greet", False),
        ("usr/share/man/man[18]/greet.[18]", True),
    ]
    assert _expand_take("lib:libgreet.so.*") == [("usr/lib/libgreet.so.*", False)]
    assert _expand_take("man:greet.3") == [("usr/share/man/man3/greet.3", False)]


def test_subpackage_options_inherit_only_global_ones() -> None:
    spec = worker_spec()["options"]
    parent = package_options(spec, ["!check", "!autosplit", "etcfiles"], "foo", None)
    assert parent["check"] is False and parent["autosplit"] is False and parent["etcfiles"]
    child = package_options(spec, [], "foo-devel", parent)
    assert child["check"] is False  # global: inherited
    assert child["autosplit"] is True and child["etcfiles"] is False  # per package: defaults
    assert child["splitstatic"] is True  # -devel packages keep static libraries
    assert package_options(spec, ["!splitstatic"], "foo-devel", parent)["splitstatic"] is False


def test_build_config_round_trip_and_protocol_check() -> None:
    paths = BuildPaths(
        builddir="/builddir",
        srcdir="/builddir/x-1",
        statedir="/builddir/.apkfarm",
        destdir="/destdir",
        sysroot="/sysroot",
        template_dir="/ports/main/x",
        sources="/sources",
        tmpdir="/tmp",
    )
    config = BuildConfig(
        spec={"fields": []},
        item={"id": 1},
        context={"cross": False},
        paths=paths,
        toolchain={"tools": {"CC": "gcc"}},
        env={"PATH": "/usr/bin"},
        hardening=dict(HARDENING),
        jobs=2,
        source_date_epoch=5,
        skip_check="cross build",
    )
    again = BuildConfig.from_json(config.to_json())
    assert again == config and again.paths.srcdir == "/builddir/x-1"
    with pytest.raises(ValueError, match="protocol"):
        BuildConfig.from_json(config.to_json().replace('"protocol": 1', '"protocol": 9'))
