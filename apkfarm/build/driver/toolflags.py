"""Compiler flags from a template's ``hardening`` list, and the tool environment of a command.

``hardening`` entries switch cbuild's hardening features on (``"cfi"``) or
off (``"!ssp"``) from their defaults. The features GCC and clang both
implement on glibc targets map to flags here; the others (``cfi``, ``int``
sanitizers, ``bti``/``pac``/``cet`` branch protection) need toolchain and
libc support this builder's Debian toolchains do not promise, and are
accepted without effect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

# Tool variables every command sees (cbuild's set).
TOOL_NAMES: tuple[str, ...] = (
    "CC", "CXX", "CPP", "LD", "AR", "AS", "NM", "RANLIB", "STRIP", "OBJCOPY",
    "OBJDUMP", "READELF", "PKG_CONFIG",
)  # fmt: skip
FLAG_NAMES: tuple[str, ...] = ("CFLAGS", "CXXFLAGS", "FFLAGS", "LDFLAGS")
# Tools whose name gets the target triplet prefix when a template names its own.
CROSS_TOOLS = frozenset({"CC", "CXX", "CPP", "LD", "PKG_CONFIG"})

_COMPILE = ("CFLAGS", "CXXFLAGS", "FFLAGS")
# stack clash protection exists for these targets in GCC 12 and clang 14
_SCP_ARCHS = frozenset({"x86_64", "aarch64", "ppc64le", "ppc64"})


def hardening(defaults: Mapping[str, bool], written: Iterable[str]) -> dict[str, bool]:
    """The switches after a template's ``hardening`` entries (unknown names are ignored)."""
    switches = dict(defaults)
    for entry in written:
        name = entry.removeprefix("!")
        if name in switches:
            switches[name] = not entry.startswith("!")
    return switches


def hardening_flags(
    switches: Mapping[str, bool], flag: str, *, compiler: str, arch: str
) -> list[str]:
    """What the enabled switches add to one flag variable."""
    out: list[str] = []
    if flag in _COMPILE:
        if switches.get("ssp"):
            out.append("-fstack-protector-strong")
        if switches.get("scp") and arch in _SCP_ARCHS:
            out.append("-fstack-clash-protection")
        if switches.get("format") and flag != "FFLAGS":
            out += ["-Wformat", "-Werror=format-security"]
        if switches.get("var-init") and compiler == "gcc" and flag != "FFLAGS":
            out.append("-ftrivial-auto-var-init=zero")
        if switches.get("vis") and flag != "FFLAGS":
            out.append("-fvisibility=hidden")
    return out


def joined(values: Sequence[str]) -> str:
    return " ".join(values)
