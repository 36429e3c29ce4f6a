"""apkfarm.build.scan over staged trees built here with the host compiler."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import require

from apkfarm.build import pkgconf
from apkfarm.build.errors import BuildError, ScanError
from apkfarm.build.options import PackageOptions
from apkfarm.build.scan import ScanEnvironment, provider_map, scan_packages
from apkfarm.build.staged import StagedPackage

ENV = ScanEnvironment(
    arch="x86_64",
    pkgver="1.2.3",
    pkgrel=0,
    sysroot_provides={"so:libbaz.so.2": "baz", "pc:zlib": "zlib-devel"},
    base_libraries=frozenset({"libc.so.6"}),
)


def _cc(*argv: str, cwd: Path) -> None:
    subprocess.run(["gcc", *argv], check=True, cwd=cwd, capture_output=True)


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """libfoo.so.1.2.3, a sysroot libbaz.so.2, a program using both, a plugin."""
    require(shutil.which("gcc") is not None, "gcc is not installed")
    d = tmp_path_factory.mktemp("objects")
    (d / "foo.c").write_text('#include <stdio.h>\nvoid foo(void) { puts("foo"); }\n')
    (d / "baz.c").write_text('#include <stdio.h>\nvoid baz(void) { puts("baz"); }\n')
    (d / "plug.c").write_text('#include <stdio.h>\nvoid plug(void) { puts("plug"); }\n')
    (d / "tool.c").write_text("void foo(void); void baz(void);\nint main(void) { foo(); baz(); }\n")
    _cc("-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o", "libfoo.so.1.2.3", "foo.c", cwd=d)
    _cc("-shared", "-fPIC", "-Wl,-soname,libbaz.so.2", "-o", "libbaz.so.2", "baz.c", cwd=d)
    _cc("-shared", "-fPIC", "-Wl,-soname,plug.so", "-o", "plug.so", "plug.c", cwd=d)
    (d / "libfoo.so").symlink_to("libfoo.so.1.2.3")
    _cc("-o", "footool", "tool.c", "-L.", "-lfoo", "-l:libbaz.so.2", cwd=d)
    return {p.name: p for p in d.iterdir()}


def _put(root: Path, rel: str, *, copy: Path | None = None, text: str | None = None) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if copy is not None:
        shutil.copy2(copy, path)
    else:
        path.write_text(text or "")


def _link(root: Path, rel: str, target: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


FOO_PC = """prefix=/usr
libdir=${prefix}/lib
includedir=${prefix}/include

Name: foo
Description: test library
Version: 1.2.3
Requires: zlib >= 1.2, bar
Requires.private: foo-internal
Libs: -L${libdir} -lfoo
Cflags: -I${includedir}
"""


@pytest.fixture
def build(tmp_path: Path, objects: dict[str, Path]) -> dict[str, StagedPackage]:
    """A main package, its -devel, -progs and -extra subpackages, staged."""
    roots = {n: tmp_path / n for n in ("libfoo", "libfoo-devel", "libfoo-progs", "libfoo-extra")}
    for root in roots.values():
        root.mkdir()
    main, devel, progs, extra = roots.values()
    _put(main, "usr/lib/libfoo.so.1.2.3", copy=objects["libfoo.so.1.2.3"])
    _link(main, "usr/lib/libfoo.so.1", "libfoo.so.1.2.3")
    _put(main, "usr/share/licenses/libfoo/COPYING", text="license")
    _link(devel, "usr/lib/libfoo.so", "libfoo.so.1")
    _put(devel, "usr/include/foo.h", text="void foo(void);\n")
    _put(devel, "usr/lib/pkgconfig/foo.pc", text=FOO_PC)
    _put(devel, "usr/lib/pkgconfig/foo-internal.pc", text="Name: fi\nVersion: 1.2.3\n")
    _put(progs, "usr/bin/footool", copy=objects["footool"])
    _link(progs, "usr/bin/ft", "footool")
    _put(progs, "usr/bin/weird=name", text="#!/bin/sh\n")
    _put(extra, "usr/share/pkgconfig/bar.pc", text="Name: bar\nVersion: 2.0-rc1\n")
    _put(extra, "usr/lib/footool/plug.so", copy=objects["plug.so"])
    return {n: StagedPackage(n, r) for n, r in roots.items()}


def test_provides_and_depends_like_cbuild(build: dict[str, StagedPackage]) -> None:
    result = scan_packages(list(build.values()), ENV)

    main = result["libfoo"]
    assert main.provides() == ["so:libfoo.so.1=1.2.3"]
    assert main.depends() == []
    assert main.base_libraries == ("libc.so.6",)
    assert set(main.elves) == {"usr/lib/libfoo.so.1.2.3"}

    devel = result["libfoo-devel"]
    assert devel.provides() == ["pc:foo-internal=1.2.3", "pc:foo=1.2.3"]
    # the .so symlink resolves into the main package; Requires become pc: deps,
    # the one the package provides itself (foo-internal) does not
    assert devel.depends() == ["libfoo=1.2.3-r0", "pc:bar", "pc:zlib>=1.2"]
    (sibling,) = devel.package_depends
    assert sibling.reasons == ("symlink usr/lib/libfoo.so",)
    assert {d.requirement: d.provider for d in devel.pc_depends} == {
        "bar": "libfoo-extra",
        "zlib>=1.2": "zlib-devel",
    }

    progs = result["libfoo-progs"]
    # "weird=name" cannot be a cmd: provider; the symlink ft is a command too
    assert progs.provides() == ["cmd:footool=1.2.3-r0", "cmd:ft=1.2.3-r0"]
    assert progs.depends() == ["libfoo=1.2.3-r0", "so:libbaz.so.2"]
    (baz,) = progs.so_depends
    assert (baz.provider, baz.paths) == ("baz", ("usr/bin/footool",))

    extra = result["libfoo-extra"]
    # pre-release spelled the apk way; an unversioned SONAME outside usr/lib is a plugin
    assert extra.provides() == ["pc:bar=2.0_rc1"]


def test_unversioned_soname_in_usr_lib_provides_version_zero(
    tmp_path: Path, objects: dict[str, Path]
) -> None:
    root = tmp_path / "plug"
    _put(root, "usr/lib/plug.so", copy=objects["plug.so"])
    result = scan_packages([StagedPackage("plug", root)], ENV)
    assert result["plug"].provides() == ["so:plug.so=0"]


def test_explicit_provides_and_options_switch_scans_off(build: dict[str, StagedPackage]) -> None:
    pkgs = dict(build)
    pkgs["libfoo"] = replace(build["libfoo"], explicit_provides=("so:libfoo.so.1=9",))
    pkgs["libfoo-progs"] = replace(
        build["libfoo-progs"],
        options=PackageOptions(scancmd=False),
        ignore_shlibs=("libbaz.so.2",),
    )
    pkgs["libfoo-devel"] = replace(
        build["libfoo-devel"], options=PackageOptions(scanpkgconf=False, scanrundeps=False)
    )
    result = scan_packages(list(pkgs.values()), ENV)
    assert result["libfoo"].provides() == []  # the template states it itself
    assert result["libfoo-progs"].provides() == []
    assert result["libfoo-progs"].depends() == ["libfoo=1.2.3-r0"]
    assert result["libfoo-devel"].provides() == [] and result["libfoo-devel"].depends() == []


def test_unknown_library_is_an_error_naming_file_and_library(
    build: dict[str, StagedPackage],
) -> None:
    env = replace(ENV, sysroot_provides={"pc:zlib": "zlib-devel"})
    with pytest.raises(ScanError) as err:
        scan_packages(list(build.values()), env)
    assert err.value.problems == (
        "libfoo-progs: usr/bin/footool: needs libbaz.so.2, which no package of this build, "
        "no farm package in the sysroot and not the build root provides",
    )


def test_every_problem_of_every_package_is_listed(
    build: dict[str, StagedPackage], tmp_path: Path
) -> None:
    env = replace(ENV, sysroot_provides={}, base_libraries=frozenset())
    _link(build["libfoo-extra"].root, "usr/lib/dangling", "nothing-here")
    with pytest.raises(ScanError) as err:
        scan_packages(list(build.values()), env)
    text = str(err.value)
    assert text.startswith("automatic dependency scan failed:\n")
    problems = err.value.problems
    assert any(p.startswith("libfoo: usr/lib/libfoo.so.1.2.3: needs libc.so.6") for p in problems)
    assert any("libfoo-progs: usr/bin/footool: needs libbaz.so.2" in p for p in problems)
    assert any("foo.pc requires zlib>=1.2, which no package" in p for p in problems)
    assert any(
        p.startswith("libfoo-extra: usr/lib/dangling: symlink to nothing-here") for p in problems
    )
    assert len(problems) >= 5


def test_symlinks_never_lead_out_of_the_package(tmp_path: Path) -> None:
    root = tmp_path / "evil"
    # targets that exist on the host, reached by absolute path and by climbing out
    _link(root, "usr/share/evil/abs", "/etc/passwd")
    _link(root, "usr/share/evil/climb", "../../../../../../../../etc/passwd")
    _link(root, "usr/lib/pkgconfig/host.pc", "/usr/lib/x86_64-linux-gnu/pkgconfig/zlib.pc")
    _link(root, "usr/share/hop", "/")  # resolves to the package root, which exists
    _put(root, "usr/share/real.txt", text="x")
    with pytest.raises(ScanError) as err:
        scan_packages([StagedPackage("evil", root)], ENV)
    problems = sorted(err.value.problems)
    assert problems == [
        "evil: usr/lib/pkgconfig/host.pc: symlink to /usr/lib/x86_64-linux-gnu/pkgconfig/"
        "zlib.pc points to nothing in this build (allow it with broken_symlinks if it is "
        "meant for another package)",
        "evil: usr/share/evil/abs: symlink to /etc/passwd points to nothing in this build "
        "(allow it with broken_symlinks if it is meant for another package)",
        "evil: usr/share/evil/climb: symlink to ../../../../../../../../etc/passwd points to "
        "nothing in this build (allow it with broken_symlinks if it is meant for another package)",
    ]
    allowed = StagedPackage("evil", root, broken_symlinks=("usr/share/evil/*", "*.pc"))
    assert scan_packages([allowed], ENV)["evil"].depends() == []
    lenient = StagedPackage("evil", root, options=PackageOptions(brokenlinks=True))
    assert scan_packages([lenient], ENV)["evil"].provides() == []


def test_symlink_through_a_symlinked_directory_resolves_inside(tmp_path: Path) -> None:
    main, sub = tmp_path / "a", tmp_path / "a-data"
    _put(sub, "usr/share/a/v2/data.txt", text="d")
    _link(sub, "usr/share/a/current", "v2")
    _link(main, "usr/share/doc/a/data", "/usr/share/a/current/data.txt")
    result = scan_packages([StagedPackage("a", main), StagedPackage("a-data", sub)], ENV)
    assert result["a"].depends() == ["a-data=1.2.3-r0"]


def test_foreign_elf_is_refused_unless_allowed(build: dict[str, StagedPackage]) -> None:
    env = replace(ENV, arch="aarch64")
    with pytest.raises(ScanError) as err:
        scan_packages([build["libfoo"]], env)
    assert err.value.problems == (
        "libfoo: usr/lib/libfoo.so.1.2.3: ELF file for x86_64, the target is aarch64 "
        "(set the 'foreignelf' option if intended)",
    )
    allowed = replace(build["libfoo"], options=PackageOptions(foreignelf=True))
    result = scan_packages([allowed], env)["libfoo"]
    assert result.foreign_elves == ("usr/lib/libfoo.so.1.2.3",)
    assert result.provides() == [] and result.elves == {}
    with pytest.raises(BuildError, match="unknown target architecture 'vax'"):
        scan_packages([allowed], replace(ENV, arch="vax"))


def test_malformed_elf_is_reported_unless_skipped(tmp_path: Path, objects: dict[str, Path]) -> None:
    root = tmp_path / "broken"
    _put(root, "usr/lib/libcut.so.1", text="")
    (root / "usr/lib/libcut.so.1").write_bytes(objects["libfoo.so.1.2.3"].read_bytes()[:100])
    with pytest.raises(ScanError, match=r"broken: usr/lib/libcut\.so\.1: malformed ELF"):
        scan_packages([StagedPackage("broken", root)], ENV)
    skipped = StagedPackage(
        "broken", root, skip_dependencies=("*.so.1",), skip_providers=("usr/lib/*",)
    )
    assert scan_packages([skipped], ENV)["broken"].provides() == []


@pytest.mark.parametrize(
    ("requires", "message"),
    [
        ("zlib != 1.0", "operator '!=' apk cannot express"),
        ("zlib >= 1..0", "'1..0' is not an apk version"),
        ("zlib >=", "without a version"),
    ],
)
def test_bad_pc_requirements(tmp_path: Path, requires: str, message: str) -> None:
    root = tmp_path / "p"
    _put(root, "usr/lib/pkgconfig/p.pc", text=f"Version: 1\nRequires: {requires}\n")
    with pytest.raises(ScanError, match=message):
        scan_packages([StagedPackage("p", root)], ENV)


def test_pc_file_problems(tmp_path: Path) -> None:
    root = tmp_path / "p"
    _put(root, "usr/lib/pkgconfig/dup.pc", text="Version: 1\n")
    _put(root, "usr/share/pkgconfig/dup.pc", text="Version: 1\n")
    _put(root, "usr/lib/pkgconfig/badver.pc", text="Version: 1.0 beta\n")
    _put(root, "usr/lib/pkgconfig/junk.pc", text="this is not pkg-config\n")
    doubling = "a=x\n" + "".join("a=${a}${a}\n" for _ in range(20))
    _put(root, "usr/lib/pkgconfig/bomb.pc", text=doubling)
    with pytest.raises(ScanError) as err:
        scan_packages([StagedPackage("p", root)], ENV)
    text = "\n".join(err.value.problems)
    assert "dup.pc is also in usr/lib/pkgconfig/dup.pc" in text
    assert "'1.0 beta' is not an apk version" in text
    assert "neither a variable nor a field" in text
    assert "expands beyond" in text
    assert len(err.value.problems) == 4  # each problem once, not once per scan


def test_pkgconf_parser_details() -> None:
    pc = pkgconf.parse(
        "prefix=/usr\nv=1.0 # comment\nlib=${prefix}/lib$$x\nVersion: ${v}\n"
        "Requires: a>=1 b , c = 2\\\n  d\nRequires.private: e<3\n",
        pcfiledir="/usr/lib/pkgconfig",
        where="t.pc",
    )
    assert pc.variables["lib"] == "/usr/lib$x"
    assert pc.version == "1.0"
    assert [str(r) for r in pc.requires()] == ["a>=1", "b", "c=2", "d", "e<3"]
    assert [str(r) for r in pc.requires(private=False)] == ["a>=1", "b", "c=2", "d"]
    assert pkgconf.parse("x=${undefined}\n", pcfiledir="/", where="u").variables["x"] == ""
    with pytest.raises(pkgconf.PcFileError, match="without a package name"):
        pkgconf.parse_requires(">= 1")


def test_provider_map_from_pkginfo_lines() -> None:
    mapping = provider_map(
        [("zlib", ["so:libz.so.1=1.3.1", "pc:zlib=1.3.1"]), ("other", ["so:libz.so.1=2"])]
    )
    assert mapping == {"so:libz.so.1": "zlib", "pc:zlib": "zlib"}


def test_duplicate_package_names_are_refused(build: dict[str, StagedPackage]) -> None:
    with pytest.raises(BuildError, match="package names repeat"):
        scan_packages([build["libfoo"], build["libfoo"]], ENV)


def test_options_parse_known_and_refuse_unknown() -> None:
    opts = PackageOptions.parse(["etcfiles", "!scancmd", "!check", "lto"], where="main/x")
    assert opts.etcfiles and not opts.scancmd and opts.scanshlibs
    with pytest.raises(BuildError, match=r"main/x: unknown option '!etcfile'"):
        PackageOptions.parse(["!etcfile"], where="main/x")
