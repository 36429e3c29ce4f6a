"""apkfarm.build.extract: good archives unpack like cbuild; hostile ones leave nothing behind."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from apkfarm.build.errors import ExtractError, ExtractLimitError
from apkfarm.build.extract import (
    ExtractLimits,
    detect_kind,
    extract_archive,
    extract_sources,
)

MTIME = 1_700_000_000


@dataclass
class M:
    """A tar member to write: a file (data), dir, symlink/hardlink (target) or special."""

    name: str
    kind: str = "file"
    data: bytes = b""
    target: str = ""
    mode: int | None = None
    pax: dict[str, str] | None = None


def make_tar(members: list[M], compression: str = "gz") -> bytes:
    buf = io.BytesIO()
    mode = "w" if compression == "" else f"w:{compression}"
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.mtime = MTIME
            if m.pax:
                info.pax_headers = m.pax
            data = None
            if m.kind == "file":
                info.size = len(m.data)
                info.mode = 0o644 if m.mode is None else m.mode
                data = io.BytesIO(m.data)
            elif m.kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755 if m.mode is None else m.mode
            elif m.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = m.target
            elif m.kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = m.target
            elif m.kind == "chr":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = 1, 3
            elif m.kind == "fifo":
                info.type = tarfile.FIFOTYPE
            else:
                raise AssertionError(m.kind)
            tf.addfile(info, data)
    return buf.getvalue()


def write(tmp_path: Path, name: str, payload: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(payload)
    return path


def assert_nothing_left(tmp_path: Path, archive: Path, dest: Path) -> None:
    assert not dest.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p != archive]
    assert leftovers == [], f"partial extraction left {leftovers}"


# --- good archives -----------------------------------------------------------------

GOOD = [
    M("hello-1.0/", "dir"),
    M("hello-1.0/configure", data=b"#!/bin/sh\necho ok\n", mode=0o755),
    M("hello-1.0/src/main.c", data=b"int main(void){return 0;}\n"),
    M("hello-1.0/src/alias.c", "hardlink", target="hello-1.0/src/main.c"),
    M("hello-1.0/include", "symlink", target="src"),
    M("hello-1.0/README", data=b"readme\n", mode=0o444),
]


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_tarball_with_single_top_directory_becomes_srcdir(tmp_path: Path, compression: str) -> None:
    archive = write(tmp_path, "hello-1.0.tar", make_tar(GOOD, compression))
    srcdir = tmp_path / "build" / "hello-1.0"
    result = extract_sources([archive], srcdir)
    assert sorted(p.name for p in srcdir.iterdir()) == ["README", "configure", "include", "src"]
    assert (srcdir / "configure").read_bytes() == b"#!/bin/sh\necho ok\n"
    assert stat.S_IMODE((srcdir / "configure").stat().st_mode) == 0o755
    # the owner keeps write access so the patch phase can edit read-only files
    assert stat.S_IMODE((srcdir / "README").stat().st_mode) == 0o644
    assert (srcdir / "include").readlink() == Path("src")
    assert (srcdir / "src" / "alias.c").stat().st_ino == (srcdir / "src" / "main.c").stat().st_ino
    assert (srcdir / "src" / "main.c").stat().st_mtime == MTIME
    report = result.archives[0]
    expected_kind = "tar" if compression == "" else f"tar.{compression}"
    assert report.kind == expected_kind
    assert report.members == len(GOOD)
    assert report.bytes_written == sum(len(m.data) for m in GOOD)
    assert [p.name for p in (tmp_path / "build").iterdir()] == ["hello-1.0"]


def test_several_top_level_entries_keep_the_extracted_tree(tmp_path: Path) -> None:
    one = write(tmp_path, "a.tar.gz", make_tar([M("a/x", data=b"1"), M("top.txt", data=b"t")]))
    two = write(tmp_path, "b.tar.gz", make_tar([M("a/y", data=b"2"), M("b/z", data=b"3")]))
    patch = write(tmp_path, "fix.patch", b"--- a\n+++ b\n")
    srcdir = tmp_path / "src"
    extract_sources([one, two, patch], srcdir)
    assert sorted(p.name for p in srcdir.iterdir()) == ["a", "b", "fix.patch", "top.txt"]
    assert sorted(p.name for p in (srcdir / "a").iterdir()) == ["x", "y"]  # merged
    assert stat.S_IMODE(srcdir.stat().st_mode) == 0o755


def test_single_top_symlink_is_not_used_as_srcdir(tmp_path: Path) -> None:
    archive = write(tmp_path, "l.tar.gz", make_tar([M("link", "symlink", target="nowhere")]))
    srcdir = tmp_path / "src"
    extract_sources([archive], srcdir)
    assert (srcdir / "link").is_symlink()


def test_extract_archive_into_empty_destination(tmp_path: Path) -> None:
    archive = write(tmp_path, "x.tar.gz", make_tar(GOOD))
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_archive(archive, dest)
    assert (dest / "hello-1.0" / "configure").is_file()


def test_setuid_bits_are_stripped_and_reported(tmp_path: Path) -> None:
    members = [M("suid", data=b"x", mode=0o4755), M("d", "dir", mode=0o1777)]
    archive = write(tmp_path, "s.tar.gz", make_tar(members))
    dest = tmp_path / "out"
    result = extract_archive(archive, dest)
    assert stat.S_IMODE((dest / "suid").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "d").stat().st_mode) == 0o755  # sticky and o+w gone
    assert result.archives[0].stripped_special_bits == ("suid", "d")
    assert result.dest == dest


def test_zip_with_symlink_and_modes(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg-2.0/", "")
        exe = zipfile.ZipInfo("pkg-2.0/run.sh", date_time=(2024, 1, 2, 3, 4, 6))
        exe.create_system = 3
        exe.external_attr = (stat.S_IFREG | 0o755) << 16
        zf.writestr(exe, "#!/bin/sh\n")
        link = zipfile.ZipInfo("pkg-2.0/latest", date_time=(2024, 1, 2, 3, 4, 6))
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "run.sh")
        zf.writestr("pkg-2.0/data/file.txt", "data")
    archive = write(tmp_path, "pkg.zip", buf.getvalue())
    assert detect_kind(archive) == "zip"
    srcdir = tmp_path / "src"
    extract_sources([archive], srcdir)
    assert stat.S_IMODE((srcdir / "run.sh").stat().st_mode) == 0o755
    assert (srcdir / "latest").readlink() == Path("run.sh")
    assert (srcdir / "data" / "file.txt").read_text() == "data"


# --- hostile tar archives ----------------------------------------------------------

HOSTILE_TAR = {
    "dotdot": ([M("../evil", data=b"x")], "contains '..'"),
    "dotdot-inside": ([M("a/../../evil", data=b"x")], "contains '..'"),
    "absolute": ([M("/etc/evil", data=b"x")], "absolute member path"),
    "abs-symlink": ([M("l", "symlink", target="/etc/passwd")], "absolute path"),
    "escape-symlink": ([M("d/l", "symlink", target="../../x")], "leaves the destination"),
    # 'a' resolves to the root; a lexical check of 'a/..' sees the root too, the
    # kernel sees the root's parent
    "escape-via-chain": (
        [M("a", "symlink", target="."), M("b", "symlink", target="a/..")],
        "leaves the destination",
    ),
    # accepted when written ('b' was missing), refused on the final tree
    "escape-via-later-member": (
        [M("l", "symlink", target="b/.."), M("b", "symlink", target=".")],
        r"member 'l': symlink target 'b/\.\.' leaves the destination",
    ),
    "through-symlink": (
        [M("sub/", "dir"), M("d", "symlink", target="sub"), M("d/file", data=b"x")],
        "written through the symlink 'd'",
    ),
    "replace-symlink": (
        [M("a", "symlink", target="b"), M("a", data=b"x")],
        "would replace a symlink",
    ),
    "replace-symlink-with-dir": (
        [M("a", "symlink", target="b"), M("a/", "dir")],
        "would replace a symlink",
    ),
    "dir-to-file": ([M("a/", "dir"), M("a", data=b"x")], "would replace a directory"),
    "file-parent": ([M("a", data=b"x"), M("a/b", data=b"y")], "parent 'a' is a file"),
    "hardlink-outside": ([M("h", "hardlink", target="../../etc/passwd")], "contains '..'"),
    "hardlink-absolute": ([M("h", "hardlink", target="/etc/passwd")], "absolute member path"),
    "hardlink-missing": ([M("h", "hardlink", target="nothere")], "not in the archive before it"),
    "hardlink-to-symlink": (
        [M("l", "symlink", target="x"), M("h", "hardlink", target="l")],
        "which is a symlink",
    ),
    "hardlink-forward": (
        [M("h", "hardlink", target="later"), M("later", data=b"x")],
        "not in the archive before it",
    ),
    "chardev": ([M("null", "chr")], "character device members are not allowed"),
    "fifo": ([M("pipe", "fifo")], "FIFO members are not allowed"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TAR))
def test_hostile_tar_is_refused_without_leftovers(tmp_path: Path, case: str) -> None:
    members, message = HOSTILE_TAR[case]
    # a harmless member first, so a refusal happens after something was written
    archive = write(tmp_path, f"{case}.tar.gz", make_tar([M("ok.txt", data=b"ok"), *members]))
    dest = tmp_path / "out"
    with pytest.raises(ExtractError, match=message) as err:
        extract_archive(archive, dest)
    assert f"{case}.tar.gz" in str(err.value)
    assert_nothing_left(tmp_path, archive, dest)


def test_symlink_loops_are_harmless_and_kept(tmp_path: Path) -> None:
    members = [
        M("self", "symlink", target="self"),
        M("x", "symlink", target="y/q"),
        M("y", "symlink", target="x/q"),
    ]
    archive = write(tmp_path, "loops.tar.gz", make_tar(members))
    dest = tmp_path / "out"
    extract_archive(archive, dest)
    assert (dest / "self").readlink() == Path("self")
    assert (dest / "x").readlink() == Path("y/q")


def test_refusal_names_the_member(tmp_path: Path) -> None:
    archive = write(tmp_path, "n.tar.gz", make_tar([M("pkg/../../x", data=b"")]))
    with pytest.raises(ExtractError, match=r"n\.tar\.gz: member 'pkg/\.\./\.\./x'"):
        extract_archive(archive, tmp_path / "out")


def test_setuid_refused_when_asked(tmp_path: Path) -> None:
    archive = write(
        tmp_path, "s.tar.gz", make_tar([M("ok", data=b""), M("su", data=b"", mode=0o6755)])
    )
    dest = tmp_path / "out"
    with pytest.raises(ExtractError, match="setuid/setgid/sticky mode 0o6755"):
        extract_archive(archive, dest, special_bits="refuse")
    assert_nothing_left(tmp_path, archive, dest)


def test_member_count_limit(tmp_path: Path) -> None:
    archive = write(tmp_path, "many.tar.gz", make_tar([M(f"f{i}", data=b"") for i in range(11)]))
    dest = tmp_path / "out"
    with pytest.raises(ExtractLimitError, match="more than 10 members"):
        extract_archive(archive, dest, limits=ExtractLimits(max_members=10))
    assert_nothing_left(tmp_path, archive, dest)


def test_total_and_member_size_limits(tmp_path: Path) -> None:
    archive = write(
        tmp_path, "big.tar", make_tar([M("a", data=b"x" * 600), M("b", data=b"y" * 600)], "")
    )
    with pytest.raises(ExtractLimitError, match="would exceed 1000 bytes"):
        extract_archive(archive, tmp_path / "o1", limits=ExtractLimits(max_total_size=1000))
    with pytest.raises(ExtractLimitError, match="600 bytes is more than the 500 allowed"):
        extract_archive(archive, tmp_path / "o2", limits=ExtractLimits(max_member_size=500))
    assert_nothing_left(tmp_path, archive, tmp_path / "o1")


class _Zeros(io.RawIOBase):
    """``size`` zero bytes without holding them in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def test_compression_ratio_bomb(tmp_path: Path) -> None:
    size = 32 * 2**20
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("zeros")
        info.size = size
        tf.addfile(info, io.BufferedReader(_Zeros(size)))
    archive = write(tmp_path, "bomb.tar.gz", buf.getvalue())
    assert archive.stat().st_size < size // 500
    dest = tmp_path / "out"
    limits = ExtractLimits(max_ratio=100, ratio_floor=2**20)
    with pytest.raises(ExtractLimitError, match="expansion ratio limit"):
        extract_archive(archive, dest, limits=limits)
    assert_nothing_left(tmp_path, archive, dest)


def test_huge_pax_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    members = [M("a", data=b"x", pax={"comment": "c" * (2 * 2**20)})]
    archive = write(tmp_path, "pax.tar.gz", make_tar(members))
    dest = tmp_path / "out"
    with pytest.raises(ExtractLimitError, match="tar extension header"):
        extract_archive(archive, dest)
    assert_nothing_left(tmp_path, archive, dest)


def test_corrupt_and_unknown_archives(tmp_path: Path) -> None:
    good = make_tar(GOOD)
    truncated = write(tmp_path, "cut.tar.gz", good[: len(good) // 2])
    with pytest.raises(ExtractError, match=r"cut\.tar\.gz: corrupt archive"):
        extract_archive(truncated, tmp_path / "o1")
    junk = write(tmp_path, "junk.bin", b"hello world, not an archive" * 40)
    with pytest.raises(ExtractError, match=r"junk\.bin: not a tar"):
        extract_archive(junk, tmp_path / "o2")
    zst = write(tmp_path, "x.tar.zst", b"\x28\xb5\x2f\xfd" + bytes(600))
    with pytest.raises(ExtractError, match="zstd archives are not supported"):
        extract_archive(zst, tmp_path / "o3")
    assert not (tmp_path / "o1").exists()


def test_destination_must_be_absent_or_empty(tmp_path: Path) -> None:
    archive = write(tmp_path, "x.tar.gz", make_tar(GOOD))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep").write_text("mine")
    with pytest.raises(ExtractError, match="not empty"):
        extract_archive(archive, dest)
    assert (dest / "keep").read_text() == "mine"


# --- hostile zip archives ----------------------------------------------------------


def make_zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def unix_entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.create_system = 3
    info.external_attr = mode << 16
    return info


HOSTILE_ZIP = {
    "dotdot": ([("../evil", b"x")], "contains '..'"),
    "absolute": ([("/tmp/evil", b"x")], "absolute member path"),
    "symlink-escape": ([(unix_entry("l", stat.S_IFLNK | 0o777), b"../../etc")], "leaves"),
    "symlink-absolute": ([(unix_entry("l", stat.S_IFLNK | 0o777), b"/etc")], "absolute path"),
    "through-symlink": (
        [(unix_entry("l", stat.S_IFLNK | 0o777), b"sub"), ("l/x", b"x")],
        "written through the symlink 'l'",
    ),
    "fifo": ([(unix_entry("p", stat.S_IFIFO | 0o644), b"")], "special file members"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ZIP))
def test_hostile_zip_is_refused_without_leftovers(tmp_path: Path, case: str) -> None:
    entries, message = HOSTILE_ZIP[case]
    archive = write(tmp_path, f"{case}.zip", make_zip([("ok.txt", b"ok"), *entries]))  # type: ignore[list-item]
    dest = tmp_path / "out"
    with pytest.raises(ExtractError, match=message):
        extract_archive(archive, dest)
    assert_nothing_left(tmp_path, archive, dest)


def test_zip_bomb_by_declared_size(tmp_path: Path) -> None:
    archive = write(tmp_path, "bomb.zip", make_zip([("zeros", bytes(8 * 2**20))]))
    dest = tmp_path / "out"
    with pytest.raises(ExtractLimitError, match="members expand to"):
        extract_archive(archive, dest, limits=ExtractLimits(max_ratio=50, ratio_floor=2**20))
    assert_nothing_left(tmp_path, archive, dest)


def test_encrypted_zip_member_is_refused(tmp_path: Path) -> None:
    payload = bytearray(make_zip([("secret", b"data")]))
    # set the "encrypted" general-purpose flag in the local and central headers
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        at = payload.index(sig)
        flag_at = at + (6 if sig == b"PK\x03\x04" else 8)
        payload[flag_at] |= 0x1
    archive = write(tmp_path, "enc.zip", bytes(payload))
    with pytest.raises(ExtractError, match="encrypted"):
        extract_archive(archive, tmp_path / "out")


def test_no_temp_dirs_survive_a_refusal_deep_in_a_read_only_tree(tmp_path: Path) -> None:
    members = [M("ro/", "dir", mode=0o555), M("ro/f", data=b"x", mode=0o444), M("/abs", data=b"")]
    archive = write(tmp_path, "ro.tar.gz", make_tar(members))
    dest = tmp_path / "out"
    with pytest.raises(ExtractError):
        extract_archive(archive, dest)
    assert_nothing_left(tmp_path, archive, dest)
    assert os.listdir(tmp_path) == [archive.name]
