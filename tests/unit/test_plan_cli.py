"""``apkfarm templates dump`` and ``apkfarm plan`` end to end (needs bwrap)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_templates_helpers import PORTS, template_source, write_tree

from apkfarm.cli.main import main

pytestmark = pytest.mark.sandbox


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dump_prints_every_template_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "templates", "dump", str(PORTS), "--arch", "x86_64", "--host-arch", "x86_64"
    )
    assert code == 0
    document = json.loads(out)
    assert (document["arch"], document["cross"], document["errors"]) == ("x86_64", False, [])
    templates = {t["name"]: t for t in document["templates"]}
    foo = templates["main/foo"]
    assert {k: foo[k] for k in ("pkgname", "pkgver", "pkgrel", "category", "broken")} == {
        "pkgname": "foo",
        "pkgver": "2.0.1",
        "pkgrel": 2,
        "category": "main",
        "broken": None,
    }
    assert foo["subpackages"] == ["foo-libs", "foo-devel", "awk-foo-default"]
    assert foo["depends"] == ["!oldfoo", "cmd:awk!base-files", "so:libz.so.1!zlib"]
    assert foo["makedepends"] == ["zlib-devel"]
    assert foo["hostmakedepends"] == ["meson", "pkgconf"]
    assert foo["checkdepends"] == [] and foo["provides"] == [] and foo["archs"] is None
    assert foo["options"] == []
    assert foo["subpackage_details"][1]["fields"]["depends"] == [
        "foo=2.0.1-r2",
        "foo-libs=2.0.1-r2",
    ]
    assert templates["main/zlib"]["provides"] == ["so:libz.so.1=1.3.1"]
    assert templates["main/musl"]["options"] == ["bootstrap", "!check"]
    assert templates["main/broken-pkg"]["broken"] == "fails to link against the new toolchain"
    assert templates["main/riscv-extra"]["archs"] == ["riscv64"]
    exclusions = {e["template"]: e["reason"] for e in document["exclusions"]}
    assert exclusions["main/riscv-extra"] == "this package cannot be built for x86_64"


def test_dump_for_a_cross_target_and_some_categories(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "templates",
        "dump",
        str(PORTS),
        "--arch",
        "aarch64",
        "--host-arch",
        "x86_64",
        "--category",
        "main",
        "--compact",
    )
    assert code == 0 and "\n" not in out.strip()
    document = json.loads(out)
    assert document["cross"] is True
    exclusions = {e["template"]: e["reason"] for e in document["exclusions"]}
    assert exclusions["main/x86-only"] == "this package cannot be built for aarch64"
    assert exclusions["main/native-only"] == "cannot be cross-compiled"
    assert exclusions["user/userapp"] == "cannot be built, disallowed category (not in main)"


def test_dump_exits_nonzero_on_template_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = write_tree(
        tmp_path,
        {"main/ok": template_source("ok"), "main/bad": template_source("bad", pkgdesc="A bad one")},
    )
    code, out, err = run(capsys, "templates", "dump", str(tree), "--arch", "x86_64")
    assert code == 1
    assert json.loads(out)["errors"] == [
        {"template": "main/bad", "message": "pkgdesc should not start with an article"}
    ]
    assert "apkfarm: main/bad: pkgdesc should not start with an article" in err


def test_plan_prints_waves_reasons_and_problems(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "plan",
        str(PORTS),
        "--arch",
        "x86_64",
        "--host-arch",
        "x86_64",
        "--explain",
        "userapp",
        "--explain",
        "needs-broken",
    )
    assert code == 1  # the test tree has a dependency cycle
    assert "dependency cycle: main/cyc-a -> main/cyc-b -> main/cyc-a" in err
    lines = out.splitlines()
    assert lines[0] == (
        "plan for x86_64 (native): 9 to build in 4 waves, 0 up to date, 5 blocked, "
        "3 excluded, 0 errors"
    )
    assert lines[1:4] == [
        "wave 1 (5):",
        "  main/base-files 0.1.2-r3: new",
        "  main/musl 1.2.5-r1: new",
    ]
    assert (
        "  main/uses-user: makedepends 'userlib-devel' unavailable: 'userlib-devel' is in "
        "user/userlib, which main/ cannot see" in lines
    )
    assert "  main/cyc-a -> main/cyc-b -> main/cyc-a" in lines
    assert (
        "host tools expected in the build root: cmake, gmake, meson, ninja, pkgconf, python"
        in lines
    )
    assert (
        "explain user/userapp: waiting: must build (new); waits on main/foo, main/musl, "
        "user/userlib"
    ) in lines
    assert any(
        line.startswith("explain main/needs-broken: blocked: makedepends 'broken-pkg'")
        for line in lines
    )


def test_plan_reads_the_repository_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], vectors: Path
) -> None:
    tree = write_tree(
        tmp_path / "ports",
        {
            "main/refa": template_source("refa", makedepends=["refb"]),
            "main/refb": template_source("refb", pkgver="2.2"),
            "main/refc": template_source("refc", makedepends=["refa"]),
        },
    )
    repo = tmp_path / "repo" / "main" / "x86_64"
    repo.mkdir(parents=True)
    shutil.copy(
        vectors / "apk" / "repo-v2" / "x86_64" / "APKINDEX.tar.gz", repo
    )  # refa 1.0-r0, refb 2.1-r3
    base = [
        "plan",
        str(tree),
        "--arch",
        "x86_64",
        "--host-arch",
        "x86_64",
        "--repo",
        str(tmp_path / "repo"),
        "--json",
    ]
    code, out, _ = run(capsys, *base)
    assert code == 0
    document = json.loads(out)
    assert document["up_to_date"] == {"main/refa": "1.0-r0"}
    assert [(b["template"], b["reasons"], b["wave"]) for b in document["builds"]] == [
        ("main/refb", ["version changed (2.1-r3 -> 2.2-r0)"], 0),
        ("main/refc", ["new"], 0),
    ]
    code, out, _ = run(capsys, *base, "--rebuild-dependents", "--explain", "refc")
    document = json.loads(out)
    assert [(b["template"], b["reasons"], b["wave"]) for b in document["builds"]] == [
        ("main/refb", ["version changed (2.1-r3 -> 2.2-r0)"], 0),
        ("main/refa", ["dependency rebuilt: refb"], 1),
        ("main/refc", ["new"], 2),
    ]
    assert document["explain"] == [
        {
            "template": "main/refc",
            "state": "waiting",
            "reason": "must build (new); waits on main/refa",
            "waiting_on": ["main/refa"],
        }
    ]


def test_help_is_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["templates", "--help"], ["templates", "dump", "--help"], ["plan", "--help"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
        assert "usage: apkfarm" in capsys.readouterr().out
