"""The driver's input: one JSON document the host writes for a build (``BuildConfig``).

Paths are as the driver sees them: inside the sandbox they are fixed
(``/builddir``, ``/destdir``, ``/sysroot``, ...) so that builds are
reproducible; the benchmark's unsandboxed mode uses host paths instead.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

PROTOCOL = 1


@dataclass(frozen=True)
class BuildPaths:
    builddir: str  # writable; holds srcdir and statedir
    srcdir: str  # the extracted sources: <builddir>/<pkgname>-<pkgver>
    statedir: str  # the driver's own files (wrappers, cross files)
    destdir: str  # writable; each package installs to <destdir>/<name>-<pkgver>
    sysroot: str  # the farm packages the build depends on (read-only)
    template_dir: str  # the template's directory in the ports tree (read-only)
    sources: str  # the source files, as fetched (read-only)
    tmpdir: str


@dataclass(frozen=True)
class BuildConfig:
    """What the host decided for one build; the driver adds nothing of its own."""

    spec: dict[str, Any]  # apkfarm.templates.fields.worker_spec()
    item: dict[str, Any]  # the template: id, category, name, source, repositories
    context: dict[str, Any]  # BuildContext.to_json()
    paths: BuildPaths
    toolchain: dict[str, Any]  # Toolchain.to_json()
    env: dict[str, str]  # the base environment of every command
    hardening: dict[str, bool]  # apkfarm.templates.fields.HARDENING: the defaults
    jobs: int
    source_date_epoch: int
    # None: run the check phase; else why it is skipped ("cross build", ...)
    skip_check: str | None = None
    sysroot_populated: bool = False  # farm packages were installed into the sysroot
    protocol: int = PROTOCOL
    autosplit: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BuildConfig:
        data = json.loads(text)
        if data.get("protocol") != PROTOCOL:
            raise ValueError(f"build config protocol {data.get('protocol')!r}, expected {PROTOCOL}")
        data["paths"] = BuildPaths(**data["paths"])
        return cls(**data)
