"""Template ``options`` that steer packaging, with cbuild's names and defaults.

A template writes ``options = ["etcfiles", "!check"]``: a bare name turns an
option on, ``!name`` turns it off, and every option has a default. This
module knows every option cbuild documents (so a typo is refused, as cbuild
does) and turns the list into :class:`PackageOptions`, the subset the
scanners and the packaging lint read. Options about the build itself
(``check``, ``parallel``, ``lto``, …) are accepted here and left to the phase
runner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

from apkfarm.build.errors import BuildError

# Options cbuild documents that matter to the build, not to packaging.
BUILD_OPTIONS = frozenset(
    {
        "bootstrap", "parallel", "debug", "check", "checkroot", "installroot", "cross",
        "lint", "relr", "lto", "ltofull", "linkparallel", "linkundefver", "framepointer",
        "fullrustflags", "sanruntime", "strip", "ltostrip", "autosplit", "splitstatic",
        "splitudev", "splitdinit", "splitdoc", "keepempty", "keeplibtool", "spdx",
        "distlicense", "scantrigdeps", "scanservices", "scandevelif", "lintcomp",
    }
)  # fmt: skip


@dataclass(frozen=True)
class PackageOptions:
    """The per-package options the scanners and the lint honour (cbuild defaults)."""

    # automatic dependencies and provides
    scanrundeps: bool = True
    scanshlibs: bool = True
    scanpkgconf: bool = True
    scancmd: bool = True
    # ELF checks
    foreignelf: bool = False
    textrels: bool = False
    execstack: bool = False
    # tree checks
    brokenlinks: bool = False
    hardlinks: bool = False
    etcfiles: bool = False
    empty: bool = False
    lintstatic: bool = True
    lintpixmaps: bool = True

    @classmethod
    def parse(cls, options: Iterable[str], *, where: str = "template") -> PackageOptions:
        """Apply a template's ``options`` list to the defaults.

        ``where`` names the template or package in the error for an unknown option.
        """
        known = {f.name for f in fields(cls)}
        changes: dict[str, bool] = {}
        for raw in options:
            name = raw.removeprefix("!")
            if name in known:
                changes[name] = not raw.startswith("!")
            elif name not in BUILD_OPTIONS:
                raise BuildError(f"{where}: unknown option {raw!r}")
        return replace(cls(), **changes)
