"""From staged trees to unsigned packages, after the sandbox has finished. In order:

1. ``check_staged`` — the packages the driver reports must be the
   template's own (itself, its declared subpackages, automatic
   ``<package>-<suffix>`` ones) and their trees real directories;
2. metadata — each package's fields: the template's, a subpackage's as
   loaded, or cbuild's defaults for an automatic one;
3. ``scan_packages`` — automatic ``so:``/``pc:``/``cmd:`` provides and
   dependencies (``apkfarm.build.scan``);
4. ``lint_packages`` — cbuild's packaging rules; errors fail the build,
   warnings go to the log;
5. ``.PKGINFO`` and install scripts (``<name>.<script>`` in the template's
   directory), then ``build_package``, whose data member is deflated as the
   package's ``compression`` field says (cbuild's ``deflate:N``: zlib at
   level N; ``none``: stored blocks; no field or plain ``deflate``: the
   builder's default; ``zstd`` is refused: see ``apkfarm.apk.gzip_members``).

The staged trees were written by untrusted build code; the scan and lint
never follow a symlink out of them, and the package writer packs symlinks
as symlinks.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apkfarm import version
from apkfarm.apk.errors import ApkError
from apkfarm.apk.gzip_members import (
    DEFAULT_DATA_COMPRESSION,
    DataCompression,
    data_compression_for,
)
from apkfarm.apk.package import build_package
from apkfarm.apk.pkginfo import SCRIPT_NAMES, PkgInfo
from apkfarm.build.errors import BuildError
from apkfarm.build.lint import lint_packages
from apkfarm.build.options import PackageOptions
from apkfarm.build.result import BuiltPackage
from apkfarm.build.scan import PackageScan, ScanEnvironment, scan_packages
from apkfarm.build.staged import FileMode, StagedPackage
from apkfarm.errors import ApkfarmError
from apkfarm.templates.fields import AUTOPKGS, FIELDS
from apkfarm.templates.model import Template

__all__ = ["PackagingError", "StagedEntry", "check_staged", "package_build"]

MAX_SCRIPT_BYTES = 1 << 20
_SUBDESC_SUFFIX = re.compile(r" \(.+\)$")
_SUBPACKAGE_DEFAULTS: Mapping[str, Any] = {f.name: f.default for f in FIELDS if f.subpkg}
_AUTOPKGS: Mapping[str, tuple[str, str | None]] = {
    suffix: (description, install_if) for suffix, description, install_if in AUTOPKGS
}


class PackagingError(BuildError):
    """Staged packages that cannot become packages (bad names, metadata, scripts)."""


@dataclass(frozen=True)
class StagedEntry:
    """A package the driver staged: its name, and for automatic ones the package split."""

    name: str
    auto: bool = False
    parent: str | None = None

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> StagedEntry:
        name, auto, parent = data.get("name"), data.get("auto", False), data.get("parent")
        if not isinstance(name, str) or not isinstance(auto, bool):
            raise PackagingError(f"malformed package entry from the build: {dict(data)!r}")
        if parent is not None and not isinstance(parent, str):
            raise PackagingError(f"malformed package entry from the build: {dict(data)!r}")
        return cls(name, auto, parent)


def check_staged(
    template: Template, entries: Sequence[StagedEntry], destdir: Path
) -> list[StagedEntry]:
    """The staged packages, checked against what the template may produce."""
    declared = [template.pkgname, *(s.name for s in template.subpackages)]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise PackagingError(f"the build reported a package twice: {names}")
    missing = [name for name in declared if name not in names]
    if missing:
        raise PackagingError(f"the build did not stage {', '.join(missing)}")
    for entry in entries:
        if entry.name in declared:
            if entry.auto:
                raise PackagingError(f"{entry.name} is declared, not automatic")
        else:
            suffix = (
                entry.name.removeprefix(f"{entry.parent}-")
                if entry.parent and entry.name.startswith(f"{entry.parent}-")
                else None
            )
            if not entry.auto or entry.parent not in declared or suffix not in _AUTOPKGS:
                raise PackagingError(
                    f"the build staged {entry.name!r}, which is neither {template.full_name} "
                    "nor one of its subpackages nor an automatic subpackage of them"
                )
        root = destdir / f"{entry.name}-{template.pkgver}"
        if root.is_symlink() or not root.is_dir():
            raise PackagingError(f"{entry.name}: staged tree {root.name} is missing")
    return list(entries)


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return ()


def _auto_fields(
    name: str, parent: str, parent_fields: Mapping[str, Any], template: Template
) -> dict[str, Any]:
    """cbuild's fields for an automatic subpackage `name` of package `parent`."""
    suffix = name.removeprefix(f"{parent}-")
    description, install_if = _AUTOPKGS[suffix]
    fields = dict(_SUBPACKAGE_DEFAULTS)
    inherited = ("license", "pkgdesc", "origin", "provider_priority", "replaces_priority")
    for key in (*inherited, "compression"):
        fields[key] = parent_fields.get(key, template.fields.get(key))
    fields["subdesc"] = description
    base_dep = f"{parent}={template.version}"
    depends: list[str] = []
    if suffix not in ("man", "doc"):
        depends.append(base_dep)
    if install_if and install_if.startswith("-"):  # installs with a sibling (dinit-links)
        fields["install_if"] = [f"{parent}{install_if}={template.version}"]
    elif install_if:
        if not install_if.startswith("base-") and install_if != "python-pycache":
            depends.append(install_if)
        fields["install_if"] = [base_dep, install_if]
    fields["depends"] = depends
    return fields


def _description(fields: Mapping[str, Any]) -> str:
    text = str(fields.get("pkgdesc") or "")
    subdesc = str(fields.get("subdesc") or "")
    if subdesc:
        text = f"{_SUBDESC_SUFFIX.sub('', text)} ({subdesc})"
    return text


def _apk_dependencies(entries: Sequence[str], where: str) -> list[str]:
    out = []
    for entry in entries:
        try:
            out.append(version.parse_dependency(entry).to_apk())
        except ApkfarmError as error:
            raise PackagingError(f"{where}: {error}") from error
    return out


def _file_modes(value: Any, where: str) -> dict[str, FileMode]:
    modes: dict[str, FileMode] = {}
    if not isinstance(value, Mapping):
        return modes
    for path, entry in value.items():
        raw = tuple(entry) if isinstance(entry, list | tuple) else entry
        modes[str(path).removeprefix("+").lstrip("/")] = FileMode.parse(str(path), raw, where=where)
    return modes


def _scripts(template_dir: Path, name: str) -> dict[str, bytes]:
    scripts: dict[str, bytes] = {}
    for script in SCRIPT_NAMES:
        path = template_dir / f"{name}.{script}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as error:
            raise PackagingError(f"{path.name}: cannot read the install script: {error}") from error
        with os.fdopen(fd, "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                raise PackagingError(f"{path.name}: an install script must be a regular file")
            data = stream.read(MAX_SCRIPT_BYTES + 1)
        if len(data) > MAX_SCRIPT_BYTES:
            raise PackagingError(
                f"{path.name}: install script larger than {MAX_SCRIPT_BYTES} bytes"
            )
        scripts[script] = data
    return scripts


def _compression(
    fields: Mapping[str, Any], default: DataCompression, where: str
) -> DataCompression:
    spec = fields.get("compression")
    if spec is not None and not isinstance(spec, str):
        raise PackagingError(f"{where}: compression must be a string such as 'deflate:9'")
    try:
        return data_compression_for(spec, default)
    except ApkError as error:
        raise PackagingError(f"{where}: {error}") from error


@dataclass(frozen=True)
class _Plan:
    entry: StagedEntry
    fields: Mapping[str, Any]
    staged: StagedPackage
    compression: DataCompression


def package_build(
    template: Template,
    entries: Sequence[StagedEntry],
    *,
    arch: str,
    destdir: Path,
    template_dir: Path,
    sysroot_provides: Mapping[str, str],
    base_libraries: frozenset[str],
    source_date_epoch: int,
    commit: str | None = None,
    spool_dir: Path | None = None,
    compression: DataCompression = DEFAULT_DATA_COMPRESSION,
) -> tuple[list[BuiltPackage], list[str]]:
    """Scan, lint and pack the staged packages; the packages and the lint's warnings.

    ``compression`` is the builder's deflate engine for data members; a
    package's ``compression`` field overrides it (checked before anything
    is scanned or written).
    """
    entries = check_staged(template, entries, destdir)
    sub_fields = {s.name: s.fields for s in template.subpackages}
    plans: list[_Plan] = []
    fields_of: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        if entry.name == template.pkgname:
            fields: Mapping[str, Any] = template.fields
        elif not entry.auto:
            fields = sub_fields[entry.name]
        else:
            assert entry.parent is not None
            fields = _auto_fields(entry.name, entry.parent, fields_of[entry.parent], template)
        fields_of[entry.name] = fields
        where = f"{template.full_name}: package {entry.name}"
        try:
            options = PackageOptions.parse(_strings(fields.get("options")), where=where)
        except BuildError as error:
            raise PackagingError(str(error)) from error
        staged = StagedPackage(
            name=entry.name,
            root=destdir / f"{entry.name}-{template.pkgver}",
            options=options,
            build_style=str(template.fields.get("build_style") or ""),
            explicit_provides=_strings(fields.get("provides")),
            ignore_shlibs=_strings(fields.get("ignore_shlibs")),
            skip_dependencies=_strings(fields.get("skip_dependencies")),
            skip_providers=_strings(fields.get("skip_providers")),
            broken_symlinks=_strings(fields.get("broken_symlinks")),
            file_modes=_file_modes(fields.get("file_modes"), where),
        )
        plans.append(_Plan(entry, fields, staged, _compression(fields, compression, where)))

    environment = ScanEnvironment(
        arch=arch,
        pkgver=template.pkgver,
        pkgrel=template.pkgrel,
        sysroot_provides=sysroot_provides,
        base_libraries=base_libraries,
    )
    staged_packages = [plan.staged for plan in plans]
    scans = scan_packages(staged_packages, environment)
    report = lint_packages(staged_packages, elves={n: s.elves for n, s in scans.items()})
    report.check()
    warnings = [f"lint: {finding}" for finding in report.warnings]

    packer = _Packer(template, arch, template_dir, source_date_epoch, commit, spool_dir)
    built: list[BuiltPackage] = []
    try:
        for plan in plans:
            built.append(packer.pack(plan, scans[plan.entry.name]))
    except BaseException:
        for package in built:
            package.close()
        raise
    return built, warnings


@dataclass(frozen=True)
class _Packer:
    template: Template
    arch: str
    template_dir: Path
    source_date_epoch: int
    commit: str | None
    spool_dir: Path | None

    def pack(self, plan: _Plan, scan: PackageScan) -> BuiltPackage:
        template = self.template
        fields = plan.fields
        name = plan.entry.name
        where = f"{template.full_name}: package {name}"
        explicit_depends = _apk_dependencies(_strings(fields.get("depends")), where)
        explicit_provides = _apk_dependencies(_strings(fields.get("provides")), where)
        depends = list(dict.fromkeys([*explicit_depends, *scan.depends()]))
        provides = list(dict.fromkeys([*explicit_provides, *scan.provides()]))
        replaces_priority = int(fields.get("replaces_priority") or 0)
        provider_priority = int(fields.get("provider_priority") or 0)
        info = PkgInfo(
            pkgname=name,
            pkgver=template.version,
            arch=self.arch,
            pkgdesc=_description(fields),
            url=str(template.fields.get("url") or ""),
            builddate=self.source_date_epoch,
            license=str(fields.get("license") or template.fields.get("license") or ""),
            origin=template.pkgname,
            commit=self.commit,
            depends=tuple(depends),
            provides=tuple(provides),
            install_if=_strings(fields.get("install_if")),
            replaces=_strings(fields.get("replaces")),
            replaces_priority=replaces_priority or None,
            provider_priority=provider_priority or None,
            triggers=_strings(fields.get("triggers")),
        )
        setuid = [
            path
            for path, mode in plan.staged.file_modes.items()
            if mode.mode & (stat.S_ISUID | stat.S_ISGID)
        ]
        try:
            package = build_package(
                plan.staged.root,
                info,
                scripts=_scripts(self.template_dir, name),
                allowed_setuid=setuid,
                source_date_epoch=self.source_date_epoch,
                spool_dir=self.spool_dir,
                compression=plan.compression,
            )
        except ApkError as error:
            raise PackagingError(f"{where}: {error}") from error
        return BuiltPackage(package.info, package, auto=plan.entry.auto)
