"""cbuild's packaging rules over staged packages, every problem reported at once.

Run after the install phase and subpackage splitting, before packaging.
Each finding names the package and the package-relative path; errors fail
the build (:meth:`LintReport.check`), warnings are for the log.

Errors (as cbuild's ``098_lint`` and ``033_check_suid`` hooks and its ELF
scan):

* the top level holds only the directories ``usr``, ``etc`` and ``boot``;
  ``etc`` needs the ``etcfiles`` option;
* paths that are symlinks in the base system or belong to other packages:
  ``usr/sbin``, ``usr/lib32``, ``usr/lib64``, ``usr/libexec``, ``usr/local``,
  ``usr/etc``, ``usr/tests``, ``usr/lib/systemd/system``, caches generated
  at install time (``usr/share/mime/*``, ``gschemas.compiled``), …;
* files that belong elsewhere: ``etc/pam.d``, ``etc/sysctl.d``, … in
  ``usr/lib``, ``etc/dbus-1/system.d``, … in ``usr/share``, ``usr/man``,
  ``usr/doc``, ``usr/dict`` in ``usr/share``, ``usr/share/pixmaps``
  (``lintpixmaps``), prefix directories inside Python's site-packages;
* an empty package that is not ``meta`` and not marked ``empty``, or a
  package marked ``empty`` that is not;
* ELF files outside ``usr`` (``boot`` excepted) or in ``usr/include`` or
  ``usr/share``; ELF files with text relocations (``textrels``) or an
  executable stack (``execstack``);
* setuid/setgid files whose mode the template does not declare in
  ``file_modes``; world-writable files and directories (same exception);
* device, FIFO and socket files; several hard links to one file inside the
  package (``hardlinks``).

Warnings: development files (headers, ``.pc``, ``.so`` symlinks,
``*-config``) outside the ``-devel`` package when the build has one, static
libraries outside ``-static``/``-devel`` (``lintstatic``).

cbuild's ``lint`` option switches off its *template* lint (field order,
description style), which is not this module's job; these packaging rules
always run, as in cbuild.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from apkfarm.build.elf import ElfInfo, read_elf
from apkfarm.build.errors import ElfError, LintError
from apkfarm.build.staged import Entry, StagedPackage, walk

Severity = Literal["error", "warning"]

TOP_LEVEL = frozenset({"usr", "etc", "boot"})

FORBIDDEN_PATHS = (
    "usr/build-1",
    "usr/cgi-bin",
    "usr/etc",
    "usr/sbin",
    "usr/lib32",
    "usr/lib64",
    "usr/libexec",
    "usr/local",
    "usr/lib/installed-tests",
    "usr/lib/locale",
    "usr/lib/systemd/system",
    "usr/lib/systemd/user",
    "usr/share/glib-2.0/schemas/gschemas.compiled",
    "usr/share/installed-tests",
    *(
        f"usr/share/mime/{name}"
        for name in (
            "XMLnamespaces", "aliases", "generic-icons", "globs", "globs2", "icons",
            "magic", "mime.cache", "subclasses", "treemagic", "types", "version",
        )
    ),
    "usr/tests",
    "usr/usr",
)  # fmt: skip

# etc/<dir> -> where it belongs instead
ETC_MISPLACED = {
    "dinit.d": "/usr/lib/dinit.d",
    **{
        d: f"/usr/lib/{d}"
        for d in (
            "kernel.d", "modprobe.d", "pam.d", "sysctl.d", "tmpfiles.d", "udev/rules.d",
            "udev/hwdb.d", "ufw/applications.d",
        )
    },
    **{
        d: f"/usr/share/{d}"
        for d in (
            "bash/bashrc.d", "dbus-1/session.d", "dbus-1/system.d", "fonts/conf.avail",
            "polkit-1/rules.d", "X11/xorg.conf.d", "gconf/schemas", "iproute2",
        )
    },
}  # fmt: skip

SITE_PACKAGES_FORBIDDEN = (
    "bin",
    "etc",
    "lib",
    "lib32",
    "lib64",
    "opt",
    "sbin",
    "share",
    "usr",
    "var",
)

DEVEL_PATHS = (
    "usr/include",
    "usr/lib/cmake",
    "usr/lib/glade/modules",
    "usr/lib/pkgconfig",
    "usr/share/pkgconfig",
    "usr/share/vala/vapi",
    "usr/share/gir-1.0",
    "usr/share/aclocal",
    "usr/share/gettext",
    "usr/share/cmake",
    "usr/share/glade/catalogs",
)


@dataclass(frozen=True, order=True)
class LintFinding:
    package: str
    path: str  # package-relative; "" for the package as a whole
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.package}: {self.path}" if self.path else self.package
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class LintReport:
    findings: tuple[LintFinding, ...]

    @property
    def errors(self) -> tuple[LintFinding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[LintFinding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    def check(self) -> None:
        """Raise ``LintError`` listing every error; warnings never fail."""
        if self.errors:
            raise LintError("packaging lint failed", [str(f) for f in self.errors])


def lint_packages(
    packages: Sequence[StagedPackage],
    *,
    elves: Mapping[str, Mapping[str, ElfInfo]] | None = None,
) -> LintReport:
    """Lint every package of one build; ``elves`` may reuse the scan's ELF results."""
    names = [p.name for p in packages]
    findings: list[LintFinding] = []
    for pkg in packages:
        siblings = [n for n in names if n != pkg.name]
        pkg_elves = elves.get(pkg.name) if elves is not None else None
        findings.extend(lint_package(pkg, siblings=siblings, elves=pkg_elves).findings)
    return LintReport(tuple(findings))


def lint_package(
    pkg: StagedPackage,
    *,
    siblings: Sequence[str] = (),
    elves: Mapping[str, ElfInfo] | None = None,
) -> LintReport:
    """Lint one staged package. ``siblings`` are the other packages of the build."""
    tree = walk(pkg.root)
    linter = _Linter(pkg, tree)
    linter.top_level()
    linter.forbidden_paths()
    linter.misplaced()
    linter.emptiness()
    linter.modes_and_kinds()
    linter.elf_files(elves)
    linter.devel_warnings(siblings)
    return LintReport(tuple(linter.findings))


class _Linter:
    def __init__(self, pkg: StagedPackage, tree: list[Entry]) -> None:
        self.pkg = pkg
        self.tree = tree
        self.paths = {e.path: e for e in tree}
        self.findings: list[LintFinding] = []

    def error(self, path: str, message: str) -> None:
        self.findings.append(LintFinding(self.pkg.name, path, message, "error"))

    def warn(self, path: str, message: str) -> None:
        self.findings.append(LintFinding(self.pkg.name, path, message, "warning"))

    def top_level(self) -> None:
        for entry in self.tree:
            if "/" in entry.path:
                continue
            if entry.name not in TOP_LEVEL:
                self.error(entry.path, "forbidden at the top level (only usr, etc and boot)")
            elif entry.kind != "dir":
                self.error(
                    entry.path, f"forbidden {entry.kind} at the top level (must be a directory)"
                )
        if "etc" in self.paths and not self.pkg.options.etcfiles:
            self.error(
                "etc",
                "/etc exists: check that the package must install there and set the "
                "'etcfiles' option",
            )

    def forbidden_paths(self) -> None:
        for path in FORBIDDEN_PATHS:
            if path in self.paths:
                self.error(path, "forbidden path (a base-system symlink or another package's)")
        if self.pkg.options.lintpixmaps and "usr/share/pixmaps" in self.paths:
            self.error("usr/share/pixmaps", "application icons belong in /usr/share/icons")

    def misplaced(self) -> None:
        for sub, instead in ETC_MISPLACED.items():
            if f"etc/{sub}" in self.paths:
                self.error(f"etc/{sub}", f"belongs in {instead}, not /etc")
        for sub in ("man", "doc", "dict"):
            if f"usr/{sub}" in self.paths:
                self.error(f"usr/{sub}", f"belongs in /usr/share/{sub}, not /usr/{sub}")
        for entry in self.tree:
            if entry.parent != "usr/lib" or not entry.name.startswith("python"):
                continue
            site = f"{entry.path}/site-packages"
            for sub in SITE_PACKAGES_FORBIDDEN:
                if f"{site}/{sub}" in self.paths:
                    self.error(f"{site}/{sub}", "a prefix directory inside Python site-packages")

    def emptiness(self) -> None:
        empty = not self.tree
        if empty and self.pkg.build_style != "meta" and not self.pkg.options.empty:
            self.error("", "the package is empty (mark it with the 'empty' option if intended)")
        elif not empty and self.pkg.options.empty:
            self.error("", "the package is marked 'empty' but is not")

    def _declared_mode(self, path: str) -> int | None:
        """The mode ``file_modes`` declares for ``path`` (exact, glob or recursive entry)."""
        pure = PurePosixPath(path)
        for raw_key, mode in self.pkg.file_modes.items():
            key = raw_key.removeprefix("+")  # "+dir" asks cbuild to create the directory
            if key == path or pure.match(key):
                return mode.mode
            if mode.recursive and path.startswith(key.rstrip("/") + "/"):
                return mode.mode
        return None

    def modes_and_kinds(self) -> None:
        inodes: dict[tuple[int, int], str] = {}
        for entry in self.tree:
            if entry.kind == "other":
                self.error(entry.path, f"special file (mode {stat.filemode(entry.mode)})")
                continue
            if entry.kind == "symlink":
                continue
            perm = stat.S_IMODE(entry.mode)
            declared = self._declared_mode(entry.path)
            setid = perm & (stat.S_ISUID | stat.S_ISGID)
            if entry.kind == "file" and setid and (declared is None or declared & setid != setid):
                kind = "setuid" if perm & stat.S_ISUID else "setgid"
                self.error(
                    entry.path,
                    f"{kind} file (mode {perm:#o}) not declared in the template's file_modes",
                )
            if perm & stat.S_IWOTH and (declared is None or not declared & stat.S_IWOTH):
                self.error(entry.path, f"world-writable {entry.kind} (mode {perm:#o})")
            if entry.kind == "file" and not self.pkg.options.hardlinks:
                first = inodes.setdefault(entry.inode, entry.path)
                if first != entry.path:
                    self.error(
                        entry.path,
                        f"a hard link to {first} (set the 'hardlinks' option if intended)",
                    )

    def elf_files(self, elves: Mapping[str, ElfInfo] | None) -> None:
        if elves is None:
            elves = self._read_elves()
        for path, info in sorted(elves.items()):
            if info.elf_type in ("REL", "NONE", "CORE") or info.machine == 0:
                continue
            parts = path.split("/")
            in_usr = parts[0] == "usr" and len(parts) >= 2 and parts[1] not in ("include", "share")
            if not in_usr and parts[0] != "boot":
                self.error(
                    path,
                    "ELF file in a path where none may be (only usr, not its include or share)",
                )
            if info.textrel and not self.pkg.options.textrels:
                self.error(
                    path, "ELF file with text relocations (the 'textrels' option allows them)"
                )
            if info.execstack and not self.pkg.options.execstack:
                self.error(
                    path, "ELF file with an executable stack (the 'execstack' option allows it)"
                )

    def _read_elves(self) -> dict[str, ElfInfo]:
        found: dict[str, ElfInfo] = {}
        base = str(self.pkg.root)
        for entry in self.tree:
            if entry.kind != "file" or entry.size == 0:
                continue
            try:
                info = read_elf(f"{base}/{entry.path}", name=f"{self.pkg.name}: {entry.path}")
            except ElfError as exc:
                self.error(entry.path, str(exc).split(": ", 2)[-1])
                continue
            if info is not None:
                found[entry.path] = info
        return found

    def devel_warnings(self, siblings: Sequence[str]) -> None:
        name = self.pkg.name
        if self.pkg.options.lintstatic and not name.endswith(("-static", "-devel")):
            for entry in self.tree:
                if entry.path.startswith("usr/lib/") and entry.name.endswith(".a"):
                    self.warn(entry.path, "static libraries belong in the -static package")
                    break
        if name.endswith("-devel") or not any(s.endswith("-devel") for s in siblings):
            return
        for path in DEVEL_PATHS:
            found = self.paths.get(path)
            if found is not None and found.kind == "dir":
                self.warn(path, "belongs in the -devel package")
        for entry in self.tree:
            if entry.parent == "usr/lib" and entry.name.endswith(".so") and entry.kind == "symlink":
                self.warn(entry.path, ".so symlinks belong in the -devel package")
                break
        for entry in self.tree:
            if entry.parent == "usr/bin" and entry.name.endswith("-config"):
                self.warn(entry.path, "*-config tools belong in the -devel package")
                break
