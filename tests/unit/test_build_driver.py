"""Template phases in the build sandbox: hooks in cbuild's order, the self API, subpackages
and automatic ones, sources and patches, options, and the failures people must understand."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import stat
import tarfile
from pathlib import Path

import pytest
from build_support import EXAMPLES, build, request, template_text, write_template

from apkfarm.build.log import LogLine, MemoryLog, PhaseFinished
from apkfarm.build.result import BuildFailed
from apkfarm.build.runner import BuilderSettings, run_build_unsandboxed_for_benchmark

pytestmark = pytest.mark.sandbox

SETTINGS = BuilderSettings(uid_base=2_150_100_000, uid_count=1000, jobs=2)

KIT = """
def pre_configure(self):
    self.log("hook pre_configure")

def configure(self):
    self.log("hook configure")

def post_configure(self):
    self.log("hook post_configure")

def init_build(self):
    self.log("hook init_build")

def build(self):
    self.mkdir("out")
    self.do("sh", "-c", "printf '#!/bin/sh\\\\necho kit\\\\n' > out/tool && echo '#define KIT 1' > out/kit.h")

def install(self):
    self.install_bin("out/tool", name="kit")
    self.install_link("usr/bin/kit-alias", "kit")
    self.install_file("out/kit.h", "usr/include")
    self.install_file("out/kit.h", "usr/share/doc/kit", name="README")
    self.install_file("out/kit.h", "usr/share/kit", name="data")
    self.install_file("out/kit.h", "usr/share/man/man1", name="kit.1")
    self.install_license("out/kit.h", name="LICENSE")

def post_install(self):
    self.log("hook post_install")

@subpackage("kit-devel")
def _(self):
    return self.default_devel()

@subpackage("kit-data")
def _(self):
    self.depends = ["kit"]
    return ["usr/share/kit", "?usr/share/nothing", "@usr/share/kit-latest=>kit"]
"""


def tree_with(tmp_path: Path, name: str, body: str, files: dict[str, bytes] | None = None) -> Path:
    tree = tmp_path / "tree"
    write_template(tree, f"main/{name}", template_text(name, body), files)
    for sub in ("kit-devel", "kit-data"):
        if f'@subpackage("{sub}")' in body:
            (tree / "main" / sub).symlink_to(name)
    return tree


def test_hooks_subpackages_and_automatic_packages(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, "kit", KIT)
    log = MemoryLog()
    result = build(request(tree, "main/kit", tmp_path / "work"), log, SETTINGS)
    hooks = [
        e.text.split("hook ")[1] for e in log.events if isinstance(e, LogLine) and "hook " in e.text
    ]
    assert hooks == ["pre_configure", "configure", "post_configure", "init_build", "post_install"]
    names = [p.info.pkgname for p in result.packages]
    assert names == ["kit", "kit-devel", "kit-data", "kit-doc", "kit-man"]
    staged = tmp_path / "work/destdir"

    def files(package: str) -> set[str]:
        root = staged / f"{package}-1.0.0"
        found = root.rglob("*")
        return {str(p.relative_to(root)) for p in found if p.is_symlink() or not p.is_dir()}

    assert files("kit") == {"usr/bin/kit", "usr/bin/kit-alias", "usr/share/licenses/kit/LICENSE"}
    assert files("kit-devel") == {"usr/include/kit.h"}
    assert files("kit-data") == {"usr/share/kit/data", "usr/share/kit-latest"}
    assert files("kit-doc") == {"usr/share/doc/kit/README"}
    assert files("kit-man") == {"usr/share/man/man1/kit.1"}
    data = result.package("kit-data").info
    assert data.depends == ("kit",) and data.pkgdesc == "Test template kit"
    doc = result.package("kit-doc")
    assert doc.auto and doc.info.install_if == ("kit=1.0.0-r0", "base-doc")
    assert "cmd:kit=1.0.0-r0" in result.package("kit").info.provides


def test_a_template_error_names_its_phase_and_line(tmp_path: Path) -> None:
    body = """
    def pre_build(self):
        self.error("the frobnicator is missing")

    def install(self):
        pass
    """
    tree = tree_with(tmp_path, "broken", body)
    with pytest.raises(BuildFailed) as caught:
        build(request(tree, "main/broken", tmp_path / "work"), MemoryLog(), SETTINGS)
    assert caught.value.phase == "build"
    assert caught.value.detail == "the frobnicator is missing (line 9)"
    assert str(caught.value).startswith("main/broken: build failed: the frobnicator is missing")


@pytest.mark.parametrize(
    ("body", "phase", "message"),
    [
        ("def do_extract(self):\n    pass\n", "evaluate", "do_extract/do_fetch are not supported"),
        ('build_style = "cargo"\n', "evaluate", "build_style 'cargo' is not supported"),
        ("def build(self):\n    pass\n", "install", "no install function and no build_style"),
        ("def install(self):\n    raise KeyError('x')\n", "install", "KeyError: 'x'"),
    ],
)
def test_refusals_for_people(tmp_path: Path, body: str, phase: str, message: str) -> None:
    tree = tree_with(tmp_path, "refused", body)
    with pytest.raises(BuildFailed) as caught:
        build(request(tree, "main/refused", tmp_path / "work"), MemoryLog(), SETTINGS)
    assert caught.value.phase == phase and message in caught.value.detail


def test_check_is_skipped_with_the_option(tmp_path: Path) -> None:
    body = """
    options = ["!check"]

    def check(self):
        self.error("must not run")

    def install(self):
        self.install_dir("usr/share/nocheck")
    """
    tree = tree_with(tmp_path, "nocheck", body)
    log = MemoryLog()
    build(request(tree, "main/nocheck", tmp_path / "work"), log, SETTINGS)
    (check,) = [e for e in log.events if isinstance(e, PhaseFinished) and e.phase == "check"]
    assert check.status == "skipped" and check.reason == "the template's !check option"


def test_declared_file_modes_are_applied_and_undeclared_setuid_refused(tmp_path: Path) -> None:
    body = """
    file_modes = {"usr/bin/tool": ("root", "root", 0o4755)}

    def install(self):
        self.install_dir("usr/bin")
        self.do("sh", "-c", f"echo '#!/bin/sh' > {self.destdir}/usr/bin/tool")
    """
    tree = tree_with(tmp_path, "modes", body)
    result = build(request(tree, "main/modes", tmp_path / "work"), MemoryLog(), SETTINGS)
    tool = tmp_path / "work/destdir/modes-1.0.0/usr/bin/tool"
    assert stat.S_IMODE(tool.stat().st_mode) == 0o4755
    assert result.packages[0].info.pkgname == "modes"
    sneaky = body.replace('file_modes = {"usr/bin/tool": ("root", "root", 0o4755)}', "")
    sneaky = sneaky.rstrip() + '\n        self.chmod(">/usr/bin/tool", 0o4755)\n'
    tree = tree_with(tmp_path / "sneaky", "modes", sneaky)
    with pytest.raises(BuildFailed) as caught:
        build(request(tree, "main/modes", tmp_path / "sneaky/work"), MemoryLog(), SETTINGS)
    assert caught.value.phase == "package" and "setuid" in caught.value.detail


def _tarball(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def test_sources_are_extracted_and_patched(tmp_path: Path) -> None:
    archive = tmp_path / "proj-1.0.0.tar.gz"
    archive.write_bytes(_tarball({"proj-1.0.0/message.txt": b"hello\n"}))
    extra = tmp_path / "notes.txt"
    extra.write_bytes(b"kept as it is\n")
    patch = b"""--- a/message.txt
+++ b/message.txt
@@ -1 +1 @@
-hello
+hello, patched
"""
    sums = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (archive, extra)]
    body = f"""
    source = ["$(TEST_SITE)/proj-1.0.0.tar.gz", "!$(TEST_SITE)/notes.txt"]
    sha256 = {sums!r}

    def install(self):
        self.install_file("message.txt", "usr/share/patched")
        self.install_file(self.sources_path / "notes.txt", "usr/share/patched")
    """
    tree = tree_with(tmp_path, "patched", body)
    (tree / "main/patched/patches").mkdir()
    (tree / "main/patched/patches/01-message.patch").write_bytes(patch)
    sources = {"proj-1.0.0.tar.gz": archive, "notes.txt": extra}
    build(request(tree, "main/patched", tmp_path / "work", sources=sources), MemoryLog(), SETTINGS)
    staged = tmp_path / "work/destdir/patched-1.0.0/usr/share/patched"
    assert (staged / "message.txt").read_bytes() == b"hello, patched\n"
    assert (staged / "notes.txt").read_bytes() == b"kept as it is\n"

    with pytest.raises(BuildFailed) as missing:
        build(
            request(tree, "main/patched", tmp_path / "w2", sources={"notes.txt": extra}),
            MemoryLog(),
            SETTINGS,
        )
    assert missing.value.phase == "setup"
    assert "source proj-1.0.0.tar.gz was not provided" in missing.value.detail
    wrong = {"proj-1.0.0.tar.gz": extra, "notes.txt": extra}
    with pytest.raises(BuildFailed) as mismatch:
        build(request(tree, "main/patched", tmp_path / "w3", sources=wrong), MemoryLog(), SETTINGS)
    assert "proj-1.0.0.tar.gz has sha256" in mismatch.value.detail


def test_setup_refusals(tmp_path: Path) -> None:
    body = """
    makedepends = ["zlib-devel"]

    def install(self):
        pass
    """
    tree = tree_with(tmp_path, "needy", body)
    with pytest.raises(BuildFailed) as caught:
        build(request(tree, "main/needy", tmp_path / "work"), MemoryLog(), SETTINGS)
    assert caught.value.phase == "dependencies"
    assert "needs zlib-devel but the build was given no dependency source" in caught.value.detail
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "leftover").write_text("x")
    with pytest.raises(BuildFailed, match="is not empty"):
        build(request(tree, "main/needy", busy), MemoryLog(), SETTINGS)
    for name, message in (
        ("main/nothere", "no such template"),
        ("main/kit-devel", "is a subpackage of main/kit"),
        ("../etc", "not a template name"),
    ):
        kit = tree_with(tmp_path / name.replace("/", "_"), "kit", KIT)
        with pytest.raises(BuildFailed, match=message):
            build(
                request(kit, name, tmp_path / f"w-{name.replace('/', '_')}"), MemoryLog(), SETTINGS
            )


def test_the_unsandboxed_mode_builds_only_the_examples(tmp_path: Path) -> None:
    tree = tree_with(tmp_path, "outsider", "def install(self):\n    pass\n")
    with pytest.raises(BuildFailed, match="builds only"):
        asyncio.run(
            run_build_unsandboxed_for_benchmark(
                request(tree, "main/outsider", tmp_path / "work"), MemoryLog()
            )
        )
    result = asyncio.run(
        run_build_unsandboxed_for_benchmark(
            request(EXAMPLES, "main/greet-tools", tmp_path / "examples"), MemoryLog()
        )
    )
    assert [p.info.pkgname for p in result.packages] == ["greet-tools"]
