"""Which compilers and tools build for a target, and what the build root must hold for them.

A builder serves one target architecture. Native builds use the build
root's own compiler; cross builds use Debian's cross toolchains
(``gcc-aarch64-linux-gnu`` + ``libc6-dev-arm64-cross``, ...), whose C
library lives in ``/usr/<triplet>``. Programs built for the target run under
``qemu-<arch>-static -L /usr/<triplet>`` (binfmt is not relied on), which is
what cmake and meson get as their cross "emulator" when the build root has
it (``for_build_root``).

With ``compiler="clang"`` the target compiler is clang through a
``<triplet>-clang`` wrapper (``clang --target=<triplet>``), linking with lld
except on riscv64, where lld 14 cannot link and GNU ld is used.

``base_libraries`` are the SONAMEs the toolchain itself supplies on the
target (glibc and the GCC runtime): a package needing one gets no
dependency for it, since every system has them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Literal

from apkfarm.build.errors import BuildError
from apkfarm.profiles import BuildContext, Profile
from apkfarm.sandbox.buildroot import BuildRoot

__all__ = [
    "DEFAULT_FLAGS",
    "GLIBC_LIBRARIES",
    "Compiler",
    "Toolchain",
    "ToolchainError",
    "resolve_toolchain",
]

Compiler = Literal["gcc", "clang"]

# Flags every build starts from unless the profile sets its own.
DEFAULT_FLAGS: Mapping[str, tuple[str, ...]] = {
    "CFLAGS": ("-O2", "-pipe"),
    "CXXFLAGS": ("-O2", "-pipe"),
    "FFLAGS": ("-O2", "-pipe"),
    "LDFLAGS": ("-Wl,--as-needed", "-Wl,-z,relro", "-Wl,-z,now"),
}

# Tools that get the triplet prefix when cross-compiling with GNU tools.
_BINUTILS = ("LD", "AR", "AS", "NM", "RANLIB", "STRIP", "OBJCOPY", "OBJDUMP", "READELF")

GLIBC_LIBRARIES: frozenset[str] = frozenset(
    {
        "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
        "libresolv.so.2", "libutil.so.1", "libanl.so.1", "libmvec.so.1", "libnsl.so.1",
        "libBrokenLocale.so.1", "libthread_db.so.1", "libc_malloc_debug.so.0",
    }
)  # fmt: skip
_GCC_RUNTIME: frozenset[str] = frozenset(
    {"libgcc_s.so.1", "libstdc++.so.6", "libatomic.so.1", "libgomp.so.1"}
)
_LOADERS: Mapping[str, str] = {
    "x86_64": "ld-linux-x86-64.so.2",
    "aarch64": "ld-linux-aarch64.so.1",
    "riscv64": "ld-linux-riscv64-lp64d.so.1",
    "ppc64le": "ld64.so.2",
    "ppc64": "ld64.so.1",
    "armv7": "ld-linux-armhf.so.3",
    "loongarch64": "ld-linux-loongarch-lp64d.so.1",
}
# Debian's architecture names, for the package names in messages.
_DEBIAN_ARCH: Mapping[str, str] = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "riscv64": "riscv64",
    "ppc64le": "ppc64el",
    "ppc64": "ppc64",
    "armv7": "armhf",
    "loongarch64": "loong64",
}
_QEMU_ARCH: Mapping[str, str] = {"armv7": "arm"}
# lld 14 cannot link riscv64 objects (relaxations); GNU ld can.
_LLD_UNSUPPORTED = frozenset({"riscv64"})


class ToolchainError(BuildError):
    """The build root lacks what building for a target needs."""


@dataclass(frozen=True)
class Toolchain:
    """The programs and base flags of one build context.

    ``tools`` are for the target, ``host_tools`` for programs a build runs
    on the builder (``CC_FOR_BUILD``). ``wrappers`` are small scripts the
    build creates on its PATH (name -> argv prefix), ``emulator`` the
    command prefix that runs a target program ([] for native builds).
    """

    compiler: Compiler
    context: BuildContext
    tools: Mapping[str, str]
    host_tools: Mapping[str, str]
    flags: Mapping[str, tuple[str, ...]]
    host_flags: Mapping[str, tuple[str, ...]]
    wrappers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    emulator: tuple[str, ...] = ()
    base_libraries: frozenset[str] = frozenset()

    @property
    def cross(self) -> bool:
        return self.context.cross

    @property
    def libc_dir(self) -> PurePosixPath | None:
        """Where the cross C library lives (qemu's ``-L``), None for native builds."""
        return PurePosixPath("/usr") / self.context.target.triplet if self.cross else None

    def required_programs(self) -> tuple[str, ...]:
        """Programs the build root must hold for this toolchain."""
        needed = {self.tools["CC"], self.tools["AR"], self.host_tools["CC"], "make", "sh"}
        needed.update(argv[0] for argv in self.wrappers.values())
        needed -= set(self.wrappers)  # made by the build itself
        return tuple(sorted(needed))

    def for_build_root(self, build_root: BuildRoot) -> Toolchain:
        """This toolchain without its emulator when the build root has no qemu.

        qemu only runs target programs at build time (cmake's and meson's
        emulator); the check phase is skipped when cross-compiling anyway.
        """
        if self.emulator and build_root.program(self.emulator[0]) is None:
            return replace(self, emulator=())
        return self

    def check(self, build_root: BuildRoot) -> None:
        """Raise ToolchainError naming every missing program and the packages that provide it."""
        missing = [name for name in self.required_programs() if build_root.program(name) is None]
        problems = []
        if missing:
            problems.append(f"missing programs: {', '.join(missing)}")
        libc = self.libc_dir
        if libc is not None and not (build_root.root / libc.relative_to("/") / "include").is_dir():
            problems.append(f"no C library headers in {libc}/include")
        if problems:
            target = self.context.target
            raise ToolchainError(
                f"the build root {build_root.root} cannot build for {target.arch} "
                f"({'; '.join(problems)}){_install_hint(self)}"
            )

    def to_json(self) -> dict[str, object]:
        return {
            "compiler": self.compiler,
            "tools": dict(self.tools),
            "host_tools": dict(self.host_tools),
            "flags": {name: list(values) for name, values in self.flags.items()},
            "host_flags": {name: list(values) for name, values in self.host_flags.items()},
            "wrappers": {name: list(argv) for name, argv in self.wrappers.items()},
            "emulator": list(self.emulator),
        }


def _install_hint(toolchain: Toolchain) -> str:
    if not toolchain.cross:
        return "; install gcc, make and libc6-dev"
    target = toolchain.context.target
    debian = _DEBIAN_ARCH.get(target.arch, target.arch)
    triplet_package = target.triplet.replace("_", "-")
    return (
        f"; install gcc-{triplet_package} libc6-dev-{debian}-cross "
        f"(Debian package names; qemu-user-static too, to run target programs)"
    )


def _flags(profile: Profile) -> dict[str, tuple[str, ...]]:
    flags = dict(DEFAULT_FLAGS)
    for name, values in profile.flags.items():
        flags[name] = tuple(values)
    return flags


def _gnu_tools(prefix: str) -> dict[str, str]:
    tools = {
        "CC": f"{prefix}gcc",
        "CXX": f"{prefix}g++",
        "CPP": f"{prefix}cpp",
        "PKG_CONFIG": "pkg-config",
    }
    for name in _BINUTILS:
        tools[name] = f"{prefix}{name.lower()}"
    return tools


def resolve_toolchain(context: BuildContext, compiler: Compiler = "gcc") -> Toolchain:
    """The toolchain for `context`: the build root's gcc natively, Debian's cross gcc otherwise."""
    target = context.target
    if compiler not in ("gcc", "clang"):
        raise ToolchainError(f"unknown compiler {compiler!r} (gcc or clang)")
    host_tools = _gnu_tools("")
    prefix = f"{target.triplet}-" if context.cross else ""
    tools = _gnu_tools(prefix)
    flags = _flags(target)
    wrappers: dict[str, tuple[str, ...]] = {}
    if compiler == "clang":
        if context.cross:
            wrappers[f"{target.triplet}-clang"] = ("clang", f"--target={target.triplet}")
            wrappers[f"{target.triplet}-clang++"] = ("clang++", f"--target={target.triplet}")
            tools.update(CC=f"{target.triplet}-clang", CXX=f"{target.triplet}-clang++")
            tools["CPP"] = f"{target.triplet}-clang -E"
        else:
            tools.update(CC="clang", CXX="clang++", CPP="clang -E")
        if target.arch not in _LLD_UNSUPPORTED:
            flags["LDFLAGS"] = ("-fuse-ld=lld", *flags["LDFLAGS"])
    emulator: tuple[str, ...] = ()
    if context.cross:
        qemu = f"qemu-{_QEMU_ARCH.get(target.arch, target.arch)}-static"
        emulator = (qemu, "-L", f"/usr/{target.triplet}")
    base = GLIBC_LIBRARIES | _GCC_RUNTIME
    loader = _LOADERS.get(target.arch)
    if loader:
        base |= {loader}
    return Toolchain(
        compiler=compiler,
        context=context,
        tools=tools,
        host_tools=host_tools,
        flags=flags,
        host_flags=_flags(context.host),
        wrappers=wrappers,
        emulator=emulator,
        base_libraries=frozenset(base),
    )
