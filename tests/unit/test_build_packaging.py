"""From staged trees to packages: names checked, metadata, automatic packages, scripts, lint;
and the build log's events."""

from __future__ import annotations

import asyncio
import io
import os
import zlib
from pathlib import Path
from typing import Any

import pytest

from apkfarm.apk.gzip_members import DEFAULT_DATA_COMPRESSION, DataCompression, MemberWriter
from apkfarm.build.errors import LintError
from apkfarm.build.log import (
    LogEvent,
    LogLine,
    MemoryLog,
    PhaseFinished,
    PhaseStarted,
    QueueLog,
    StreamLog,
    TeeLog,
    render,
)
from apkfarm.build.packaging import PackagingError, StagedEntry, package_build
from apkfarm.build.result import BuiltPackage
from apkfarm.build.runner import remove_work_dir
from apkfarm.profiles import resolve_context
from apkfarm.templates.model import Template
from apkfarm.templates.rules import LoadPolicy, apply_rules

BASE_FIELDS: dict[str, Any] = {
    "pkgname": "foo",
    "pkgver": "2.1",
    "pkgrel": 3,
    "pkgdesc": "Tool that does foo",
    "license": "MIT",
    "url": "https://example.org/foo",
}


def template(
    fields: dict[str, Any] | None = None, subpackages: list[dict[str, Any]] | None = None
) -> Template:
    raw = {
        "ok": True,
        "fields": {**BASE_FIELDS, **(fields or {})},
        "subpackages": subpackages or [],
    }
    outcome = apply_rules(
        raw,
        category="main",
        dirname="foo",
        context=resolve_context("x86_64", host="x86_64"),
        policy=LoadPolicy(),
    )
    assert outcome.template is not None, outcome.errors
    return outcome.template


DEVEL = {
    "name": "foo-devel",
    "declared": "foo-devel",
    "alternative": None,
    "install": {"kind": "default_devel", "man": "23", "extra": None},
    "fields": {"subdesc": "development files"},
}


def stage(destdir: Path, name: str, files: dict[str, bytes | str], version: str = "2.1") -> Path:
    root = destdir / f"{name}-{version}"
    root.mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):  # a symlink target
            target.symlink_to(content)
        else:
            target.write_bytes(content)
    return root


def build_packages(
    tmp_path: Path, tmpl: Template, entries: list[StagedEntry], **kwargs: Any
) -> tuple[list[BuiltPackage], list[str]]:
    """``package_build`` of the trees staged in ``tmp_path/destdir``."""
    template_dir = tmp_path / "template"
    template_dir.mkdir(exist_ok=True)
    return package_build(
        tmpl,
        entries,
        arch="x86_64",
        destdir=tmp_path / "destdir",
        template_dir=template_dir,
        sysroot_provides=kwargs.pop("sysroot_provides", {}),
        base_libraries=frozenset({"libc.so.6"}),
        source_date_epoch=1_700_000_000,
        commit="abc123",
        **kwargs,
    )


def pack(
    tmp_path: Path, tmpl: Template, entries: list[StagedEntry], **kwargs: Any
) -> tuple[dict[str, Any], list[str]]:
    built, warnings = build_packages(tmp_path, tmpl, entries, **kwargs)
    for package in built:
        package.close()
    return {p.info.pkgname: p for p in built}, warnings


def test_metadata_of_declared_and_automatic_packages(tmp_path: Path) -> None:
    destdir = tmp_path / "destdir"
    stage(destdir, "foo", {"usr/bin/foo": b"#!/bin/sh\n", "usr/lib/libfoo.so.1": b"x"})
    stage(destdir, "foo-devel", {"usr/lib/libfoo.so": "libfoo.so.1", "usr/include/foo.h": b"/**/"})
    stage(destdir, "foo-man", {"usr/share/man/man1/foo.1": b".TH FOO 1\n"})
    (tmp_path / "template").mkdir()
    (tmp_path / "template/foo.post-install").write_bytes(b"#!/bin/sh\necho hi\n")
    tmpl = template({"depends": ["bar>=1", "virt:thing!bar"]}, [DEVEL])
    packages, warnings = pack(
        tmp_path,
        tmpl,
        [
            StagedEntry("foo"),
            StagedEntry("foo-devel"),
            StagedEntry("foo-man", auto=True, parent="foo"),
        ],
    )
    assert list(packages) == ["foo", "foo-devel", "foo-man"]
    foo, devel, man = packages["foo"].info, packages["foo-devel"].info, packages["foo-man"].info
    assert foo.pkgver == "2.1-r3" and foo.origin == "foo" and foo.commit == "abc123"
    assert foo.depends == ("bar>=1", "virt:thing")  # cports' !provider is not apk's
    assert "cmd:foo=2.1-r3" in foo.provides
    assert devel.pkgdesc == "Tool that does foo (development files)"
    assert devel.depends == ("foo=2.1-r3",)  # its .so symlink points into foo
    assert man.pkgdesc == "Tool that does foo (manual pages)"
    assert man.install_if == ("foo=2.1-r3", "base-man") and man.depends == ()
    assert packages["foo-man"].auto and not packages["foo"].auto
    assert warnings == []
    assert packages["foo"].info.builddate == 1_700_000_000


def control_names(member: bytes) -> list[str]:
    raw = zlib.decompress(member, 31)
    names = []
    offset = 0
    while offset + 512 <= len(raw) and raw[offset : offset + 512].strip(b"\0"):
        header = raw[offset : offset + 512]
        names.append(header[:100].rstrip(b"\0").decode())
        size = int(header[124:136].rstrip(b"\0 ") or b"0", 8)
        offset += 512 + (size + 511) // 512 * 512
    return names


def test_install_scripts_come_from_the_template_directory(tmp_path: Path) -> None:
    stage(tmp_path / "destdir", "foo", {"usr/bin/foo": b"#!/bin/sh\n"})
    (tmp_path / "template").mkdir()
    (tmp_path / "template/foo.post-install").write_bytes(b"#!/bin/sh\necho hi\n")
    (tmp_path / "template/foo.pre-deinstall").symlink_to("/etc/shadow")
    with pytest.raises(PackagingError, match=r"foo\.pre-deinstall"):
        pack(tmp_path, template(), [StagedEntry("foo")])
    (tmp_path / "template/foo.pre-deinstall").unlink()
    packages, _ = pack(tmp_path, template(), [StagedEntry("foo")])
    names = control_names(packages["foo"].package.control_member)
    assert ".PKGINFO" in names and ".post-install" in names


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([StagedEntry("foo"), StagedEntry("glibc")], "neither main/foo"),
        ([StagedEntry("foo"), StagedEntry("foo-evil", True, "foo")], "neither main/foo"),
        ([StagedEntry("foo"), StagedEntry("bar-man", True, "bar")], "neither main/foo"),
        ([StagedEntry("foo-devel")], "did not stage foo"),
        ([StagedEntry("foo"), StagedEntry("foo")], "twice"),
        ([StagedEntry("foo"), StagedEntry("foo-doc", True, "foo")], r"foo-doc-2\.1 is missing"),
    ],
)
def test_staged_packages_must_be_the_templates_own(
    tmp_path: Path, entries: list[StagedEntry], message: str
) -> None:
    destdir = tmp_path / "destdir"
    for name in ("foo", "glibc", "foo-evil", "bar-man", "foo-devel"):
        stage(destdir, name, {"usr/share/x/README": b"x"})
    with pytest.raises(PackagingError, match=message):
        pack(tmp_path, template(), entries)


def test_a_staged_tree_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "destdir").mkdir()
    (tmp_path / "destdir/foo-2.1").symlink_to("/usr")
    with pytest.raises(PackagingError, match=r"foo-2\.1 is missing"):
        pack(tmp_path, template(), [StagedEntry("foo")])


def test_lint_errors_fail_and_declared_setuid_passes(tmp_path: Path) -> None:
    root = stage(tmp_path / "destdir", "foo", {"usr/sbin/foo": b"x"})
    with pytest.raises(LintError, match="usr/sbin"):
        pack(tmp_path, template(), [StagedEntry("foo")])
    (root / "usr/sbin/foo").unlink()
    (root / "usr/sbin").rmdir()
    stage(tmp_path / "destdir", "foo", {"usr/bin/foo": b"#!/bin/sh\n"})
    os.chmod(root / "usr/bin/foo", 0o4755)
    with pytest.raises(LintError, match="setuid"):
        pack(tmp_path, template(), [StagedEntry("foo")])
    declared = template({"file_modes": {"usr/bin/foo": ["root", "root", 0o4755]}})
    packages, _ = pack(tmp_path, declared, [StagedEntry("foo")])
    assert packages["foo"].info.pkgname == "foo"


def data_members(
    tmp_path: Path, tmpl: Template, entries: list[StagedEntry], **kwargs: Any
) -> dict[str, bytes]:
    """Each package's compressed data member."""
    built, _ = build_packages(tmp_path, tmpl, entries, **kwargs)
    members = {p.info.pkgname: b"".join(p.package.data.chunks()) for p in built}
    for package in built:
        package.close()
    return members


def deflated_as(member: bytes, compression: DataCompression) -> bool:
    """Whether ``member`` is exactly what ``compression`` makes of its content."""
    out = io.BytesIO()
    with MemberWriter(out, [], compression) as writer:
        writer.write(zlib.decompress(member, wbits=31))
    return out.getvalue() == member


def stage_foo_family(tmp_path: Path) -> list[StagedEntry]:
    text = b"".join(b"line %d of some documentation\n" % i for i in range(40_000))
    destdir = tmp_path / "destdir"
    stage(destdir, "foo", {"usr/share/foo/a.txt": text, "usr/lib/libfoo.so.1": b"x"})
    stage(destdir, "foo-devel", {"usr/include/foo.h": text[:50_000]})
    stage(destdir, "foo-man", {"usr/share/man/man1/foo.1": text[:70_000]})
    return [
        StagedEntry("foo"),
        StagedEntry("foo-devel"),
        StagedEntry("foo-man", auto=True, parent="foo"),
    ]


def test_the_compression_field_chooses_the_data_members_deflate(tmp_path: Path) -> None:
    entries = stage_foo_family(tmp_path)
    zlib9, zlib1 = DataCompression("zlib", 9), DataCompression("zlib", 1)
    # Declared and automatic subpackages inherit the template's field, as in cbuild.
    members = data_members(tmp_path, template({"compression": "deflate:9"}, [DEVEL]), entries)
    assert all(deflated_as(m, zlib9) for m in members.values())
    assert not deflated_as(members["foo"], DEFAULT_DATA_COMPRESSION)
    # A subpackage may choose its own.
    devel: dict[str, Any] = {
        **DEVEL,
        "fields": {"subdesc": "development files", "compression": "deflate:1"},
    }
    members = data_members(tmp_path, template({"compression": "deflate:9"}, [devel]), entries)
    assert deflated_as(members["foo-devel"], zlib1)
    assert deflated_as(members["foo"], zlib9) and deflated_as(members["foo-man"], zlib9)


@pytest.mark.parametrize("field", [{}, {"compression": "deflate"}])
def test_without_a_level_the_builders_compression_is_used(
    tmp_path: Path, field: dict[str, Any]
) -> None:
    entries = stage_foo_family(tmp_path)
    members = data_members(tmp_path, template(field, [DEVEL]), entries)
    assert all(deflated_as(m, DEFAULT_DATA_COMPRESSION) for m in members.values())
    chosen = DataCompression("zlib", 6)
    members = data_members(tmp_path, template(field, [DEVEL]), entries, compression=chosen)
    assert all(deflated_as(m, chosen) for m in members.values())


def test_a_compression_a_v2_package_cannot_hold_fails_before_scan_and_lint(
    tmp_path: Path,
) -> None:
    entries = stage_foo_family(tmp_path)
    stage(tmp_path / "destdir", "foo", {"usr/sbin/foo": b"x"})  # a lint error, found later
    tmpl = template({"compression": "zstd:19"}, [DEVEL])
    with pytest.raises(
        PackagingError, match=r"main/foo: package foo: compression 'zstd:19': .* apk v3"
    ):
        data_members(tmp_path, tmpl, entries)
    with pytest.raises(LintError, match="usr/sbin"):
        data_members(tmp_path, template({"compression": "deflate:9"}, [DEVEL]), entries)


def test_dependencies_from_the_sysroot(tmp_path: Path) -> None:
    stage(
        tmp_path / "destdir",
        "foo",
        {"usr/lib/pkgconfig/foo.pc": b"Name: foo\nVersion: 2\nRequires: zlib\n"},
    )
    with pytest.raises(Exception, match="zlib"):
        pack(tmp_path, template(), [StagedEntry("foo")])
    packages, _ = pack(
        tmp_path, template(), [StagedEntry("foo")], sysroot_provides={"pc:zlib": "zlib-devel"}
    )
    assert packages["foo"].info.depends == ("pc:zlib",)
    assert packages["foo"].info.provides == ("pc:foo=2",)


# --- the log ------------------------------------------------------------------------------


def test_rendering_and_sinks() -> None:
    events: list[LogEvent] = [
        PhaseStarted("build", 1.0),
        LogLine("cc -c foo.c", "build", 1.1),
        LogLine("installed zlib", "dependencies", 0.5, source="builder"),
        PhaseFinished("check", 2.0, 0.0, "skipped", "cross build"),
        PhaseFinished("build", 2.5, 1.5, "ok"),
    ]
    assert [render(e) for e in events] == [
        "==> build: started at 1.00s",
        "cc -c foo.c",
        "--- installed zlib",
        "==> check: skipped (cross build) in 0.00s",
        "==> build: ok in 1.50s",
    ]
    memory = MemoryLog()
    stream = io.BytesIO()
    queue = QueueLog()

    async def scenario() -> list[LogEvent]:
        tee = TeeLog(memory, StreamLog(stream), queue)
        for event in events:
            await tee.emit(event)
        await queue.close()
        return [e async for e in queue]

    assert asyncio.run(scenario()) == events
    assert memory.lines() == ["cc -c foo.c", "installed zlib"]
    assert stream.getvalue().decode() == memory.text()


def test_remove_work_dir_copes_with_what_builds_leave(tmp_path: Path) -> None:
    work = tmp_path / "work"
    locked = work / "builddir/locked"
    locked.mkdir(parents=True)
    (locked / "file").write_text("x")
    (work / "builddir/link").symlink_to("/usr")
    locked.chmod(0o500)
    (work / "builddir").chmod(0o500)
    remove_work_dir(work)
    assert not work.exists() and Path("/usr").is_dir()
    remove_work_dir(work)  # already gone: nothing to do
