"""Build styles: one module per ``build_style``, each with ``use(template)`` and ``DEFAULTS``.

``use`` plugs the style's phase functions into ``template.style_functions``
(a template's own ``configure``/``build``/``check``/``install`` still win)
and may replace ``template.make``. ``DEFAULTS`` are field values the style
implies when the template does not set them (``make_dir = "build"``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# The styles this builder implements; the others cbuild knows are refused by name.
STYLES = ("cmake", "configure", "gnu_configure", "makefile", "meson", "meta")


def load(name: str) -> ModuleType:
    """The module of build style `name` (one of STYLES)."""
    if name not in STYLES:
        known = ", ".join(STYLES)
        raise LookupError(
            f"build_style '{name}' is not supported by this builder (it has: {known})"
        )
    return importlib.import_module(f"{__name__}.{name}")
