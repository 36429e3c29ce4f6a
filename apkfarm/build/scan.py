"""Automatic provides and dependencies of staged packages, as cbuild's pkg hooks derive them.

One build stages several packages (the main package and its subpackages,
"siblings"). :func:`scan_packages` reads all their trees — without following
a symlink out of any of them — and returns, per package, what cbuild would
write into ``.PKGINFO``:

provides
    ``so:<SONAME>=<version>`` for shared libraries: an ELF file with a
    SONAME that looks like a library (``name.so`` or ``name.so.N…``);
    versioned SONAMEs count anywhere, unversioned ones only directly in
    ``usr/lib``; the version is the file name after ``.so``
    (``libfoo.so.1.2.3`` → ``1.2.3``), ``0`` when there is none.
    ``pc:<name>=<Version>`` for ``usr/lib/pkgconfig/*.pc`` and
    ``usr/share/pkgconfig/*.pc`` (``-alpha``/``-beta``/``-rc``/``-pre``
    become ``_alpha``…, an empty version becomes ``0``).
    ``cmd:<name>=<pkgver>-r<pkgrel>`` for every entry of ``usr/bin``
    except names with ``[]=<>~``.

depends
    For each DT_NEEDED library: nothing when the package itself has it; the
    sibling that has it, as ``<sibling>=<pkgver>-r<pkgrel>``; ``so:<SONAME>``
    when a farm package installed in the build's sysroot provides it
    (``ScanEnvironment.sysroot_provides``); nothing when the build root or
    toolchain provides it (``base_libraries``, e.g. glibc's ``libc.so.6``).
    Anything else is an error naming the file and the library.
    For each ``Requires``/``Requires.private`` of the package's ``.pc`` files
    not provided by the package itself: ``pc:<name>[<op><version>]`` when a
    sibling or a sysroot package provides it, else an error.
    For each symlink that does not resolve inside its own package: the
    sibling holding its target, as ``<sibling>=<pkgver>-r<pkgrel>`` (how a
    ``-devel`` package comes to depend on its library), else an error
    unless the ``brokenlinks`` option or ``broken_symlinks`` allow it.

ELF files of another architecture than the target are an error unless the
package has the ``foreignelf`` option; then they are left out of the scan.
Every problem of every package is collected and raised together as one
:class:`ScanError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from apkfarm import version
from apkfarm.build import pkgconf
from apkfarm.build.elf import ARCH_MACHINES, ElfInfo, matches_arch, read_elf
from apkfarm.build.errors import BuildError, ElfError, ScanError
from apkfarm.build.staged import (
    Entry,
    StagedPackage,
    link_destination,
    matches,
    read_file,
    resolve,
    walk,
)

PC_DIRS = ("usr/lib/pkgconfig", "usr/share/pkgconfig")
CMD_DIR = "usr/bin"
_CMD_FORBIDDEN = set("[]=<>~")
_LIBRARY_SONAME = re.compile(r"\w.*\.so(\.\d+)*")
_PC_PRERELEASE = re.compile(r"-(alpha|beta|rc|pre)")
_PC_OPERATORS = frozenset({"=", "<", ">", "<=", ">="})
_PC_MAX_SIZE = 1024 * 1024


@dataclass(frozen=True)
class ScanEnvironment:
    """What surrounds the packages of one build.

    ``sysroot_provides`` maps provider names as apk writes them without a
    version (``so:libz.so.1``, ``pc:zlib``) to the farm package installed in
    the build's sysroot that provides them; :func:`provider_map` builds it
    from those packages' ``provides``. ``base_libraries`` are SONAMEs and
    ``base_pkgconfig`` pkg-config names that the build root or toolchain
    supplies outside the farm: they satisfy a dependency and produce none.
    """

    arch: str
    pkgver: str
    pkgrel: int
    sysroot_provides: Mapping[str, str] = field(default_factory=dict)
    base_libraries: frozenset[str] = frozenset()
    base_pkgconfig: frozenset[str] = frozenset()

    @property
    def full_version(self) -> str:
        return f"{self.pkgver}-r{self.pkgrel}"


@dataclass(frozen=True, order=True)
class SoProvide:
    soname: str
    version: str
    path: str

    def __str__(self) -> str:
        return f"so:{self.soname}={self.version}"


@dataclass(frozen=True, order=True)
class PcProvide:
    name: str
    version: str
    path: str

    def __str__(self) -> str:
        return f"pc:{self.name}={self.version}"


@dataclass(frozen=True, order=True)
class CmdProvide:
    name: str
    version: str
    path: str

    def __str__(self) -> str:
        return f"cmd:{self.name}={self.version}"


@dataclass(frozen=True, order=True)
class SoDepend:
    """A library provided by a farm package in the sysroot (``provider``)."""

    soname: str
    provider: str
    paths: tuple[str, ...]

    def __str__(self) -> str:
        return f"so:{self.soname}"


@dataclass(frozen=True, order=True)
class PcDepend:
    """A pkg-config requirement (``zlib>=1.2``) and the package that provides it."""

    requirement: str
    provider: str
    paths: tuple[str, ...]

    def __str__(self) -> str:
        return f"pc:{self.requirement}"


@dataclass(frozen=True, order=True)
class PackageDepend:
    """A dependency on a sibling package of the same build, at the same version."""

    package: str
    version: str
    reasons: tuple[str, ...]  # e.g. "so:libgreet.so.1", "symlink usr/lib/libgreet.so"

    def __str__(self) -> str:
        return f"{self.package}={self.version}"


@dataclass(frozen=True)
class PackageScan:
    """The scan of one staged package."""

    package: str
    elves: Mapping[str, ElfInfo]  # package-relative path -> ELF info (target arch only)
    foreign_elves: tuple[str, ...]
    so_provides: tuple[SoProvide, ...]
    pc_provides: tuple[PcProvide, ...]
    cmd_provides: tuple[CmdProvide, ...]
    so_depends: tuple[SoDepend, ...]
    pc_depends: tuple[PcDepend, ...]
    package_depends: tuple[PackageDepend, ...]
    base_libraries: tuple[str, ...]  # NEEDED entries the build root satisfied

    def provides(self) -> list[str]:
        """The ``provides`` lines for .PKGINFO, sorted."""
        items = [*self.so_provides, *self.pc_provides, *self.cmd_provides]
        return sorted(str(p) for p in items)

    def depends(self) -> list[str]:
        """The automatic ``depend`` lines for .PKGINFO, sorted."""
        items = [*self.package_depends, *self.so_depends, *self.pc_depends]
        return sorted(str(d) for d in items)


def provider_map(packages: Iterable[tuple[str, Iterable[str]]]) -> dict[str, str]:
    """``sysroot_provides`` from (package name, its ``provides`` lines) pairs.

    ``so:libz.so.1=1.3`` from package ``zlib`` becomes ``{"so:libz.so.1": "zlib"}``.
    The first package listed wins when two provide the same name.
    """
    out: dict[str, str] = {}
    for name, provides in packages:
        for line in provides:
            out.setdefault(line.split("=", 1)[0], name)
    return out


def scan_packages(
    packages: Sequence[StagedPackage], env: ScanEnvironment
) -> dict[str, PackageScan]:
    """Scan every package of one build; raises ``ScanError`` listing every problem."""
    names = [p.name for p in packages]
    if len(set(names)) != len(names):
        raise BuildError(f"scan: package names repeat: {names}")
    if env.arch not in ARCH_MACHINES:
        known = ", ".join(sorted(ARCH_MACHINES))
        raise BuildError(f"scan: unknown target architecture {env.arch!r} (known: {known})")
    problems: list[str] = []
    trees = {p.name: walk(p.root) for p in packages}
    elves: dict[str, dict[str, ElfInfo]] = {}
    foreign: dict[str, list[str]] = {}
    for pkg in packages:
        elves[pkg.name], foreign[pkg.name] = _read_elves(pkg, trees[pkg.name], env, problems)
    library_owner = _library_owners(packages, elves)
    pc_files = {p.name: _pc_files(p, trees[p.name], problems) for p in packages}
    pc_owner: dict[str, str] = {}
    for pkg in packages:
        for name in pc_files[pkg.name]:
            pc_owner.setdefault(name, pkg.name)

    results: dict[str, PackageScan] = {}
    for pkg in packages:
        ctx = _PackageContext(pkg, env, trees[pkg.name], elves[pkg.name], problems)
        so_provides = ctx.so_provides() if pkg.options.scanshlibs else ()
        pc_provides = ctx.pc_provides(pc_files[pkg.name]) if pkg.options.scanpkgconf else ()
        cmd_provides = ctx.cmd_provides() if pkg.options.scancmd else ()
        if pkg.options.scanrundeps:
            ctx.so_depends(library_owner)
            ctx.pc_depends(pc_files[pkg.name], pc_owner)
            ctx.symlink_depends([p for p in packages if p.name != pkg.name])
        results[pkg.name] = PackageScan(
            package=pkg.name,
            elves=elves[pkg.name],
            foreign_elves=tuple(foreign[pkg.name]),
            so_provides=so_provides,
            pc_provides=pc_provides,
            cmd_provides=cmd_provides,
            so_depends=tuple(sorted(ctx.so_deps)),
            pc_depends=tuple(sorted(ctx.pc_deps.values())),
            package_depends=tuple(
                PackageDepend(name, env.full_version, tuple(reasons))
                for name, reasons in sorted(ctx.sibling_deps.items())
            ),
            base_libraries=tuple(sorted(ctx.base_used)),
        )
    if problems:
        raise ScanError("automatic dependency scan failed", problems)
    return results


def _read_elves(
    pkg: StagedPackage, tree: list[Entry], env: ScanEnvironment, problems: list[str]
) -> tuple[dict[str, ElfInfo], list[str]]:
    own: dict[str, ElfInfo] = {}
    foreign: list[str] = []
    base = str(pkg.root)
    for entry in tree:
        if entry.kind != "file" or entry.size == 0:
            continue
        try:
            info = read_elf(f"{base}/{entry.path}", name=f"{pkg.name}: {entry.path}")
        except ElfError as exc:
            if matches(entry.path, pkg.skip_dependencies) and matches(
                entry.path, pkg.skip_providers
            ):
                continue  # the template excluded this file from both scans
            problems.append(str(exc))
            continue
        # Object files are not loaded; machine 0 marks containers (firmware blobs).
        if info is None or info.elf_type in ("REL", "NONE", "CORE") or info.machine == 0:
            continue
        if not matches_arch(info, env.arch):
            if pkg.options.foreignelf:
                foreign.append(entry.path)
            else:
                problems.append(
                    f"{pkg.name}: {entry.path}: ELF file for {info.machine_name}, "
                    f"the target is {env.arch} (set the 'foreignelf' option if intended)"
                )
            continue
        own[entry.path] = info
    return own, foreign


def _library_owners(
    packages: Sequence[StagedPackage], elves: Mapping[str, Mapping[str, ElfInfo]]
) -> dict[str, str]:
    """SONAME (or, without one, a ``.so`` file name) -> the package of this build that has it."""
    owner: dict[str, str] = {}
    for pkg in packages:
        for path, info in sorted(elves[pkg.name].items()):
            name = path.rsplit("/", 1)[-1]
            key = info.soname or (name if ".so" in _suffixes(name) else None)
            if key:
                owner.setdefault(key, pkg.name)
    return owner


def _suffixes(name: str) -> list[str]:
    """Like ``PurePath.suffixes``: ``libfoo.so.1.2`` -> ``[".so", ".1", ".2"]``."""
    if name.endswith("."):
        return []
    return ["." + part for part in name.lstrip(".").split(".")[1:]]


def _pc_files(pkg: StagedPackage, tree: list[Entry], problems: list[str]) -> dict[str, str]:
    """pkg-config name -> package-relative path of its ``.pc`` file."""
    found: dict[str, str] = {}
    for entry in tree:
        if entry.parent not in PC_DIRS or not entry.name.endswith(".pc") or entry.kind == "dir":
            continue
        name = entry.name.removesuffix(".pc")
        if name in found:
            problems.append(
                f"{pkg.name}: {entry.path}: {name}.pc is also in {found[name]} "
                "(one .pc file may be provided from one path only)"
            )
            continue
        found[name] = entry.path
    return found


def _explicit(pkg: StagedPackage, prefix: str) -> set[str]:
    return {
        p.removeprefix(prefix).split("=", 1)[0]
        for p in pkg.explicit_provides
        if p.startswith(prefix)
    }


class _PackageContext:
    """The scans of one package; dependency results accumulate on the instance."""

    def __init__(
        self,
        pkg: StagedPackage,
        env: ScanEnvironment,
        tree: list[Entry],
        elves: dict[str, ElfInfo],
        problems: list[str],
    ) -> None:
        self.pkg = pkg
        self.env = env
        self.tree = tree
        self.elves = elves
        self.problems = problems
        self.so_deps: list[SoDepend] = []
        self.pc_deps: dict[str, PcDepend] = {}
        self.sibling_deps: dict[str, list[str]] = {}
        self.base_used: set[str] = set()
        self._pc_cache: dict[str, pkgconf.PcFile | None] = {}

    def problem(self, path: str, message: str) -> None:
        where = f"{self.pkg.name}: {path}" if path else self.pkg.name
        self.problems.append(f"{where}: {message}")

    def add_sibling(self, sibling: str, reason: str) -> None:
        self.sibling_deps.setdefault(sibling, []).append(reason)

    # provides

    def so_provides(self) -> tuple[SoProvide, ...]:
        explicit = _explicit(self.pkg, "so:")
        seen: set[str] = set()
        out: list[SoProvide] = []
        for path, info in sorted(self.elves.items()):
            soname = info.soname
            if soname is None or matches(path, self.pkg.skip_providers):
                continue
            if not _LIBRARY_SONAME.fullmatch(soname):
                continue
            parent = path.rsplit("/", 1)[0] if "/" in path else ""
            if not soname[-1].isdigit() and parent != "usr/lib":
                continue  # an unversioned SONAME elsewhere is a plugin, not a library
            if soname in explicit or soname in seen:
                continue
            suffixes = _suffixes(path.rsplit("/", 1)[-1])
            while suffixes and suffixes[0] != ".so":
                suffixes.pop(0)
            so_version = "".join(suffixes[1:])[1:] or "0"
            if not version.is_valid(so_version):
                self.problem(path, f"shared library version {so_version!r} is not an apk version")
                continue
            seen.add(soname)
            out.append(SoProvide(soname, so_version, path))
        return tuple(sorted(out))

    def pc_provides(self, pc_files: Mapping[str, str]) -> tuple[PcProvide, ...]:
        explicit = _explicit(self.pkg, "pc:")
        out: list[PcProvide] = []
        for name, path in sorted(pc_files.items()):
            if name in explicit or matches(path, self.pkg.skip_providers):
                continue
            pc = self._read_pc(path)
            if pc is None:
                continue
            pc_version = _PC_PRERELEASE.sub(r"_\1", pc.version) or "0"
            if not version.is_valid(pc_version):
                self.problem(path, f"pkg-config version {pc_version!r} is not an apk version")
                continue
            out.append(PcProvide(name, pc_version, path))
        return tuple(out)

    def cmd_provides(self) -> tuple[CmdProvide, ...]:
        explicit = _explicit(self.pkg, "cmd:")
        out = [
            CmdProvide(entry.name, self.env.full_version, entry.path)
            for entry in self.tree
            if entry.parent == CMD_DIR
            and entry.kind != "dir"
            and entry.name not in explicit
            and not _CMD_FORBIDDEN.intersection(entry.name)
            and not matches(entry.path, self.pkg.skip_providers)
        ]
        return tuple(sorted(out))

    # dependencies

    def so_depends(self, library_owner: Mapping[str, str]) -> None:
        needed: dict[str, list[str]] = {}
        for path, info in sorted(self.elves.items()):
            if matches(path, self.pkg.skip_dependencies):
                continue
            for soname in info.needed:
                needed.setdefault(soname, []).append(path)
        for soname, paths in sorted(needed.items()):
            if soname in self.pkg.ignore_shlibs:
                continue
            owner = library_owner.get(soname)
            if owner == self.pkg.name:
                continue
            if owner is not None:
                self.add_sibling(owner, f"so:{soname}")
                continue
            provider = self.env.sysroot_provides.get(f"so:{soname}")
            if provider is not None:
                self.so_deps.append(SoDepend(soname, provider, tuple(paths)))
            elif soname in self.env.base_libraries:
                self.base_used.add(soname)
            else:
                shown = ", ".join(paths[:3]) + (
                    f" (+{len(paths) - 3} more)" if len(paths) > 3 else ""
                )
                self.problem(
                    shown,
                    f"needs {soname}, which no package of this build, no farm package in "
                    "the sysroot and not the build root provides",
                )

    def pc_depends(self, pc_files: Mapping[str, str], pc_owner: Mapping[str, str]) -> None:
        for name, path in sorted(pc_files.items()):
            if matches(path, self.pkg.skip_dependencies):
                continue
            pc = self._read_pc(path)
            if pc is None:
                continue
            try:
                requirements = pc.requires()
            except pkgconf.PcFileError as exc:
                self.problem(path, str(exc))
                continue
            for req in requirements:
                self._pc_requirement(name, path, req, pc_files, pc_owner)

    def _pc_requirement(
        self,
        own_name: str,
        path: str,
        req: pkgconf.Requirement,
        pc_files: Mapping[str, str],
        pc_owner: Mapping[str, str],
    ) -> None:
        if req.op and req.op not in _PC_OPERATORS:
            self.problem(
                path, f"{own_name}.pc requires {req}: operator {req.op!r} apk cannot express"
            )
            return
        if req.op and not version.is_valid(req.version):
            self.problem(
                path, f"{own_name}.pc requires {req}: {req.version!r} is not an apk version"
            )
            return
        if req.name in pc_files:
            return  # provided by this package itself
        key = str(req)
        provider = pc_owner.get(req.name) or self.env.sysroot_provides.get(f"pc:{req.name}")
        if provider is not None:
            previous = self.pc_deps.get(key)
            paths = (*previous.paths, path) if previous else (path,)
            self.pc_deps[key] = PcDepend(key, provider, paths)
        elif req.name not in self.env.base_pkgconfig:
            self.problem(
                path,
                f"{own_name}.pc requires {req}, which no package of this build and no farm "
                "package in the sysroot provides (add its -devel package to makedepends)",
            )

    def symlink_depends(self, siblings: Sequence[StagedPackage]) -> None:
        for entry in self.tree:
            if entry.kind != "symlink" or matches(entry.path, self.pkg.skip_dependencies):
                continue
            dest = link_destination(entry)
            if dest is None or resolve(self.pkg.root, dest) is not None:
                continue
            owner = next((s.name for s in siblings if resolve(s.root, dest) is not None), None)
            if owner is not None:
                self.add_sibling(owner, f"symlink {entry.path}")
            elif not (
                self.pkg.options.brokenlinks or matches(entry.path, self.pkg.broken_symlinks)
            ):
                self.problem(
                    entry.path,
                    f"symlink to {entry.target} points to nothing in this build "
                    "(allow it with broken_symlinks if it is meant for another package)",
                )

    def _read_pc(self, path: str) -> pkgconf.PcFile | None:
        """The parsed .pc file, read once; problems are reported once."""
        if path not in self._pc_cache:
            self._pc_cache[path] = self._parse_pc(path)
        return self._pc_cache[path]

    def _parse_pc(self, path: str) -> pkgconf.PcFile | None:
        where = f"{self.pkg.name}: {path}"
        try:
            raw = read_file(self.pkg.root, path, limit=_PC_MAX_SIZE, where=where)
        except BuildError as exc:
            self.problem(path, str(exc))
            return None
        if raw is None:
            return None  # a dangling .pc symlink: the symlink scan reports it
        try:
            text = raw.decode("utf-8")
            pcfiledir = "/" + path.rsplit("/", 1)[0]
            return pkgconf.parse(text, pcfiledir=pcfiledir, where=where)
        except UnicodeDecodeError:
            self.problem(path, "not UTF-8 text")
        except pkgconf.PcFileError as exc:
            self.problems.append(str(exc))
        return None
