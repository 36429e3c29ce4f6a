"""Hostile input: each malformed or malicious package is refused with the expected message."""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

import pytest
from apk_support import VECTOR_PRIVATE, VECTOR_PUBLIC, craft_package, independent_members

from apkfarm.apk.assemble import signature_member
from apkfarm.apk.errors import (
    ApkError,
    ApkFormatError,
    ApkIntegrityError,
    ApkLimitError,
    ApkSignatureError,
    ExtractionError,
)
from apkfarm.apk.extract import extract_package
from apkfarm.apk.gzip_members import compress_member
from apkfarm.apk.keys import Keyring
from apkfarm.apk.reader import ReadLimits, verify_package
from apkfarm.apk.signing import LocalKeySigner, SignatureFile
from apkfarm.apk.tar import (
    END_OF_ARCHIVE,
    EntryType,
    entry_headers,
    file_entry,
    header_block,
    padding,
)


@pytest.fixture(scope="module")
def signer(vectors: Path) -> LocalKeySigner:
    return LocalKeySigner(vectors / "apk" / "keys" / VECTOR_PRIVATE)


@pytest.fixture(scope="module")
def keyring(vectors: Path) -> Keyring:
    return Keyring.from_files([vectors / "apk" / "keys" / VECTOR_PUBLIC])


def data_file(name: str, content: bytes, mode: int = 0o644) -> bytes:
    return (
        entry_headers(
            name.encode(),
            EntryType.FILE,
            mode=mode,
            mtime=0,
            size=len(content),
            checksum_sha1=hashlib.sha1(content).hexdigest(),
        )
        + content
        + padding(len(content))
    )


def data_dir(name: str) -> bytes:
    return entry_headers(name.encode() + b"/", EntryType.DIRECTORY, mode=0o755, mtime=0)


def data_symlink(name: str, target: str) -> bytes:
    return entry_headers(
        name.encode(),
        EntryType.SYMLINK,
        mode=0o777,
        mtime=0,
        linkname=target.encode(),
        checksum_sha1=hashlib.sha1(target.encode()).hexdigest(),
    )


def good(signer: LocalKeySigner) -> bytes:
    return craft_package(
        data_dir("usr") + data_file("usr/hello", b"hello\n") + END_OF_ARCHIVE, [signer]
    )


def verify(data: bytes, keyring: Keyring | None, limits: ReadLimits | None = None) -> object:
    if limits is None:
        return verify_package(io.BytesIO(data), keyring, source="evil.apk")
    return verify_package(io.BytesIO(data), keyring, source="evil.apk", limits=limits)


def test_the_crafted_baseline_is_good(signer: LocalKeySigner, keyring: Keyring) -> None:
    verify(good(signer), keyring)


@pytest.mark.parametrize("keep", [1, 10, 300, 500, -200, -9, -1])
def test_truncated_packages(signer: LocalKeySigner, keyring: Keyring, keep: int) -> None:
    data = good(signer)
    with pytest.raises(ApkError, match=r"evil\.apk: .*(truncated|ends|no data member)"):
        verify(data[:keep], keyring)


def test_trailing_garbage_and_extra_members(signer: LocalKeySigner, keyring: Keyring) -> None:
    data = good(signer)
    with pytest.raises(ApkFormatError, match="data member: followed by trailing garbage"):
        verify(data + b"garbage", keyring)
    with pytest.raises(
        ApkFormatError, match="data member: followed by an unexpected extra gzip member"
    ):
        verify(data + compress_member(b"x" * 1024), keyring)
    with pytest.raises(ApkFormatError, match="data member: followed by trailing garbage"):
        verify(data + b"\x00", keyring)


def test_non_zero_bytes_after_end_of_archive(signer: LocalKeySigner, keyring: Keyring) -> None:
    data = craft_package(data_dir("usr") + END_OF_ARCHIVE + b"\x01" + bytes(511), [signer])
    with pytest.raises(ApkFormatError, match="data member: non-zero data after the end-of-archive"):
        verify(data, keyring)


def test_gzip_bomb_in_the_data_member_is_bounded(signer: LocalKeySigner, keyring: Keyring) -> None:
    bomb = data_file("usr/zeros", bytes(8 << 20)) + END_OF_ARCHIVE
    data = craft_package(bomb, [signer])
    assert len(data) < 64 << 10  # 8 MiB of zeros compress to a few KiB
    limits = ReadLimits(data_member=1 << 20)
    with pytest.raises(
        ApkLimitError, match=r"evil\.apk: data member: inflates beyond the limit of 1048576 bytes"
    ):
        verify(data, keyring, limits)


def test_oversized_control_member_and_pkginfo(signer: LocalKeySigner, keyring: Keyring) -> None:
    junk = file_entry(b".junk", bytes(17 << 20), mode=0o644, mtime=0)
    data = craft_package(END_OF_ARCHIVE, [signer], extra_control=junk)
    with pytest.raises(
        ApkLimitError, match="control member: inflates beyond the limit of 16777216"
    ):
        verify(data, keyring)
    # A huge .PKGINFO is refused by its own (smaller) limit.
    control = compress_member(file_entry(b".PKGINFO", b"# " + bytes(2 << 20), mode=0o644, mtime=0))
    data = good(signer)
    members = independent_members(data)
    forged = members[0].compressed + control + members[2].compressed
    with pytest.raises(
        ApkLimitError, match=r"\.PKGINFO: 2097154 bytes exceeds the limit of 1048576"
    ):
        verify(forged, None)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../etc/passwd", "path escapes with '..'"),
        ("usr/../../etc/passwd", "path escapes with '..'"),
        ("/etc/passwd", "absolute path"),
        ("usr//x", "empty or '.' path component"),
    ],
)
def test_path_traversal_is_refused(
    signer: LocalKeySigner, keyring: Keyring, name: str, message: str
) -> None:
    data = craft_package(data_file(name, b"x") + END_OF_ARCHIVE, [signer])
    with pytest.raises(ApkFormatError, match=f"evil.apk: data member: .*{message}"):
        verify(data, keyring)


def test_signature_problems(signer: LocalKeySigner, keyring: Keyring, tmp_path: Path) -> None:
    tar = data_file("x", b"x") + END_OF_ARCHIVE
    with pytest.raises(ApkSignatureError, match=r"evil\.apk: not signed \(no signature member\)"):
        verify(craft_package(tar, None), keyring)
    unknown = [SignatureFile(".SIGN.RSA.nobody@example.org-1.rsa.pub", b"\x00" * 256)]
    with pytest.raises(
        ApkSignatureError, match=re.escape("nobody@example.org-1.rsa.pub is not trusted")
    ):
        verify(craft_package(tar, None, signatures=unknown), keyring)
    # Unknown types are skipped like apk skips them; with nothing else it is untrusted.
    forged = signer.sign(b"")
    odd = SignatureFile(".SIGN.DSA2." + VECTOR_PUBLIC, forged.signature)
    data = craft_package(tar, None, signatures=[SignatureFile(forged.name, b"\x00" * 256)])
    with pytest.raises(ApkSignatureError, match="control member: does not match signature"):
        verify(data, keyring)
    sig_member = compress_member(file_entry(odd.name.encode(), odd.signature, mode=0o644, mtime=0))
    unsigned = craft_package(tar, None)
    with pytest.raises(ApkSignatureError, match="unknown signature type"):
        verify(sig_member + unsigned, keyring)


def test_control_member_must_be_cut(signer: LocalKeySigner, keyring: Keyring) -> None:
    data = good(signer)
    members = independent_members(data)
    control = compress_member(members[1].raw + END_OF_ARCHIVE)
    signatures = signature_member([signer.sign(control)])
    with pytest.raises(ApkFormatError, match="control member: ends with an end-of-archive marker"):
        verify(signatures + control + members[2].compressed, keyring)


def test_data_in_the_control_member_is_refused(signer: LocalKeySigner, keyring: Keyring) -> None:
    members = independent_members(good(signer))
    merged = compress_member(members[1].raw + data_file("usr/x", b"x") + END_OF_ARCHIVE)
    with pytest.raises(ApkFormatError, match="'usr/x' does not belong in the control member"):
        verify(merged, None)


def test_hard_link_to_nothing_is_refused(signer: LocalKeySigner, keyring: Keyring) -> None:
    link = entry_headers(b"usr/l", EntryType.HARDLINK, mode=0o644, mtime=0, linkname=b"etc/shadow")
    data = craft_package(link + END_OF_ARCHIVE, [signer])
    with pytest.raises(ApkFormatError, match="hard link to 'etc/shadow', which is not an earlier"):
        verify(data, keyring)


def test_missing_file_checksum_is_refused(signer: LocalKeySigner, keyring: Keyring) -> None:
    bare = header_block(b"usr/x", b"0", mode=0o644, mtime=0, size=1) + b"x" + padding(1)
    with pytest.raises(ApkIntegrityError, match=re.escape("usr/x: no APK-TOOLS.checksum record")):
        verify(craft_package(bare + END_OF_ARCHIVE, [signer]), keyring)


def test_wrong_file_checksum_is_named(signer: LocalKeySigner, keyring: Keyring) -> None:
    entry = data_file("usr/x", b"right")
    wrong = entry.replace(b"right", b"wrong")
    with pytest.raises(
        ApkIntegrityError, match=r"evil\.apk: data member: usr/x: SHA1 checksum mismatch"
    ):
        verify(craft_package(wrong + END_OF_ARCHIVE, [signer]), keyring)


def test_corrupt_tar_header_checksum(signer: LocalKeySigner, keyring: Keyring) -> None:
    entry = bytearray(data_file("usr/x", b"x"))
    entry[1024 + 100] ^= 1  # mode field of the real header, after the pax header and its data
    with pytest.raises(ApkFormatError, match="tar header checksum mismatch"):
        verify(craft_package(bytes(entry) + END_OF_ARCHIVE, [signer]), keyring)


def test_not_an_archive(keyring: Keyring) -> None:
    with pytest.raises(ApkFormatError, match=r"evil\.apk: not a gzip stream"):
        verify(b"PK\x03\x04 not a package", keyring)
    with pytest.raises(ApkFormatError, match="no control or index member"):
        verify(b"", keyring)


# ----------------------------------------------------------------------------- extraction


def extract(data: bytes, dest: Path, keyring: Keyring) -> tuple[str, ...]:
    return extract_package(io.BytesIO(data), dest, keyring, source="evil.apk").paths


def snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_extraction_installs_a_good_package(
    signer: LocalKeySigner, keyring: Keyring, tmp_path: Path
) -> None:
    tar = (
        data_dir("usr")
        + data_file("usr/hello", b"hello\n", 0o750)
        + data_symlink("usr/hi", "hello")
    )
    paths = extract(craft_package(tar + END_OF_ARCHIVE, [signer]), tmp_path, keyring)
    assert paths == ("usr", "usr/hello", "usr/hi")
    assert (tmp_path / "usr/hello").read_bytes() == b"hello\n"
    assert (tmp_path / "usr/hello").stat().st_mode & 0o7777 == 0o750
    assert os.readlink(tmp_path / "usr/hi") == "hello"
    assert [p.name for p in tmp_path.rglob(".apkfarm-extract-*")] == []


def test_failed_verification_leaves_the_destination_untouched(
    signer: LocalKeySigner, keyring: Keyring, tmp_path: Path
) -> None:
    (tmp_path / "existing").write_text("keep")
    before = snapshot(tmp_path)
    tar = data_dir("usr") + data_file("usr/a", b"a") + data_file("usr/b", b"b")
    data = craft_package(tar + END_OF_ARCHIVE, [signer])
    members = independent_members(data)
    # Correct per-file checksums, but the data member no longer matches datahash.
    forged = members[0].compressed + members[1].compressed + compress_member(members[2].raw, 1)
    with pytest.raises(ApkIntegrityError, match="does not match datahash"):
        extract(forged, tmp_path, keyring)
    assert snapshot(tmp_path) == before


def test_symlink_escapes_are_refused(
    signer: LocalKeySigner, keyring: Keyring, tmp_path: Path
) -> None:
    escape = data_symlink("usr/evil", "../../../etc/passwd")
    with pytest.raises(
        ExtractionError,
        match=re.escape("usr/evil: symlink target '../../../etc/passwd' points outside"),
    ):
        extract(
            craft_package(data_dir("usr") + escape + END_OF_ARCHIVE, [signer]), tmp_path, keyring
        )
    through = data_symlink("etc", "/etc") + data_file("etc/cron.d/evil", b"* * * * * root sh")
    with pytest.raises(ExtractionError, match="would be written through the package's symlink etc"):
        extract(craft_package(through + END_OF_ARCHIVE, [signer]), tmp_path, keyring)
    assert snapshot(tmp_path) == []


def test_existing_symlinks_are_followed_inside_the_root(
    signer: LocalKeySigner, keyring: Keyring, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")  # usr-merge style
    (root / "abs").symlink_to("/")  # absolute: means the root itself, never the host's /
    (root / "up").symlink_to("../../../..")  # climbing stops at the root, like in a chroot
    tar = (
        data_file("lib/libx.so", b"x")
        + data_file("abs/from-abs", b"y")
        + data_file("up/from-up", b"z")
    )
    extract(craft_package(tar + END_OF_ARCHIVE, [signer]), root, keyring)
    assert (root / "usr/lib/libx.so").read_bytes() == b"x"
    assert (root / "from-abs").read_bytes() == b"y"
    assert (root / "from-up").read_bytes() == b"z"
    assert list(outside.iterdir()) == []


def test_device_nodes_are_not_extracted(
    signer: LocalKeySigner, keyring: Keyring, tmp_path: Path
) -> None:
    device = header_block(b"dev/null", b"3", mode=0o666, mtime=0)
    with pytest.raises(ExtractionError, match="dev/null: char_device entries are not extracted"):
        extract(craft_package(device + END_OF_ARCHIVE, [signer]), tmp_path, keyring)


def test_parents_missing_from_the_tar_are_removed_on_failure(
    signer: LocalKeySigner, keyring: Keyring, tmp_path: Path
) -> None:
    tar = data_file("opt/deep/dir/file", b"x") + data_file("opt/other", b"y")
    data = craft_package(tar + END_OF_ARCHIVE, [signer])
    members = independent_members(data)
    forged = members[0].compressed + members[1].compressed + compress_member(members[2].raw, 1)
    with pytest.raises(ApkIntegrityError):
        extract(forged, tmp_path, keyring)
    assert snapshot(tmp_path) == []
    assert extract(data, tmp_path, keyring) == ("opt/deep/dir/file", "opt/other")
    assert (tmp_path / "opt/deep/dir/file").read_bytes() == b"x"
