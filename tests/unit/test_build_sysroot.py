"""Build dependencies from a signed farm repository: resolution, verification, installation."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from apkfarm.apk.assemble import write_signed_package
from apkfarm.apk.keys import Keyring, generate_key_pair
from apkfarm.apk.package import build_package
from apkfarm.apk.pkginfo import PkgInfo
from apkfarm.apk.repository import update_repository
from apkfarm.apk.signing import LocalKeySigner
from apkfarm.blobs import LocalBlobStore
from apkfarm.build.sysroot import DependencyError, DependencySource


class Repo:
    def __init__(self, tmp_path: Path) -> None:
        pair = generate_key_pair(tmp_path / "keys", "farm@example.org", now=0x1234)
        self.signer = LocalKeySigner(pair.private_path)
        self.keyring = Keyring.from_files([pair.public_path])
        self.root = tmp_path / "repo"
        self.store = LocalBlobStore(self.root, durable=False)
        self.trees = tmp_path / "trees"

    def add(
        self,
        name: str,
        files: dict[str, bytes],
        *,
        category: str = "main",
        version: str = "1.0-r0",
        depends: tuple[str, ...] = (),
        provides: tuple[str, ...] = (),
        modes: dict[str, int] | None = None,
        index: bool = True,
    ) -> Path:
        tree = self.trees / f"{category}-{name}-{version}"
        for path, data in files.items():
            target = tree / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod((modes or {}).get(path, 0o644))
        tree.mkdir(parents=True, exist_ok=True)
        info = PkgInfo(name, version, "x86_64", depends=depends, provides=provides, origin=name)
        setuid = [p for p, m in (modes or {}).items() if m & stat.S_ISUID]
        directory = self.root / category / "x86_64"
        directory.mkdir(parents=True, exist_ok=True)
        out = directory / info.filename
        with build_package(tree, info, allowed_setuid=setuid) as unsigned, out.open("wb") as f:
            write_signed_package(f, unsigned, [self.signer])
        if index:
            self.index(category)
        return out

    def index(self, category: str = "main") -> None:
        update_repository(
            self.root / category / "x86_64", signers=[self.signer], keyring=self.keyring
        )

    def source(self, keyring: Keyring | None = None) -> DependencySource:
        return DependencySource(self.store, keyring or self.keyring)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    repo = Repo(tmp_path)
    repo.add(
        "libz",
        {"usr/lib/libz.so.1.3": b"\x7fELF not really"},
        version="1.3-r0",
        provides=("so:libz.so.1=1.3",),
    )
    repo.add(
        "zlib-devel",
        {"usr/include/zlib.h": b"/* zlib */\n", "usr/lib/pkgconfig/zlib.pc": b"Name: zlib\n"},
        version="1.3-r0",
        depends=("libz=1.3-r0",),
        provides=("pc:zlib=1.3",),
    )
    repo.add(
        "helper",
        {"usr/bin/helper": b"#!/bin/sh\n"},
        depends=("so:libz.so.1",),
        provides=("cmd:helper=1.0-r0",),
        modes={"usr/bin/helper": 0o4755},
    )
    return repo


def names(packages: list[object]) -> list[str]:
    return [p.label for p in packages]  # type: ignore[attr-defined]


def test_names_and_virtual_names_resolve_with_their_runtime_dependencies(repo: Repo) -> None:
    source = repo.source()
    found = source.resolve(["zlib-devel"], categories=["main"], arch="x86_64")
    assert names(found) == ["libz-1.3-r0", "zlib-devel-1.3-r0"]
    found = source.resolve(["pc:zlib>=1.2", "cmd:helper"], categories=["main"], arch="x86_64")
    assert names(found) == ["helper-1.0-r0", "libz-1.3-r0", "zlib-devel-1.3-r0"]


def test_what_nothing_provides_is_listed_with_who_needed_it(repo: Repo) -> None:
    repo.add("broken", {"usr/share/broken/x": b"x"}, depends=("libmissing", "so:libnope.so.2"))
    with pytest.raises(DependencyError) as caught:
        repo.source().resolve(
            ["broken", "pc:zlib>=2", "ghost"], categories=["user", "main"], arch="x86_64"
        )
    message = str(caught.value)
    assert "(user/x86_64, main/x86_64)" in message
    for expected in (
        "pc:zlib>=2 (needed by the template)",
        "ghost (needed by the template)",
        "libmissing (needed by broken-1.0-r0)",
        "so:libnope.so.2 (needed by broken-1.0-r0)",
    ):
        assert expected in message


def test_the_first_category_searched_wins(repo: Repo) -> None:
    repo.add(
        "helper", {"usr/bin/helper": b"#!/bin/sh\n# user\n"}, category="user", version="0.9-r0"
    )
    found = repo.source().resolve(["helper"], categories=["user", "main"], arch="x86_64")
    assert [(p.category, p.record.version) for p in found] == [("user", "0.9-r0")]


def test_installing_extracts_verified_packages_without_special_bits(
    repo: Repo, tmp_path: Path
) -> None:
    sysroot = tmp_path / "sysroot"
    messages: list[str] = []
    result = repo.source().install(
        ["cmd:helper", "zlib-devel"],
        categories=["main"],
        arch="x86_64",
        sysroot=sysroot,
        download_dir=tmp_path / "downloads",
        progress=messages.append,
    )
    assert (sysroot / "usr/include/zlib.h").read_bytes() == b"/* zlib */\n"
    assert (sysroot / "usr/lib/libz.so.1.3").exists()
    helper_mode = stat.S_IMODE((sysroot / "usr/bin/helper").stat().st_mode)
    assert helper_mode == 0o755  # setuid cleared: nothing in a sysroot runs privileged
    assert result.populated and result.provides() == {
        "so:libz.so.1": "libz",
        "pc:zlib": "zlib-devel",
        "cmd:helper": "helper",
    }
    assert messages == [
        "installed helper-1.0-r0 from main/x86_64",
        "installed libz-1.3-r0 from main/x86_64",
        "installed zlib-devel-1.3-r0 from main/x86_64",
    ]


def test_an_index_signed_by_another_key_is_refused(repo: Repo, tmp_path: Path) -> None:
    other = generate_key_pair(tmp_path / "other", "other@example.org", now=0x99)
    source = repo.source(Keyring.from_files([other.public_path]))
    with pytest.raises(DependencyError, match=r"repository main/x86_64: .*"):
        source.resolve(["libz"], categories=["main"], arch="x86_64")


def test_a_package_that_is_not_the_indexed_one_is_refused_before_extraction(
    repo: Repo, tmp_path: Path
) -> None:
    indexed = repo.root / "main/x86_64/libz-1.3-r0.apk"
    # a validly signed package of the same name and size class, but other content
    replacement = repo.add(
        "libz",
        {"usr/lib/libz.so.1.3": b"\x7fELF evil twin!"},
        version="1.3-r0",
        category="staging",
        provides=("so:libz.so.1=1.3",),
        index=False,
    )
    os.replace(replacement, indexed)
    sysroot = tmp_path / "sysroot"
    with pytest.raises(DependencyError) as caught:
        repo.source().install(
            ["libz"],
            categories=["main"],
            arch="x86_64",
            sysroot=sysroot,
            download_dir=tmp_path / "downloads",
        )
    assert "main/x86_64/libz-1.3-r0.apk" in str(caught.value)
    assert not (sysroot / "usr/lib/libz.so.1.3").exists()


def test_indexes_are_read_again_only_when_they_change(repo: Repo) -> None:
    reads: list[str] = []
    original = repo.store.get_bytes

    def counting(key: str, **kwargs: object) -> bytes:
        reads.append(key)
        return original(key, **kwargs)  # type: ignore[arg-type]

    repo.store.get_bytes = counting  # type: ignore[method-assign]
    source = repo.source()
    source.resolve(["libz"], categories=["main"], arch="x86_64")
    source.resolve(["libz"], categories=["main"], arch="x86_64")
    assert reads == ["main/x86_64/APKINDEX.tar.gz"]
    repo.add("extra", {"usr/share/extra/x": b"x"})
    assert names(source.resolve(["extra"], categories=["main"], arch="x86_64")) == ["extra-1.0-r0"]
    assert len(reads) == 2


def test_an_empty_keyring_is_refused(repo: Repo) -> None:
    with pytest.raises(DependencyError, match="keyring is empty"):
        DependencySource(repo.store, Keyring())
