"""Loading cports-shaped trees through the sandboxed evaluator (needs bwrap)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_templates_helpers import PORTS, template_source, write_tree

from apkfarm.errors import ApkfarmError
from apkfarm.sandbox import SandboxError
from apkfarm.templates import (
    EvaluatorSettings,
    LoadPolicy,
    LoadResult,
    TreeLoader,
    load_tree,
)

pytestmark = pytest.mark.sandbox

SETTINGS = EvaluatorSettings(jobs=2, timeout=20)


@pytest.fixture(scope="module")
def loader() -> Iterator[TreeLoader]:
    with TreeLoader(PORTS, settings=SETTINGS) as loader:
        yield loader


@pytest.fixture(scope="module")
def native(loader: TreeLoader) -> LoadResult:
    return loader.load("x86_64", host_arch="x86_64")


def messages(result: LoadResult, template: str) -> list[str]:
    return [i.message for i in result.errors if i.template == template]


def test_the_test_tree_loads_without_errors(native: LoadResult) -> None:
    assert native.errors == []
    assert {"main/foo", "main/zlib", "user/userlib", "user/userapp"} <= set(native.templates)
    assert native.stats.templates == 17


def test_fields_are_as_written_with_package_objects_rendered(native: LoadResult) -> None:
    foo = native.templates["main/foo"]
    assert (foo.pkgname, foo.pkgver, foo.pkgrel, foo.category) == ("foo", "2.0.1", 2, "main")
    assert foo.depends == ("!oldfoo", "cmd:awk!base-files", "so:libz.so.1!zlib")
    assert foo.hostmakedepends == ("meson", "pkgconf")
    assert foo.fields["hardening"] == ["vis", "!int"]
    assert [s.name for s in foo.subpackages] == ["foo-libs", "foo-devel", "awk-foo-default"]
    libs, devel, awk = foo.subpackages
    assert libs.install == {"kind": "paths", "paths": ["usr/lib/libfoo.so.*"]}
    assert libs.fields["subdesc"] == "libraries"  # cbuild's suffix default
    # self.parent and self.with_pkgver() render as name=ver-rN
    assert devel.depends == ("foo=2.0.1-r2", "foo-libs=2.0.1-r2")
    assert devel.install == {"kind": "default_devel", "man": "23", "extra": ["usr/share/foo/devel"]}
    assert devel.fields["subdesc"] == "development files"
    assert (awk.declared, awk.alternative) == ("foo", "awk")
    assert awk.provides == ("cmd:awk=2.0.1",)
    assert foo.hooks == ("pre_configure", "post_install")
    assert foo.fields["pkgdesc"] == devel.fields["pkgdesc"]  # inherited


def test_zlib_devel_depends_on_its_parent(native: LoadResult) -> None:
    zlib = native.templates["main/zlib"]
    assert zlib.subpackages[0].depends == ("zlib=1.3.1-r0",)
    assert zlib.provides == ("so:libz.so.1=1.3.1",)


def test_top_level_code_branches_on_the_profile(loader: TreeLoader, native: LoadResult) -> None:
    assert native.templates["main/foo"].fields["configure_args"] == ["-Dlarge_files=true"]
    cross = loader.load("aarch64", host_arch="x86_64")
    assert cross.context.cross
    assert cross.templates["main/foo"].fields["configure_args"] == [
        "-Dlarge_files=true",
        "-Dneon=true",
        "--host=aarch64-linux-gnu",
    ]
    riscv = loader.load("riscv64", host_arch="riscv64")
    assert riscv.templates["main/foo"].makedepends == ("zlib-devel", "riscv-extra")


def test_conditional_subpackages_follow_the_arch(loader: TreeLoader, native: LoadResult) -> None:
    musl = native.templates["main/musl"]
    assert [s.name for s in musl.subpackages] == ["musl-devel", "musl-progs"]
    riscv = loader.load("riscv64", host_arch="riscv64")
    assert riscv.errors == []  # the unused symlink is still a declared subpackage
    musl = riscv.templates["main/musl"]
    assert [s.name for s in musl.subpackages] == ["musl-devel"]
    assert musl.all_subpackages == ("musl-devel", "musl-progs")


def test_exclusions_are_reported_with_reasons(loader: TreeLoader, native: LoadResult) -> None:
    excluded = {i.template: i.message for i in native.exclusions}
    assert excluded == {
        "main/broken-pkg": "cannot be built, it's currently broken: "
        "fails to link against the new toolchain",
        "main/restricted-pkg": "cannot be built, it's restricted: not redistributable",
        "main/riscv-extra": "this package cannot be built for x86_64",
    }
    assert native.templates["main/riscv-extra"].excluded  # still loaded, just excluded
    cross = {i.template: i.message for i in loader.load("aarch64", host_arch="x86_64").exclusions}
    assert cross["main/x86-only"] == "this package cannot be built for aarch64"
    assert cross["main/native-only"] == "cannot be cross-compiled"
    ppc = {i.template: i.message for i in loader.load("ppc64le", host_arch="ppc64le").exclusions}
    assert ppc["main/no-ppc"] == "this package cannot be built for ppc64le"
    assert "main/native-only" not in ppc
    allowed = loader.load("x86_64", host_arch="x86_64", policy=LoadPolicy(allow_restricted=True))
    assert "main/restricted-pkg" not in {i.template for i in allowed.exclusions}


def test_disallowed_categories_are_excluded_not_dropped(loader: TreeLoader) -> None:
    result = loader.load("x86_64", host_arch="x86_64", policy=LoadPolicy(categories=("main",)))
    excluded = {i.template: i.message for i in result.exclusions}
    assert excluded["user/userapp"] == "cannot be built, disallowed category (not in main)"
    assert "user/userapp" not in result.templates


def test_reloading_evaluates_only_what_changed(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"main/a": template_source("a"), "main/b": template_source("b")},
    )
    with TreeLoader(tmp_path, settings=SETTINGS) as loader:
        first = loader.load("x86_64", host_arch="x86_64")
        assert (first.stats.evaluated, first.stats.cached) == (2, 0)
        again = loader.load("x86_64", host_arch="x86_64")
        assert (again.stats.evaluated, again.stats.cached) == (0, 2)
        assert again.templates["main/a"] is first.templates["main/a"]
        (tmp_path / "main" / "b" / "template.py").write_text(template_source("b", pkgrel=1))
        edited = loader.load("x86_64", host_arch="x86_64")
        assert (edited.stats.evaluated, edited.stats.cached) == (1, 1)
        assert edited.templates["main/b"].version == "1.0-r1"
        assert edited.templates["main/a"] is first.templates["main/a"]
        # another arch is another evaluation
        other = loader.load("aarch64", host_arch="x86_64")
        assert other.stats.evaluated == 2


def test_the_disk_cache_serves_a_new_loader(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "ports", {"main/a": template_source("a")})
    first = load_tree(tree, "x86_64", host_arch="x86_64", cache_dir=tmp_path / "cache")
    second = load_tree(tree, "x86_64", host_arch="x86_64", cache_dir=tmp_path / "cache")
    assert (first.stats.evaluated, second.stats.evaluated) == (1, 0)
    assert second.templates["main/a"].to_json() == first.templates["main/a"].to_json()


def test_each_category_gets_workers_in_proportion_from_the_start(tmp_path: Path) -> None:
    sources = {f"main/m{i}": template_source(f"m{i}") for i in range(9)}
    sources.update({f"user/u{i}": template_source(f"u{i}") for i in range(3)})
    write_tree(tmp_path, sources)
    with TreeLoader(tmp_path, settings=SETTINGS) as loader:
        result = loader.load("x86_64", host_arch="x86_64")
        assert result.errors == [] and len(result.templates) == 12
        # jobs=2 shared 9:3 -> two main workers, one user worker; none replaced
        assert loader.evaluator.started_workers == 3
        assert sorted(w.category for w in loader.evaluator._workers) == ["main", "main", "user"]
    # The snapshot lists the tree in order, however the templates were read.
    assert list(result.tree.templates) == sorted(sources, key=lambda n: tuple(n.split("/")))


def test_a_sandbox_that_cannot_be_prepared_fails_the_load(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "ports", {"main/a": template_source("a")})
    broken = tmp_path / "python3"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    settings = EvaluatorSettings(jobs=1, python=broken)
    with TreeLoader(tree, settings=settings) as loader, pytest.raises(SandboxError):
        loader.load("x86_64", host_arch="x86_64")


def test_a_load_that_fails_early_leaves_nothing_running(tmp_path: Path) -> None:
    # The sandbox is prepared in the background while the load goes on; a
    # load that fails first must not leave that work behind.
    tree = write_tree(tmp_path, {"main/a": template_source("a")})
    with TreeLoader(tree, settings=SETTINGS) as loader:
        with pytest.raises(ApkfarmError, match="unknown architecture"):
            loader.load("nosucharch", host_arch="x86_64")
        assert not [t for t in threading.enumerate() if t.name == "apkfarm-evaluator-start"]
        assert loader.load("x86_64", host_arch="x86_64").errors == []


# --- errors, one template at a time -------------------------------------------------


def load_one(tmp_path: Path, source: str, name: str = "bad", **kwargs: object) -> LoadResult:
    tree = write_tree(
        tmp_path,
        {f"main/{name}": source, "main/good": template_source("good")},
        **kwargs,  # type: ignore[arg-type]
    )
    result = load_tree(tree, "x86_64", host_arch="x86_64", settings=SETTINGS)
    assert "main/good" in result.templates  # one bad template never stops the others
    return result


def test_a_syntax_error_names_the_line(tmp_path: Path) -> None:
    result = load_one(tmp_path, template_source("bad", "\nif True\n    pass\n"))
    [message] = messages(result, "main/bad")
    assert message.startswith("syntax error at line 8:")


def test_an_exception_names_the_line(tmp_path: Path) -> None:
    result = load_one(tmp_path, template_source("bad", "_x = {}['missing']\n"))
    assert messages(result, "main/bad") == ["evaluation failed (line 7): KeyError: 'missing'"]


def test_self_error_is_the_message(tmp_path: Path) -> None:
    result = load_one(tmp_path, template_source("bad", "self.error('needs a newer libfoo')\n"))
    assert messages(result, "main/bad") == ["needs a newer libfoo (line 7)"]


def test_types_unknown_variables_and_hooks_are_reported(tmp_path: Path) -> None:
    source = template_source(
        "bad",
        "makedepends = 'zlib-devel'\nmaintainer = 'me <me@example.org>'\n"
        "def frobnicate(self):\n    pass\n",
    )
    errors = messages(load_one(tmp_path, source), "main/bad")
    assert errors == [
        "invalid value for field makedepends (expected 'list' but got 'str')",
    ]
    source = template_source("bad", "maintainer = 'me'\ndef frobnicate(self):\n    pass\n")
    errors = messages(load_one(tmp_path / "2", source), "main/bad")
    assert errors == ["unknown hook: frobnicate", "unknown variable: maintainer"]


def test_path_values_are_recorded_as_strings(tmp_path: Path) -> None:
    # The worker imports pathlib only when a template uses a path.
    source = template_source(
        "bad", "env = {'PATCHES': self.patches_path, 'ROOT': self.profile().sysroot}\n"
    )
    template = load_one(tmp_path, source).templates["main/bad"]
    assert template.fields["env"] == {"PATCHES": "/ports/main/bad/patches", "ROOT": "/"}


def test_subpackage_functions_must_be_named_underscore(tmp_path: Path) -> None:
    source = template_source("bad", "@subpackage('bad-devel')\ndef _devel(self):\n    return []\n")
    result = load_one(tmp_path, source, links={"main/bad-devel": "bad"})
    assert messages(result, "main/bad") == [
        "subpackage function '_devel' must be called '_' (line 7)"
    ]


def test_subpackage_functions_must_return_a_list_or_function(tmp_path: Path) -> None:
    source = template_source("bad", "@subpackage('bad-devel')\ndef _(self):\n    return 42\n")
    result = load_one(tmp_path, source, links={"main/bad-devel": "bad"})
    assert messages(result, "main/bad") == [
        "subpackage 'bad-devel': invalid return for subpackage 'bad-devel' "
        "(must return a function or a list)"
    ]


def test_missing_and_wrong_subpackage_symlinks(tmp_path: Path) -> None:
    source = template_source(
        "bad",
        "@subpackage('bad-devel')\ndef _(self):\n    return self.default_devel()\n"
        "@subpackage('bad-doc')\ndef _(self):\n    return self.default_doc()\n",
    )
    result = load_one(tmp_path, source, links={"main/bad-doc": "good"})
    assert messages(result, "main/bad") == [
        "subpackage 'bad-devel' is missing a symlink (main/bad-devel -> bad; "
        "'cbuild relink-subpkgs' creates them)",
        "subpackage 'bad-doc' has incorrect symlink (main/bad-doc -> good, expected -> bad)",
    ]
    # and the link that points at 'good' declares nothing there
    assert messages(result, "main/bad-doc") == [
        "symlink -> good does not match a subpackage declared by main/good"
    ]


def test_stray_and_dangling_symlinks_are_errors_naming_them(tmp_path: Path) -> None:
    result = load_one(
        tmp_path,
        template_source("bad"),
        links={"main/bad-extra": "bad", "main/ghost": "nowhere", "main/far": "../user/x"},
    )
    assert messages(result, "main/bad-extra") == [
        "symlink -> bad does not match a subpackage declared by main/bad"
    ]
    assert messages(result, "main/ghost") == [
        "symlink -> nowhere does not point to a template in main/"
    ]
    assert messages(result, "main/far") == [
        "symlink -> ../user/x does not point to a template in main/"
    ]
    assert "main/bad" in result.templates  # the template itself is fine


def test_pkgname_must_match_directory_end_to_end(tmp_path: Path) -> None:
    result = load_one(tmp_path, template_source("other"))
    assert messages(result, "main/bad") == ["declared pkgname does not match template (bad)"]


def test_pkgver_at_top_level_is_visible_after_assignment(tmp_path: Path) -> None:
    source = template_source(
        "bad",
        "depends = [self.with_pkgver('bad-common'), f'{self.pkgname}-data={self.pkgver}-r{self.pkgrel}']\n"
        "configure_args = [str(self.stage), self.profile.arch, self.profile().endian]\n",
        options=["!lint"],
    )
    result = load_one(tmp_path, source)
    template = result.templates["main/bad"]
    assert template.depends == ("bad-common=1.0-r0", "bad-data=1.0-r0")
    assert template.fields["configure_args"] == ["3", "x86_64", "little"]


def test_custom_targets_hooks_and_subpackage_variants(tmp_path: Path) -> None:
    source = template_source(
        "bad",
        "def do_install(self):\n    pass\n"
        "def init_build(self):\n    pass\n"
        "@custom_target('bundle', 'build')\ndef _(self):\n    pass\n"
        "@subpackage('bad-extra', cond=False)\ndef _(self):\n    return []\n"
        "@subpackage('bad', alternative='!pager')\ndef _(self):\n    return ['usr/bin/less']\n"
        "@subpackage('bad-dinit')\ndef _(self):\n    return ['usr/lib/dinit.d']\n",
    )
    links = {"main/bad-extra": "bad", "main/pager-bad-default": "bad", "main/bad-dinit": "bad"}
    result = load_one(tmp_path, source, links=links)
    template = result.templates["main/bad"]
    assert template.hooks == ("do_install", "init_build")
    assert [(t.name, t.after) for t in template.custom_targets] == [("bundle", "build")]
    assert [s.name for s in template.subpackages] == ["pager-bad-default", "bad-dinit"]
    assert template.all_subpackages == ("bad-extra", "pager-bad-default", "bad-dinit")
    pager, dinit = template.subpackages
    assert pager.alternative is None  # "!pager" names it but records no alternative
    # cbuild's defaults for a -dinit subpackage: depends on its base and dinit,
    # installs itself when both are installed
    assert dinit.depends == ("bad=1.0-r0", "dinit-chimera")
    assert dinit.install_if == ("bad=1.0-r0", "dinit-chimera")
    assert dinit.fields["subdesc"] == "service files"


def test_another_host_python_evaluates_the_same(native: LoadResult) -> None:
    other = Path("/usr/bin/python3")
    if not other.is_file() or other.resolve() == Path(SETTINGS.python or "/").resolve():
        # Not a missing dependency: where the system Python is the farm's own
        # (Debian trixie), there is no second interpreter to compare with.
        pytest.skip("the system Python is the farm's own: nothing to compare")
    settings = EvaluatorSettings(jobs=2, timeout=20, python=other)
    result = load_tree(PORTS, "x86_64", host_arch="x86_64", settings=settings)
    assert result.errors == []
    assert {n: t.to_json() for n, t in result.templates.items()} == {
        n: t.to_json() for n, t in native.templates.items()
    }
