"""apkfarm.build.lint: cbuild's packaging rules, every problem named by package and path."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import require

from apkfarm.build.errors import LintError
from apkfarm.build.lint import LintReport, lint_package, lint_packages
from apkfarm.build.options import PackageOptions
from apkfarm.build.scan import ScanEnvironment, scan_packages
from apkfarm.build.staged import FileMode, StagedPackage


@pytest.fixture(scope="module")
def elves(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A clean shared library, one with text relocations, one with an executable stack."""
    require(shutil.which("gcc") is not None, "gcc is not installed")
    d = tmp_path_factory.mktemp("elves")
    (d / "ok.c").write_text("int ok(void) { return 1; }\n")
    # a pointer stored in .text needs a relocation in the text segment
    (d / "tr.c").write_text('int x = 1;\n__asm__(".text\\n.globl p\\np: .quad x\\n.previous");\n')

    def cc(*argv: str) -> None:
        subprocess.run(["gcc", *argv], check=True, cwd=d, capture_output=True)

    cc("-shared", "-fPIC", "-Wl,-soname,libok.so.1", "-o", "libok.so.1", "ok.c")
    cc("-shared", "-fPIC", "-Wl,-z,notext", "-o", "libtr.so.1", "tr.c")
    cc("-shared", "-fPIC", "-Wl,-z,execstack", "-o", "libxs.so.1", "ok.c")
    return {p.name: p for p in d.iterdir()}


def put(root: Path, rel: str, text: str = "x", *, mode: int | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


def errors(report: LintReport) -> set[tuple[str, str]]:
    return {(f.path, f.message) for f in report.errors}


def test_a_well_formed_package_is_clean(tmp_path: Path, elves: dict[str, Path]) -> None:
    root = tmp_path / "ok"
    (root / "usr/lib").mkdir(parents=True)
    shutil.copy(elves["libok.so.1"], root / "usr/lib/libok.so.1")
    put(root, "usr/bin/tool", "#!/bin/sh\n", mode=0o755)
    put(root, "usr/share/man/man1/tool.1")
    put(root, "boot/firmware.txt")
    report = lint_package(StagedPackage("ok", root))
    assert report.findings == ()
    report.check()  # does not raise


def test_every_path_problem_is_listed(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    put(root, "README")  # a file at the top level
    put(root, "var/lib/bad/state")
    put(root, "opt/bad/thing")
    put(root, "lib64/libx.so")
    (root / "bin").symlink_to("usr/bin")
    put(root, "usr/sbin/daemon")
    put(root, "usr/lib64/liby.so")
    put(root, "usr/local/bin/z")
    put(root, "usr/libexec/helper")
    put(root, "usr/man/man1/bad.1")
    put(root, "usr/share/pixmaps/bad.png")
    put(root, "usr/share/mime/mime.cache")
    put(root, "usr/lib/python3.12/site-packages/bin/script")
    put(root, "etc/pam.d/bad")
    put(root, "etc/dbus-1/system.d/bad.conf")
    report = lint_package(StagedPackage("bad", root))
    assert errors(report) == {
        ("README", "forbidden at the top level (only usr, etc and boot)"),
        ("var", "forbidden at the top level (only usr, etc and boot)"),
        ("opt", "forbidden at the top level (only usr, etc and boot)"),
        ("lib64", "forbidden at the top level (only usr, etc and boot)"),
        ("bin", "forbidden at the top level (only usr, etc and boot)"),
        (
            "etc",
            "/etc exists: check that the package must install there and set the 'etcfiles' option",
        ),
        ("usr/sbin", "forbidden path (a base-system symlink or another package's)"),
        ("usr/lib64", "forbidden path (a base-system symlink or another package's)"),
        ("usr/local", "forbidden path (a base-system symlink or another package's)"),
        ("usr/libexec", "forbidden path (a base-system symlink or another package's)"),
        (
            "usr/share/mime/mime.cache",
            "forbidden path (a base-system symlink or another package's)",
        ),
        ("usr/share/pixmaps", "application icons belong in /usr/share/icons"),
        ("usr/man", "belongs in /usr/share/man, not /usr/man"),
        ("etc/pam.d", "belongs in /usr/lib/pam.d, not /etc"),
        ("etc/dbus-1/system.d", "belongs in /usr/share/dbus-1/system.d, not /etc"),
        (
            "usr/lib/python3.12/site-packages/bin",
            "a prefix directory inside Python site-packages",
        ),
    }
    with pytest.raises(LintError) as err:
        report.check()
    assert len(err.value.problems) == 16
    assert "bad: usr/sbin: forbidden path" in str(err.value)


def test_etc_needs_the_etcfiles_option_and_top_level_files_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "motd"
    put(root, "etc/motd.conf")
    put(root, "usr/bin/motd", mode=0o755)
    assert errors(lint_package(StagedPackage("motd", root))) == {
        (
            "etc",
            "/etc exists: check that the package must install there and set the 'etcfiles' option",
        )
    }
    allowed = StagedPackage("motd", root, options=PackageOptions.parse(["etcfiles"]))
    assert lint_package(allowed).findings == ()
    (root / "usr/share").mkdir()
    (root / "usr" / "share" / "x").symlink_to("/")
    (root / "boot").symlink_to("usr")
    assert errors(lint_package(allowed)) == {
        ("boot", "forbidden symlink at the top level (must be a directory)")
    }


def test_empty_packages(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    assert errors(lint_package(StagedPackage("e", root))) == {
        ("", "the package is empty (mark it with the 'empty' option if intended)")
    }
    assert lint_package(StagedPackage("e", root, build_style="meta")).findings == ()
    marked = StagedPackage("e", root, options=PackageOptions(empty=True))
    assert lint_package(marked).findings == ()
    put(root, "usr/share/doc/e/README")
    assert errors(lint_package(marked)) == {("", "the package is marked 'empty' but is not")}


def test_setuid_must_be_declared_in_file_modes(tmp_path: Path) -> None:
    root = tmp_path / "su"
    put(root, "usr/bin/su", mode=0o4755)
    put(root, "usr/bin/wall", mode=0o2755)
    put(root, "usr/lib/su/helpers/h1", mode=0o4750)
    report = lint_package(StagedPackage("su", root))
    assert errors(report) == {
        ("usr/bin/su", "setuid file (mode 0o4755) not declared in the template's file_modes"),
        ("usr/bin/wall", "setgid file (mode 0o2755) not declared in the template's file_modes"),
        (
            "usr/lib/su/helpers/h1",
            "setuid file (mode 0o4750) not declared in the template's file_modes",
        ),
    }
    declared = StagedPackage(
        "su",
        root,
        file_modes={
            "usr/bin/su": FileMode("root", "root", 0o4755),
            "usr/bin/wal?": FileMode("root", "tty", 0o2755),  # a glob, as cbuild matches
            "usr/lib/su": FileMode("root", "root", 0o4750, recursive=True),
        },
    )
    assert lint_package(declared).findings == ()
    # declaring the file without the bit does not make the bit acceptable
    wrong = replace(
        declared, file_modes={**declared.file_modes, "usr/bin/su": FileMode("root", "root", 0o755)}
    )
    assert (
        "usr/bin/su",
        "setuid file (mode 0o4755) not declared in the template's file_modes",
    ) in errors(lint_package(wrong))


def test_world_writable_special_files_and_hard_links(tmp_path: Path) -> None:
    root = tmp_path / "w"
    put(root, "usr/share/w/open.txt", mode=0o666)
    (root / "usr/share/w/drop").mkdir(mode=0o777)
    (root / "usr/share/w/drop").chmod(0o1777)
    os.mkfifo(root / "usr/share/w/pipe")
    first = put(root, "usr/share/w/a.txt")
    os.link(first, root / "usr/share/w/b.txt")
    report = lint_package(StagedPackage("w", root))
    assert errors(report) == {
        ("usr/share/w/open.txt", "world-writable file (mode 0o666)"),
        ("usr/share/w/drop", "world-writable dir (mode 0o1777)"),
        ("usr/share/w/pipe", "special file (mode prw-r--r--)"),
        (
            "usr/share/w/b.txt",
            "a hard link to usr/share/w/a.txt (set the 'hardlinks' option if intended)",
        ),
    }
    relaxed = StagedPackage(
        "w",
        root,
        options=PackageOptions(hardlinks=True),
        file_modes={"usr/share/w/drop": FileMode("root", "root", 0o1777)},
    )
    assert errors(lint_package(relaxed)) == {
        ("usr/share/w/open.txt", "world-writable file (mode 0o666)"),
        ("usr/share/w/pipe", "special file (mode prw-r--r--)"),
    }


def test_elf_placement_textrels_and_execstack(tmp_path: Path, elves: dict[str, Path]) -> None:
    root = tmp_path / "elf"
    for rel, src in {
        "usr/share/elf/libok.so.1": "libok.so.1",
        "usr/include/libok.so.1": "libok.so.1",
        "boot/loader.so": "libok.so.1",
        "usr/lib/libtr.so.1": "libtr.so.1",
        "usr/lib/libxs.so.1": "libxs.so.1",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(elves[src], root / rel)
    banned = "ELF file in a path where none may be (only usr, not its include or share)"
    report = lint_package(StagedPackage("elf", root))
    assert errors(report) == {
        ("usr/share/elf/libok.so.1", banned),
        ("usr/include/libok.so.1", banned),
        (
            "usr/lib/libtr.so.1",
            "ELF file with text relocations (the 'textrels' option allows them)",
        ),
        (
            "usr/lib/libxs.so.1",
            "ELF file with an executable stack (the 'execstack' option allows it)",
        ),
    }
    allowed = StagedPackage("elf", root, options=PackageOptions(textrels=True, execstack=True))
    assert errors(lint_package(allowed)) == {
        ("usr/share/elf/libok.so.1", banned),
        ("usr/include/libok.so.1", banned),
    }


def test_malformed_elf_is_an_error(tmp_path: Path, elves: dict[str, Path]) -> None:
    root = tmp_path / "cut"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/libcut.so.1").write_bytes(elves["libok.so.1"].read_bytes()[:80])
    (finding,) = lint_package(StagedPackage("cut", root)).errors
    assert finding.path == "usr/lib/libcut.so.1"
    assert finding.message.startswith("malformed ELF")


def test_devel_and_static_warnings_do_not_fail(tmp_path: Path) -> None:
    main, devel = tmp_path / "foo", tmp_path / "foo-devel"
    put(main, "usr/include/foo.h")
    put(main, "usr/lib/pkgconfig/foo.pc")
    put(main, "usr/lib/libfoo.a")
    put(main, "usr/lib/libfoo.so.1")
    (main / "usr/lib/libfoo.so").symlink_to("libfoo.so.1")
    put(main, "usr/bin/foo-config", mode=0o755)
    put(devel, "usr/share/doc/foo-devel/README")
    report = lint_packages([StagedPackage("foo", main), StagedPackage("foo-devel", devel)])
    assert report.errors == ()
    assert {(w.package, w.path, w.message) for w in report.warnings} == {
        ("foo", "usr/lib/libfoo.a", "static libraries belong in the -static package"),
        ("foo", "usr/include", "belongs in the -devel package"),
        ("foo", "usr/lib/pkgconfig", "belongs in the -devel package"),
        ("foo", "usr/lib/libfoo.so", ".so symlinks belong in the -devel package"),
        ("foo", "usr/bin/foo-config", "*-config tools belong in the -devel package"),
    }
    report.check()  # warnings never fail


def test_lint_reuses_scan_results(tmp_path: Path, elves: dict[str, Path]) -> None:
    root = tmp_path / "xs"
    (root / "usr/lib").mkdir(parents=True)
    shutil.copy(elves["libxs.so.1"], root / "usr/lib/libxs.so.1")
    pkg = StagedPackage("xs", root)
    env = ScanEnvironment("x86_64", "1", 0, base_libraries=frozenset({"libc.so.6"}))
    scanned = scan_packages([pkg], env)
    report = lint_packages([pkg], elves={"xs": scanned["xs"].elves})
    assert [str(f) for f in report.errors] == [
        "xs: usr/lib/libxs.so.1: ELF file with an executable stack (the 'execstack' option allows it)"
    ]
