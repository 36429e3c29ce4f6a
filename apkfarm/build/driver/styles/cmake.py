"""``build_style = "cmake"``: cmake with Ninja out of tree in ``make_dir``, ctest for check.

Cross builds get a toolchain file (written to the state directory) naming
the target compilers, searching libraries and headers only in the cross C
library and the sysroot, and running target programs under qemu.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from apkfarm.build.driver.api import BuildTemplate

DEFAULTS: tuple[tuple[str, Any], ...] = (("make_cmd", "ninja"), ("make_dir", "build"))


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def toolchain_file(self: BuildTemplate) -> Path:
    profile = self.profile
    emulator = self.config.toolchain.get("emulator") or []
    lines = [
        "set(CMAKE_SYSTEM_NAME Linux)",
        f"set(CMAKE_SYSTEM_PROCESSOR {_quoted(profile.machine)})",
    ]
    for language, tool in (("C", "CC"), ("CXX", "CXX")):
        command = shlex.split(self.get_tool(tool) or "")
        if command:
            lines.append(f"set(CMAKE_{language}_COMPILER {_quoted(command[0])})")
            if len(command) > 1:
                lines.append(
                    f"set(CMAKE_{language}_COMPILER_ARG1 {_quoted(' '.join(command[1:]))})"
                )
    roots = f"/usr/{profile.triplet};{self.sysroot_path}"
    lines += [
        f"set(CMAKE_FIND_ROOT_PATH {_quoted(roots)})",
        "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)",
    ]
    if emulator:
        lines.append(f"set(CMAKE_CROSSCOMPILING_EMULATOR {_quoted(';'.join(emulator))})")
    path = self.statedir / "cmake-toolchain.cmake"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def configure(self: BuildTemplate) -> None:
    source = self.cmake_dir or "."
    args = [
        "-S", source, "-B", self.make_dir,
        "-DCMAKE_INSTALL_PREFIX=/usr",
        "-DCMAKE_BUILD_TYPE=None",
        "-DCMAKE_INSTALL_LIBDIR=lib",
        "-DCMAKE_INSTALL_SBINDIR=bin",
    ]  # fmt: skip
    if self.make.get_command() == "ninja":
        args = ["-G", "Ninja", *args]
    if self.profile.cross:
        args.append(f"-DCMAKE_TOOLCHAIN_FILE={toolchain_file(self)}")
    elif self.config.sysroot_populated:
        args.append(f"-DCMAKE_PREFIX_PATH={self.sysroot_path}/usr")
    self.do("cmake", *args, *self.configure_args, env=self.configure_env)


def build(self: BuildTemplate) -> None:
    self.make.build()


def check(self: BuildTemplate) -> None:
    self.do(
        "ctest",
        f"-j{self.make_jobs}",
        "--output-on-failure",
        *self.make_check_args,
        wrksrc=self.make_dir,
        env=self.make_check_env,
    )


def install(self: BuildTemplate) -> None:
    self.make.install()


def use(template: BuildTemplate) -> None:
    template.style_functions.update(configure=configure, build=build, check=check, install=install)
