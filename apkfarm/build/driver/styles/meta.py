"""``build_style = "meta"``: a package made only of its dependencies; nothing is built."""

from __future__ import annotations

from typing import Any

from apkfarm.build.driver.api import BuildTemplate

DEFAULTS: tuple[tuple[str, Any], ...] = ()


def install(self: BuildTemplate) -> None:
    self.destdir.mkdir(parents=True, exist_ok=True)


def use(template: BuildTemplate) -> None:
    template.style_functions.update(install=install)
