"""The example ports tree: its shape, its templates' fields and checksums, and that
every source really builds, passes its own tests and runs with the host toolchain.

Templates are read with ``ast`` (never executed). The builds run outside any
sandbox, straight from the regenerated tarballs unpacked by apkfarm's own
extractor, and take a few seconds in all.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO_ROOT, require
from fixtures.tools import load_tool

from apkfarm.build.elf import read_elf
from apkfarm.build.extract import extract_sources

EXAMPLES = REPO_ROOT / "examples"
CATEGORIES = ("main", "user")
BUILD_STYLES = {"gnu_configure", "configure", "makefile", "cmake", "meson", "meta"}
SITE = "$(EXAMPLES_SITE)"


make_distfiles = load_tool("make_distfiles")


# --- reading templates without running them -----------------------------------------


@dataclass
class Template:
    category: str
    path: Path
    fields: dict[str, object]
    subpackages: list[str]
    functions: list[str]
    conditional: list[tuple[str, dict[str, object]]]  # (condition source, assignments)

    @property
    def name(self) -> str:
        return str(self.fields["pkgname"])


def _value(node: ast.expr, env: dict[str, object]) -> object:
    """A literal, list literal or f-string over already-known fields."""
    if isinstance(node, ast.JoinedStr):
        parts = []
        for piece in node.values:
            if isinstance(piece, ast.Constant):
                parts.append(str(piece.value))
            else:
                assert isinstance(piece, ast.FormattedValue)
                assert isinstance(piece.value, ast.Name), "only {field} substitutions"
                parts.append(str(env[piece.value.id]))
        return "".join(parts)
    return ast.literal_eval(node)


def _assignments(body: list[ast.stmt], env: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for stmt in body:
        if isinstance(stmt, ast.Assign):
            assert len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
            out[stmt.targets[0].id] = _value(stmt.value, {**env, **out})
    return out


def parse_template(category: str, path: Path) -> Template:
    tree = ast.parse(path.read_text(), filename=str(path))
    fields = _assignments(tree.body, {})
    subpackages, functions, conditional = [], [], []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef):
            functions.append(stmt.name)
            for deco in stmt.decorator_list:
                if (
                    isinstance(deco, ast.Call)
                    and isinstance(deco.func, ast.Name)
                    and deco.func.id == "subpackage"
                ):
                    first = deco.args[0]
                    assert isinstance(first, ast.Constant)
                    subpackages.append(str(first.value))
        elif isinstance(stmt, ast.If):
            conditional.append((ast.unparse(stmt.test), _assignments(stmt.body, fields)))
    return Template(category, path, fields, subpackages, functions, conditional)


def all_templates() -> list[Template]:
    found = []
    for category in CATEGORIES:
        for entry in sorted((EXAMPLES / category).iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                found.append(parse_template(category, entry / "template.py"))
    return found


TEMPLATES = {t.name: t for t in all_templates()}


def resolve_package(category: str, name: str) -> Path | None:
    """Where a dependency name resolves from a category, following ``.parent`` like cbuild."""
    current: Path | None = EXAMPLES / category
    while current is not None:
        candidate = current / name
        if (candidate / "template.py").is_file():
            return candidate
        parent = current / ".parent"
        current = (current / parent.readlink()).resolve() if parent.is_symlink() else None
    return None


# --- tree shape and template fields -------------------------------------------------


def test_required_templates_are_present() -> None:
    assert set(TEMPLATES) == {
        "libgreet",
        "greet",
        "tally",
        "wordfreq",
        "greet-tools",
        "greet-motd",
        "greet-fortune",
    }
    assert TEMPLATES["greet-fortune"].category == "user"
    expected_styles = {
        "libgreet": "gnu_configure",
        "greet": "makefile",
        "tally": "cmake",
        "wordfreq": "meson",
        "greet-tools": "meta",
    }
    for name, style in expected_styles.items():
        assert TEMPLATES[name].fields["build_style"] == style


def test_user_category_points_at_main() -> None:
    parent = EXAMPLES / "user" / ".parent"
    assert parent.is_symlink() and str(parent.readlink()) == "../main"


def test_subpackage_symlinks_match_decorators() -> None:
    links = {
        p.name: p.readlink()
        for category in CATEGORIES
        for p in (EXAMPLES / category).iterdir()
        if p.is_symlink() and not p.name.startswith(".")
    }
    declared = {sub: t for t in TEMPLATES.values() for sub in t.subpackages}
    assert set(links) == set(declared) == {"libgreet-devel"}
    for sub, target in links.items():
        assert not target.is_absolute(), f"{sub} must be a relative symlink"
        assert str(target) == declared[sub].path.parent.name


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_fields_follow_cports_rules(name: str) -> None:
    t = TEMPLATES[name]
    compile(t.path.read_text(), str(t.path), "exec")
    f = t.fields
    assert t.path.parent.name == f["pkgname"]
    assert isinstance(f["pkgver"], str) and re.fullmatch(r"\d+(\.\d+)*", f["pkgver"])
    assert f["pkgrel"] == 0
    assert f["build_style"] in BUILD_STYLES
    desc = f["pkgdesc"]
    assert isinstance(desc, str) and 0 < len(desc) <= 72
    assert desc[0].isupper() and not desc.endswith(".")
    assert desc.split()[0].lower() not in {"a", "an", "the"}
    url = f["url"]
    assert isinstance(url, str) and url.startswith("https://") and not url.endswith("/")
    if f["build_style"] == "meta":
        assert f["license"] == "custom:meta"
        assert "source" not in f and "sha256" not in f
    else:
        assert f["license"] == "BSD-2-Clause"
        assert f["source"] == f"{SITE}/{f['pkgname']}-{f['pkgver']}.tar.gz"
        assert isinstance(f["sha256"], str) and re.fullmatch(r"[0-9a-f]{64}", f["sha256"])
        assert "post_install" in t.functions  # installs its license
    for key in ("hostmakedepends", "makedepends", "depends"):
        deps = f.get(key, [])
        assert isinstance(deps, list) and deps == sorted(deps), f"{key} must be sorted"


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_farm_dependencies_resolve_in_the_tree(name: str) -> None:
    t = TEMPLATES[name]
    deps = [*t.fields.get("makedepends", []), *t.fields.get("depends", [])]  # type: ignore[misc]
    for dep in deps:
        assert resolve_package(t.category, dep) is not None, f"{name}: {dep} not in the tree"


def test_install_script_and_etc_option() -> None:
    motd = TEMPLATES["greet-motd"]
    script = motd.path.parent / "greet-motd.post-install"
    assert script.read_text().startswith("#!/bin/sh\n")
    subprocess.run(["sh", "-n", str(script)], check=True)
    assert "etcfiles" in motd.fields["options"]  # type: ignore[operator]


def test_arch_conditional_template_code() -> None:
    fortune = TEMPLATES["greet-fortune"]
    assert fortune.conditional == [
        ("self.profile().arch == 'riscv64'", {"make_build_args": ["ARCH_NOTE=riscv64"]})
    ]


# --- distfiles -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def distfiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("distfiles")
    sums = make_distfiles.make_distfiles(out)
    assert isinstance(sums, dict)
    return {name: out / name for name in sums}


def test_distfiles_are_reproducible(distfiles: dict[str, Path], tmp_path: Path) -> None:
    again = make_distfiles.make_distfiles(tmp_path)
    for name, path in distfiles.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == again[name]


def test_every_source_has_exactly_one_template(distfiles: dict[str, Path]) -> None:
    wanted = {
        f"{t.fields['pkgname']}-{t.fields['pkgver']}.tar.gz"
        for t in TEMPLATES.values()
        if "source" in t.fields
    }
    assert wanted == set(distfiles)


@pytest.mark.parametrize("name", sorted(n for n, t in TEMPLATES.items() if "sha256" in t.fields))
def test_template_sha256_matches_generated_tarball(name: str, distfiles: dict[str, Path]) -> None:
    t = TEMPLATES[name]
    tarball = distfiles[f"{t.fields['pkgname']}-{t.fields['pkgver']}.tar.gz"]
    actual = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert t.fields["sha256"] == actual, (
        f"{t.path}: sha256 is stale; run tools/make_distfiles.py and use {actual}"
    )


# --- building the sources with the host toolchain ------------------------------------


@dataclass
class Built:
    work: Path
    libgreet_root: Path  # DESTDIR of libgreet's install, used as a sysroot
    env: dict[str, str]


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, (
        f"{' '.join(argv)} failed in {cwd}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def _unpack(distfiles: dict[str, Path], name: str, work: Path) -> Path:
    srcdir = work / name.removesuffix(".tar.gz")
    extract_sources([distfiles[name]], srcdir)
    return srcdir


HOST_TOOLS = ("cc", "make", "cmake", "ninja", "meson", "pkg-config")


@pytest.fixture(scope="module")
def built(distfiles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Built:
    for tool in HOST_TOOLS:
        require(shutil.which(tool) is not None, f"{tool} is not installed")
    work = tmp_path_factory.mktemp("build")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PKG_CONFIG", "LD_"))}
    base["CFLAGS"] = "-O2 -Wall -Wextra -Werror"

    # libgreet: out-of-tree gnu_configure build, as the build style runs it
    src = _unpack(distfiles, "libgreet-1.0.0.tar.gz", work)
    build = src / "build"
    build.mkdir()
    root = work / "libgreet-root"
    _run(
        ["../configure", "--prefix=/usr", "--sysconfdir=/etc", "--libdir=/usr/lib",
         "--mandir=/usr/share/man", "--localstatedir=/var", "--build=x86_64-linux-gnu",
         "--host=x86_64-linux-gnu"],
        build, base,
    )  # fmt: skip
    _run(["make", "-j2"], build, base)
    _run(["make", "check"], build, base)
    _run(["make", "install", f"DESTDIR={root}"], build, base)

    # consumers find libgreet the way a farm sysroot provides it
    env = dict(base)
    env["PKG_CONFIG_PATH"] = str(root / "usr/lib/pkgconfig")
    env["PKG_CONFIG_SYSROOT_DIR"] = str(root)
    env["LD_LIBRARY_PATH"] = str(root / "usr/lib")
    return Built(work, root, env)


def test_libgreet_installs_library_header_and_pc_file(built: Built) -> None:
    lib = built.libgreet_root / "usr/lib"
    assert sorted(p.name for p in lib.iterdir()) == [
        "libgreet.so",
        "libgreet.so.1",
        "libgreet.so.1.0.0",
        "pkgconfig",
    ]
    assert (lib / "libgreet.so").readlink() == Path("libgreet.so.1")
    assert (lib / "libgreet.so.1").readlink() == Path("libgreet.so.1.0.0")
    info = read_elf(lib / "libgreet.so.1.0.0")
    assert info is not None and info.soname == "libgreet.so.1"
    assert (built.libgreet_root / "usr/include/greet.h").is_file()
    pc = (lib / "pkgconfig/greet.pc").read_text()
    assert "Version: 1.0.0" in pc and "libdir=/usr/lib" in pc


def test_greet_links_libgreet_passes_check_and_runs(
    built: Built, distfiles: dict[str, Path]
) -> None:
    src = _unpack(distfiles, "greet-1.0.0.tar.gz", built.work)
    _run(["make", "PREFIX=/usr"], src, built.env)
    _run(["make", "check"], src, built.env)
    dest = built.work / "greet-dest"
    _run(["make", "install", "PREFIX=/usr", "STRIP=true", f"DESTDIR={dest}"], src, built.env)
    program = dest / "usr/bin/greet"
    info = read_elf(program)
    assert info is not None and "libgreet.so.1" in info.needed
    out = _run([str(program), "--shout", "farm"], built.work, built.env)
    assert out == "HELLO, FARM!\n"
    assert (dest / "usr/share/man/man1/greet.1").is_file()


def test_greet_fortune_honours_the_arch_conditional_argument(
    built: Built, distfiles: dict[str, Path]
) -> None:
    src = _unpack(distfiles, "greet-fortune-1.0.0.tar.gz", built.work)
    (args,) = [a["make_build_args"] for _, a in TEMPLATES["greet-fortune"].conditional]
    _run(["make", *args], src, built.env)  # type: ignore[misc]
    _run(["make", "check"], src, built.env)
    about = _run(["./greet-fortune", "--about"], src, built.env)
    assert about == "greet-fortune 1.0.0 (libgreet 1.0.0), built for riscv64\n"


def test_tally_builds_with_cmake_and_ctest_passes(built: Built, distfiles: dict[str, Path]) -> None:
    src = _unpack(distfiles, "tally-1.0.0.tar.gz", built.work)
    env = built.env
    _run(
        ["cmake", "-G", "Ninja", "-B", "build", "-DCMAKE_INSTALL_PREFIX=/usr",
         "-DCMAKE_INSTALL_LIBDIR=lib", "-DCMAKE_BUILD_TYPE=None"],
        src, env,
    )  # fmt: skip
    _run(["ninja", "-C", "build"], src, env)
    _run(["ctest", "--test-dir", "build", "--output-on-failure"], src, env)
    dest = built.work / "tally-dest"
    _run(["ninja", "-C", "build", "install"], src, {**env, "DESTDIR": str(dest)})
    sample = src / "tests/sample.txt"
    out = _run([str(dest / "usr/bin/tally"), str(sample)], src, env)
    assert out == f"lines=3 words=9 bytes=45 longest=19 {sample}\n"


def test_wordfreq_builds_with_meson_and_its_tests_pass(
    built: Built, distfiles: dict[str, Path]
) -> None:
    src = _unpack(distfiles, "wordfreq-1.0.0.tar.gz", built.work)
    env = built.env
    _run(["meson", "setup", "--prefix=/usr", "--libdir=lib", "-Dwerror=true", "build"], src, env)
    _run(["ninja", "-C", "build"], src, env)
    _run(["meson", "test", "-C", "build", "--print-errorlogs"], src, env)
    dest = built.work / "wordfreq-dest"
    _run(["meson", "install", "-C", "build", "--destdir", str(dest)], src, env)
    out = _run([str(dest / "usr/bin/wordfreq"), "-n", "2", "tests/sample.txt"], src, env)
    assert out == "4 it\n4 of\n"


def test_greet_motd_checks_and_installs_its_etc_file(
    built: Built, distfiles: dict[str, Path]
) -> None:
    src = _unpack(distfiles, "greet-motd-1.0.0.tar.gz", built.work)
    _run(["make"], src, built.env)
    _run(["make", "check"], src, built.env)
    dest = built.work / "motd-dest"
    _run(["make", "install", "PREFIX=/usr", f"DESTDIR={dest}"], src, built.env)
    assert (dest / "etc/greet-motd.conf").is_file()
    assert os.access(dest / "usr/bin/greet-motd", os.X_OK)
