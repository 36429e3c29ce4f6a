"""``build_style = "makefile"``: a plain Makefile, tools and flags passed as make variables."""

from __future__ import annotations

from typing import Any

from apkfarm.build.driver.api import BuildTemplate

DEFAULTS: tuple[tuple[str, Any], ...] = ()

_TOOLS = ("PKG_CONFIG", "OBJCOPY", "READELF", "RANLIB", "CXX", "CPP", "CC", "LD", "AR", "AS", "NM")


def build(self: BuildTemplate) -> None:
    if self.make_use_env:
        self.make.build()  # the tools are in the environment of every command
        return
    args = ["PREFIX=/usr"]
    for name in _TOOLS:
        value = self.get_tool(name)
        if value:
            args.append(f"{name}={value}")
    for flag in ("CFLAGS", "FFLAGS", "LDFLAGS", "CXXFLAGS"):
        # shell=True joins the flags into one string; nothing runs a shell
        args.append(f"{flag}={self.get_tool_flags(flag, shell=True)}")  # noqa: S604
    self.make.build(args)


def check(self: BuildTemplate) -> None:
    self.make.check()


def install(self: BuildTemplate) -> None:
    self.make.install(["STRIP=true", "PREFIX=/usr"])


def use(template: BuildTemplate) -> None:
    template.style_functions.update(build=build, check=check, install=install)
