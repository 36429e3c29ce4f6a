"""``build_style = "meson"``: meson setup in ``make_dir``, ninja, ``meson test``.

Cross builds get a cross file (written to the state directory): the
target compilers and binutils, the compiler flags (meson ignores CFLAGS
for the host machine when cross-compiling), pkg-config confined to the
sysroot, and qemu as the exe_wrapper.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from apkfarm.build.driver.api import BuildTemplate

DEFAULTS: tuple[tuple[str, Any], ...] = (("make_cmd", "ninja"), ("make_dir", "build"))

# meson's cpu_family names where they differ from the apk arch
_CPU_FAMILY = {"armv7": "arm", "ppc64le": "ppc64"}


def _value(items: list[str]) -> str:
    return "[" + ", ".join(repr(item) for item in items) + "]"


def cross_file(self: BuildTemplate) -> Path:
    profile = self.profile
    binaries = {"c": "CC", "cpp": "CXX", "ar": "AR", "strip": "STRIP", "nm": "NM"}
    lines = ["[binaries]"]
    for key, tool in binaries.items():
        value = self.get_tool(tool)
        if value:
            lines.append(f"{key} = {_value(shlex.split(value))}")
    lines.append(f"pkg-config = {_value(shlex.split(self.get_tool('PKG_CONFIG') or 'pkg-config'))}")
    emulator = self.config.toolchain.get("emulator") or []
    if emulator:
        lines.append(f"exe_wrapper = {_value(list(emulator))}")
    pc_dirs = f"{self.sysroot_path}/usr/lib/pkgconfig:{self.sysroot_path}/usr/share/pkgconfig"
    lines += [
        "",
        "[properties]",
        f"sys_root = {str(self.sysroot_path)!r}",
        f"pkg_config_libdir = {pc_dirs!r}",
        "",
        "[built-in options]",
        f"c_args = {_value(self.get_cflags())}",
        f"c_link_args = {_value(self.get_ldflags())}",
        f"cpp_args = {_value(self.get_cxxflags())}",
        f"cpp_link_args = {_value(self.get_ldflags())}",
        "",
        "[host_machine]",
        "system = 'linux'",
        f"cpu_family = {_CPU_FAMILY.get(profile.arch, profile.arch)!r}",
        f"cpu = {profile.machine!r}",
        f"endian = {profile.endian!r}",
    ]
    path = self.statedir / "meson-cross.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def configure(self: BuildTemplate) -> None:
    args = [
        "setup",
        "--prefix=/usr", "--libdir=lib", "--libexecdir=lib", "--bindir=bin", "--sbindir=bin",
        "--includedir=include", "--datadir=share", "--mandir=share/man",
        "--infodir=share/info", "--localedir=share/locale", "--sysconfdir=/etc",
        "--localstatedir=/var", "--sharedstatedir=/var/lib",
        "--buildtype=plain", "--auto-features=auto", "--wrap-mode=nodownload",
        "-Db_ndebug=true", "-Db_staticpic=true",
    ]  # fmt: skip
    if self.profile.cross:
        args.append(f"--cross-file={cross_file(self)}")
    self.do(
        "meson", *args, *self.configure_args, self.make_dir, self.meson_dir, env=self.configure_env
    )


def build(self: BuildTemplate) -> None:
    self.make.build()


def check(self: BuildTemplate) -> None:
    self.do(
        "meson",
        "test",
        "--num-processes",
        str(self.make_jobs),
        "--print-errorlogs",
        "--no-rebuild",
        *self.make_check_args,
        wrksrc=self.make_dir,
        env=self.make_check_env,
    )


def install(self: BuildTemplate) -> None:
    self.do(
        "meson", "install", "--no-rebuild", "--destdir", str(self.destdir),
        *self.make_install_args, wrksrc=self.make_dir, env=self.make_install_env,
    )  # fmt: skip


def use(template: BuildTemplate) -> None:
    template.style_functions.update(configure=configure, build=build, check=check, install=install)
