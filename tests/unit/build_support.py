"""Helpers for the builder's tests: a local signed farm repository, small trees.

``LocalRepo`` is the farm's repository as the builder sees it: a
``LocalBlobStore`` whose keys are ``<category>/<arch>/<file>.apk`` and
``<category>/<arch>/APKINDEX.tar.gz``, filled by signing a build's packages
with a real key and indexing them with ``update_repository``.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
from collections.abc import Iterable
from pathlib import Path

from conftest import REPO_ROOT

from apkfarm.apk.assemble import write_signed_package
from apkfarm.apk.extract import extract_package
from apkfarm.apk.keys import Keyring, generate_key_pair
from apkfarm.apk.reader import PackageContents, verify_package
from apkfarm.apk.repository import update_repository
from apkfarm.apk.signing import LocalKeySigner
from apkfarm.blobs import LocalBlobStore
from apkfarm.build.log import MemoryLog
from apkfarm.build.result import BuildRequest, BuildResult
from apkfarm.build.runner import BuilderSettings, run_build
from apkfarm.build.sysroot import DependencySource

EXAMPLES = REPO_ROOT / "examples"
EPOCH = 1_704_067_200


class LocalRepo:
    """A signed farm repository in a LocalBlobStore, and the keys that sign and verify it."""

    def __init__(self, root: Path) -> None:
        keys = root / "keys"
        pair = generate_key_pair(keys, "farm@example.org", now=0x6543)
        self.signer = LocalKeySigner(pair.private_path)
        self.keyring = Keyring.from_files([pair.public_path])
        self.root = root / "repo"
        self.root.mkdir(parents=True)
        self.store = LocalBlobStore(self.root, durable=False)

    def source(self) -> DependencySource:
        return DependencySource(self.store, self.keyring)

    def sign(self, result: BuildResult, directory: Path) -> list[Path]:
        """Write every package of `result`, signed, into `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for built in result.packages:
            path = directory / built.filename
            with path.open("wb") as out:
                write_signed_package(out, built.package, [self.signer])
            written.append(path)
        return written

    def publish(self, result: BuildResult, category: str = "main") -> list[Path]:
        """Sign every package of `result` into ``<category>/<arch>/`` and re-index it."""
        directory = self.root / category / result.arch
        written = self.sign(result, directory)
        update_repository(directory, signers=[self.signer], keyring=self.keyring)
        return written

    def read(self, path: Path) -> PackageContents:
        with path.open("rb") as stream:
            return verify_package(stream, self.keyring, source=path.name)

    def install(self, paths: Iterable[Path], root: Path) -> None:
        """Extract signed packages into `root` (a directory to run their programs from)."""
        root.mkdir(parents=True, exist_ok=True)
        for path in paths:
            with path.open("rb") as stream:
                extract_package(stream, root, self.keyring, source=path.name)


def write_template(
    tree: Path, full_name: str, text: str, files: dict[str, bytes] | None = None
) -> Path:
    """Write ``<tree>/<category>/<name>/template.py`` (dedented) and extra files beside it."""
    directory = tree / full_name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "template.py").write_text(textwrap.dedent(text).lstrip())
    for name, data in (files or {}).items():
        (directory / name).write_bytes(data)
    tree.chmod(0o755)
    return directory


HEADER = """\
pkgname = "{name}"
pkgver = "1.0.0"
pkgrel = 0
pkgdesc = "Test template {name}"
license = "BSD-2-Clause"
url = "https://apkfarm.example.org/tests/{name}"
"""


def template_text(name: str, body: str) -> str:
    """A minimal valid template named `name` followed by `body` (dedented)."""
    return HEADER.format(name=name) + textwrap.dedent(body)


def request(
    tree: Path,
    template: str,
    work: Path,
    *,
    arch: str = "x86_64",
    sources: dict[str, Path] | None = None,
    dependencies: DependencySource | None = None,
    timeout: float = 300.0,
    silence: float = 120.0,
) -> BuildRequest:
    return BuildRequest(
        tree=tree,
        template=template,
        arch=arch,
        sources=sources or {},
        dependencies=dependencies,
        work_dir=work,
        source_date_epoch=EPOCH,
        timeout=timeout,
        silence_timeout=silence,
    )


def build(
    req: BuildRequest, log: MemoryLog | None = None, settings: BuilderSettings | None = None
) -> BuildResult:
    return asyncio.run(run_build(req, log or MemoryLog(), settings=settings))


def processes_of(uids: range) -> list[int]:
    """PIDs of the processes whose real uid is in `uids` (left-overs of a sandbox)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:"):
                if int(line.split()[1]) in uids:
                    found.append(int(entry))
                break
    return found


def pkginfo_of(contents: PackageContents) -> dict[str, list[str]]:
    """`depend` and `provides` of a read package, for assertions."""
    return {"depends": list(contents.info.depends), "provides": list(contents.info.provides)}
