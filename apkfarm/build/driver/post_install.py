"""What happens to a package's destination directory after its files are in it, in order.

1. ``file_modes``: the modes the template declares (``"usr/bin/foo":
   ("root", "root", 0o4755)``) are applied; owners are not, every file in an
   apk belongs to root. A key starting with ``+`` creates the directory.
2. libtool archives (``usr/lib/*.la``) are removed unless ``keeplibtool``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apkfarm.templates.worker import TemplateError


def apply_file_modes(destdir: Path, modes: Mapping[str, Any], owner: str) -> None:
    for raw, value in sorted(modes.items()):
        if not isinstance(value, tuple | list) or len(value) not in (3, 4):
            raise TemplateError(
                f"{owner}: file_modes['{raw}'] must be (user, group, mode[, recursive])"
            )
        mode = value[2]
        recursive = bool(value[3]) if len(value) == 4 else False
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
            raise TemplateError(f"{owner}: file_modes['{raw}']: mode must be an integer like 0o755")
        relative = raw.removeprefix("+").lstrip("/")
        path = destdir / relative
        if raw.startswith("+"):
            path.mkdir(parents=True, exist_ok=True)
        if not path.exists() and not path.is_symlink():
            continue  # the entry may be meant for a subpackage's tree
        if path.is_symlink():
            raise TemplateError(f"{owner}: file_modes['{raw}'] names a symlink")
        path.chmod(mode)
        if recursive and path.is_dir():
            for root, dirs, files in os.walk(path):
                for name in [*dirs, *files]:
                    child = Path(root) / name
                    if not child.is_symlink():
                        child.chmod(mode)


def remove_libtool_archives(destdir: Path) -> list[str]:
    removed = []
    libdir = destdir / "usr/lib"
    if libdir.is_dir():
        for archive in sorted(libdir.rglob("*.la")):
            if archive.is_file() and not archive.is_symlink():
                archive.unlink()
                removed.append(str(archive.relative_to(destdir)))
    return removed
