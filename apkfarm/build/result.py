"""What a build is asked to do and what it gives back (or why it failed).

These types are the builder's contract with whoever runs it (the builder
service, the embedded mode, the CLI); none of them knows about gRPC,
RabbitMQ or S3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from apkfarm.apk.package import UnsignedPackage
from apkfarm.apk.pkginfo import PkgInfo
from apkfarm.build.errors import BuildError
from apkfarm.build.log import PhaseStatus

if TYPE_CHECKING:
    from apkfarm.build.sysroot import DependencySource

__all__ = [
    "BuildFailed",
    "BuildRequest",
    "BuildResult",
    "BuiltPackage",
    "FailureReason",
    "PhaseTiming",
]

FailureReason = Literal["error", "timeout", "silence", "log_limit"]


@dataclass(frozen=True)
class BuildRequest:
    """One build of one template for one architecture.

    ``sources`` maps each source's file name (as the template's ``source``
    entry names it: the URL's last segment or what follows ``>``) to a
    local file whose checksum the fetcher has verified. ``work_dir`` is
    scratch space the caller creates (or lets the build create) and removes
    afterwards; it must be empty. ``timeout`` bounds the whole build,
    ``silence_timeout`` the time without any output.
    """

    tree: Path
    template: str  # "main/libgreet"
    arch: str
    sources: Mapping[str, Path]
    dependencies: DependencySource | None
    work_dir: Path
    source_date_epoch: int
    timeout: float = 3 * 3600.0
    silence_timeout: float = 1800.0
    commit: str | None = None  # the ports tree commit, recorded in .PKGINFO


@dataclass(frozen=True)
class PhaseTiming:
    phase: str
    seconds: float
    status: PhaseStatus


@dataclass
class BuiltPackage:
    """One package of the build, unsigned: sign ``package.control_member``, then assemble."""

    info: PkgInfo
    package: UnsignedPackage
    auto: bool = False  # an automatic subpackage (-man, -doc, ...), not declared

    @property
    def filename(self) -> str:
        return self.info.filename

    def close(self) -> None:
        self.package.close()


@dataclass
class BuildResult:
    """What a successful build produced. ``close()`` drops the packages' spool files."""

    template: str
    arch: str
    version: str  # pkgver-rN
    packages: list[BuiltPackage]
    phases: list[PhaseTiming]
    seconds: float
    dependencies: tuple[str, ...] = ()  # name-version of the farm packages in the sysroot

    def package(self, name: str) -> BuiltPackage:
        for built in self.packages:
            if built.info.pkgname == name:
                return built
        raise KeyError(name)

    def close(self) -> None:
        for built in self.packages:
            built.close()

    def __enter__(self) -> BuildResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BuildFailed(BuildError):
    """A build that did not produce packages: which template, which phase, what, and the last lines.

    ``reason`` is ``error`` (a command or the template failed, or the
    packages were refused), ``timeout`` (the wall-clock limit), ``silence``
    (no output for too long) or ``log_limit`` (too much output).
    """

    def __init__(
        self,
        template: str,
        phase: str,
        message: str,
        *,
        reason: FailureReason = "error",
        tail: Sequence[str] = (),
    ) -> None:
        self.template = template
        self.phase = phase
        self.reason: FailureReason = reason
        self.detail = message
        self.tail = tuple(tail)
        text = f"{template}: {phase} failed: {message}"
        if self.tail:
            text += "\nlast lines of output:\n" + "\n".join(f"  {line}" for line in self.tail)
        super().__init__(text)
