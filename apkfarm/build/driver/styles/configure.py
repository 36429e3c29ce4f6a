"""``build_style = "configure"``: a configure script that is not autoconf, then make."""

from __future__ import annotations

from typing import Any

from apkfarm.build.driver.api import BuildTemplate

DEFAULTS: tuple[tuple[str, Any], ...] = ()


def configure(self: BuildTemplate) -> None:
    script = self.cwd / self.configure_script
    self.do(script, *self.configure_args, wrksrc=self.make_dir, env=self.configure_env)


def build(self: BuildTemplate) -> None:
    self.make.build()


def check(self: BuildTemplate) -> None:
    self.make.check()


def install(self: BuildTemplate) -> None:
    self.make.install()


def use(template: BuildTemplate) -> None:
    template.style_functions.update(configure=configure, build=build, check=check, install=install)
