"""Build profiles: what a target architecture is (triplet, endianness, word size, flags).

Templates read the profile at load time (``self.profile().arch``,
``self.profile().wordsize``), so it is part of what a template evaluates to.
The built-in profiles use the GNU triplets of the Debian cross toolchains the
farm builds with. A ports tree may override or add profiles the way cports
does, with ``etc/build_profiles/<arch>.ini``::

    [profile]
    endian    = little
    wordsize  = 64
    triplet   = x86_64-linux-gnu
    repos     = main user
    goarch    = amd64
    [flags]
    CFLAGS    = -O2
    CXXFLAGS  = ${CFLAGS}

``cross`` is not a property of a profile but of a build: the target arch
differs from the host's (see ``BuildContext``).
"""

from __future__ import annotations

import configparser
import platform
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Literal

from apkfarm.errors import ApkfarmError

__all__ = [
    "BUILTIN_PROFILES",
    "FLAG_NAMES",
    "BuildContext",
    "Profile",
    "ProfileError",
    "host_arch",
    "load_profiles",
    "resolve_context",
    "with_toolchain",
]

# The tool flags cbuild's profiles carry; issue 4's builder adds its own defaults.
FLAG_NAMES: tuple[str, ...] = ("CFLAGS", "CXXFLAGS", "FFLAGS", "LDFLAGS", "RUSTFLAGS", "GOFLAGS")

Endian = Literal["little", "big"]


class ProfileError(ApkfarmError):
    """An unknown architecture or a malformed profile file."""


@dataclass(frozen=True)
class Profile:
    """One target architecture as templates and toolchains see it."""

    arch: str
    triplet: str
    endian: Endian
    wordsize: int
    machine: str = ""  # uname -m of the target; defaults to arch
    goarch: str | None = None
    goarm: str | None = None
    # Categories this arch builds (cports' "repos"); empty means all.
    repos: tuple[str, ...] = ()
    flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Toolchain programs by role (CC, CXX, LD, ...); filled in by the builder.
    toolchain: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.wordsize not in (32, 64):
            raise ProfileError(f"profile {self.arch}: unknown wordsize {self.wordsize}")
        if self.endian not in ("little", "big"):
            raise ProfileError(f"profile {self.arch}: unknown endianness {self.endian!r}")
        if not self.triplet:
            raise ProfileError(f"profile {self.arch}: no triplet")
        if not self.machine:
            object.__setattr__(self, "machine", self.arch)

    def to_json(self) -> dict[str, object]:
        """The profile as plain data (for the evaluation worker and cache keys)."""
        return {
            "arch": self.arch,
            "triplet": self.triplet,
            "endian": self.endian,
            "wordsize": self.wordsize,
            "machine": self.machine,
            "goarch": self.goarch,
            "goarm": self.goarm,
            "repos": list(self.repos),
            "flags": {name: list(values) for name, values in sorted(self.flags.items())},
            "toolchain": dict(sorted(self.toolchain.items())),
        }


BUILTIN_PROFILES: Mapping[str, Profile] = {
    "x86_64": Profile("x86_64", "x86_64-linux-gnu", "little", 64, goarch="amd64"),
    "aarch64": Profile("aarch64", "aarch64-linux-gnu", "little", 64, goarch="arm64"),
    "riscv64": Profile("riscv64", "riscv64-linux-gnu", "little", 64, goarch="riscv64"),
    "ppc64le": Profile("ppc64le", "powerpc64le-linux-gnu", "little", 64, goarch="ppc64le"),
    "ppc64": Profile("ppc64", "powerpc64-linux-gnu", "big", 64, goarch="ppc64"),
    "loongarch64": Profile("loongarch64", "loongarch64-linux-gnu", "little", 64, goarch="loong64"),
    "armv7": Profile("armv7", "arm-linux-gnueabihf", "little", 32, goarch="arm", goarm="7"),
}

# uname -m spellings that differ from the apk arch name.
_MACHINE_TO_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "armv7l": "armv7"}


def host_arch() -> str:
    """The apk architecture name of the machine we run on."""
    machine = platform.machine()
    return _MACHINE_TO_ARCH.get(machine, machine)


def _read_profile(path: Path, base: Profile | None) -> Profile:
    arch = path.stem
    parser = configparser.ConfigParser(interpolation=configparser.ExtendedInterpolation())
    try:
        with path.open(encoding="utf-8") as stream:
            parser.read_file(stream)
    except (OSError, UnicodeDecodeError, configparser.Error) as error:
        raise ProfileError(f"{path}: cannot read build profile: {error}") from error
    if "profile" not in parser:
        raise ProfileError(f"{path}: malformed profile {arch}: no [profile] section")
    section = parser["profile"]

    def required(key: str) -> str:
        value = section.get(key, fallback=None)
        if value is None:
            if base is not None:
                return str(getattr(base, key))
            raise ProfileError(f"{path}: profile {arch} has no {key}")
        return value

    try:
        wordsize = int(required("wordsize"))
        flags: dict[str, tuple[str, ...]] = dict(base.flags) if base else {}
        if "flags" in parser:
            for name in FLAG_NAMES:
                if name in parser["flags"]:
                    flags[name] = tuple(shlex.split(parser["flags"][name]))
        endian = required("endian")
        if endian not in ("little", "big"):
            raise ProfileError(f"{path}: profile {arch}: unknown endianness {endian!r}")
        repos_text = section.get("repos", fallback=None)
        repos = (
            tuple(repos_text.split()) if repos_text is not None else (base.repos if base else ())
        )
        return Profile(
            arch=arch,
            triplet=required("triplet"),
            endian="little" if endian == "little" else "big",
            wordsize=wordsize,
            machine=section.get("machine", fallback=arch),
            goarch=section.get("goarch", fallback=base.goarch if base else None),
            goarm=section.get("goarm", fallback=base.goarm if base else None),
            repos=repos,
            flags=flags,
            toolchain=dict(base.toolchain) if base else {},
        )
    except (ValueError, configparser.Error) as error:
        raise ProfileError(f"{path}: malformed profile {arch}: {error}") from error


def load_profiles(tree: Path | None = None) -> dict[str, Profile]:
    """The built-in profiles, overridden by the tree's ``etc/build_profiles/*.ini``."""
    profiles = dict(BUILTIN_PROFILES)
    if tree is None:
        return profiles
    directory = tree / "etc" / "build_profiles"
    if not directory.is_dir():
        return profiles
    for path in sorted(directory.glob("*.ini")):
        if path.stem == "bootstrap":  # cbuild's stage-0 profile: the host itself
            continue
        profiles[path.stem] = _read_profile(path, profiles.get(path.stem))
    return profiles


@dataclass(frozen=True)
class BuildContext:
    """For which target, on which host, at which stage templates are evaluated."""

    target: Profile
    host: Profile
    stage: int = 3

    @property
    def cross(self) -> bool:
        return self.target.arch != self.host.arch

    @property
    def sysroot(self) -> PurePosixPath:
        """Where the target's libraries live when cross-compiling (cbuild's layout)."""
        if not self.cross:
            return PurePosixPath("/")
        return PurePosixPath("/usr") / self.target.triplet

    def to_json(self) -> dict[str, object]:
        return {
            "target": self.target.to_json(),
            "host": self.host.to_json(),
            "cross": self.cross,
            "stage": self.stage,
            "sysroot": str(self.sysroot),
        }


def resolve_context(
    arch: str, *, host: str | None = None, tree: Path | None = None, stage: int = 3
) -> BuildContext:
    """The BuildContext for `arch` on `host` (default: this machine), with the tree's profiles."""
    profiles = load_profiles(tree)
    host_name = host or host_arch()
    for name in (arch, host_name):
        if name not in profiles:
            known = ", ".join(sorted(profiles))
            raise ProfileError(f"unknown architecture {name!r} (known: {known})")
    if stage not in (0, 1, 2, 3):
        raise ProfileError(f"stage must be 0..3, not {stage}")
    return BuildContext(target=profiles[arch], host=profiles[host_name], stage=stage)


def with_toolchain(profile: Profile, toolchain: Mapping[str, str]) -> Profile:
    """A copy of `profile` with toolchain programs set (used by the builder)."""
    return replace(profile, toolchain={**profile.toolchain, **toolchain})
