"""The real-tool repository (abuild + apk-tools) read, verified and reproduced by apkfarm.apk."""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from apk_support import (
    OTHER_PUBLIC,
    VECTOR_PRIVATE,
    VECTOR_PUBLIC,
    header_fields,
    identity,
    independent_members,
    tar_file_content,
    tar_members,
)

from apkfarm.apk.assemble import signature_member, write_signed_package
from apkfarm.apk.errors import ApkError, ApkIntegrityError, ApkSignatureError
from apkfarm.apk.gzip_members import compress_member
from apkfarm.apk.index import (
    IndexRecord,
    parse_apkindex,
    read_index,
    read_index_records,
    render_apkindex,
    verify_index_records,
)
from apkfarm.apk.keys import Keyring
from apkfarm.apk.package import build_package
from apkfarm.apk.pkginfo import PkgInfo
from apkfarm.apk.reader import verify_package
from apkfarm.apk.signing import LocalKeySigner, SignatureAlgorithm, SignatureFile

PACKAGES = ("refa-1.0-r0.apk", "refb-2.1-r3.apk")


@pytest.fixture(scope="module")
def repo(vectors: Path) -> Path:
    return vectors / "apk" / "repo-v2" / "x86_64"


@pytest.fixture(scope="module")
def keys(vectors: Path) -> Path:
    return vectors / "apk" / "keys"


@pytest.fixture(scope="module")
def trusted(keys: Path) -> Keyring:
    return Keyring.from_files([keys / VECTOR_PUBLIC])


@pytest.fixture(scope="module")
def other(keys: Path) -> Keyring:
    return Keyring.from_files([keys / OTHER_PUBLIC])


def verify_bytes(data: bytes, keyring: Keyring | None, name: str = "pkg") -> object:
    return verify_package(io.BytesIO(data), keyring, source=name)


@pytest.mark.parametrize("name", PACKAGES)
def test_real_packages_verify_with_the_vector_key(repo: Path, trusted: Keyring, name: str) -> None:
    data = (repo / name).read_bytes()
    contents = verify_package(io.BytesIO(data), trusted, source=name)
    members = independent_members(data)
    assert len(members) == 3
    assert contents.signature is not None
    assert contents.signature.key_name == VECTOR_PUBLIC
    assert contents.signature.algorithm is SignatureAlgorithm.RSA
    # C: and datahash recomputed independently from the raw member bytes.
    assert contents.identity == identity(members[1].compressed)
    assert contents.info.datahash == hashlib.sha256(members[2].compressed).hexdigest()
    pkginfo = tar_file_content(members[1].raw, ".PKGINFO")
    assert f"pkgname = {contents.info.pkgname}\n".encode() in pkginfo
    assert contents.size == len(data)
    assert contents.file_count == 7


@pytest.mark.parametrize("name", PACKAGES)
def test_real_packages_are_refused_with_the_other_key(
    repo: Path, other: Keyring, name: str
) -> None:
    with pytest.raises(ApkSignatureError, match=r"no signature by a trusted key .*not trusted"):
        verify_package((repo / name).open("rb"), other, source=name)


def test_real_index_verifies_and_matches_the_packages(repo: Path, trusted: Keyring) -> None:
    index = read_index((repo / "APKINDEX.tar.gz").open("rb"), trusted)
    assert index.description == "ref-v2 reference repository"
    assert index.signature is not None and index.signature.key_name == VECTOR_PUBLIC
    by_name = {r.name: r for r in index.records}
    assert sorted(by_name) == ["refa", "refb"]
    for name in PACKAGES:
        data = (repo / name).read_bytes()
        record = by_name[name.split("-")[0]]
        assert record.checksum == identity(independent_members(data)[1].compressed)
        assert record.size == len(data)
        assert record.filename == name
    assert by_name["refa"].depends == ("refb",)
    assert by_name["refa"].origin == "refa"
    assert by_name["refb"].version == "2.1-r3"
    assert by_name["refb"].arch == "x86_64"


def test_read_index_records_and_verify_index_records(
    repo: Path, trusted: Keyring, other: Keyring
) -> None:
    path = repo / "APKINDEX.tar.gz"
    plain = read_index_records(path)
    assert [(r.name, r.version, r.arch, r.origin) for r in plain] == [
        ("refa", "1.0-r0", "x86_64", "refa"),
        ("refb", "2.1-r3", "x86_64", "refb"),
    ]
    assert verify_index_records(path, trusted) == plain
    with pytest.raises(ApkSignatureError, match="not trusted"):
        verify_index_records(path, other)


def test_our_apkindex_text_equals_the_real_tools(repo: Path, trusted: Keyring) -> None:
    records = []
    for name in PACKAGES:
        data = (repo / name).read_bytes()
        records.append(IndexRecord.from_package(verify_bytes(data, trusted, name)))  # type: ignore[arg-type]
    members = independent_members((repo / "APKINDEX.tar.gz").read_bytes())
    real_text = tar_file_content(members[1].raw, "APKINDEX")
    assert render_apkindex(records) == real_text
    assert parse_apkindex(real_text) == records
    assert tar_file_content(members[1].raw, "DESCRIPTION") == b"ref-v2 reference repository"


# ----------------------------------------------------------------------------- corruption


def member_of(offset: int, members: list) -> int:  # type: ignore[type-arg]
    for index, member in enumerate(members):
        if member.start <= offset < member.start + len(member.compressed):
            return index
    raise AssertionError(offset)


# gzip header bytes 4-9 (mtime, extra flags, OS) of the *signature* member are covered by
# nothing: apk ignores them too. Every other byte of a package or index is protected.
UNPROTECTED = range(4, 10)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_single_byte_corruption_of_a_package_is_refused(
    repo: Path, trusted: Keyring, name: str
) -> None:
    data = (repo / name).read_bytes()
    members = independent_members(data)
    roles = ("signature member", "control member", "data member")
    for offset in range(len(data)):
        corrupted = bytearray(data)
        corrupted[offset] ^= 0xFF
        index = member_of(offset, members)
        if index == 0 and offset in UNPROTECTED:
            verify_bytes(bytes(corrupted), trusted, name)
            continue
        with pytest.raises(ApkError) as caught:
            verify_bytes(bytes(corrupted), trusted, name)
        message = str(caught.value)
        assert message.startswith(f"{name}: "), message
        expected = roles[index]
        if index == 0 and offset < 2:
            expected = "not a gzip stream"
        assert expected in message, (offset, message)


def test_every_single_byte_corruption_of_the_index_is_refused(repo: Path, trusted: Keyring) -> None:
    data = (repo / "APKINDEX.tar.gz").read_bytes()
    members = independent_members(data)
    for offset in range(len(data)):
        corrupted = bytearray(data)
        corrupted[offset] ^= 0xFF
        index = member_of(offset, members)
        stream = io.BytesIO(bytes(corrupted))
        if index == 0 and offset in UNPROTECTED:
            read_index(stream, trusted)
            continue
        with pytest.raises(ApkError) as caught:
            read_index(stream, trusted)
        expected = "signature member" if index == 0 else "index member"
        if offset < 2:
            expected = "not a gzip stream"
        assert expected in str(caught.value), (offset, str(caught.value))


def replace_member(data: bytes, index: int, raw: bytes) -> bytes:
    members = independent_members(data)
    parts = [m.compressed for m in members]
    parts[index] = compress_member(raw)
    return b"".join(parts)


def flip_in(raw: bytes, needle: bytes) -> bytes:
    at = raw.index(needle)
    return raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1 :]


def test_altered_signature_bytes_are_refused(repo: Path, trusted: Keyring) -> None:
    data = (repo / "refa-1.0-r0.apk").read_bytes()
    sig_raw = independent_members(data)[0].raw
    signature = tar_file_content(sig_raw, ".SIGN.RSA." + VECTOR_PUBLIC)
    altered = signature_member([SignatureFile(".SIGN.RSA." + VECTOR_PUBLIC, signature[::-1])])
    tampered = altered + b"".join(m.compressed for m in independent_members(data)[1:])
    with pytest.raises(ApkSignatureError, match=r"control member: does not match signature"):
        verify_bytes(tampered, trusted, "refa")


def test_altered_control_member_is_refused(repo: Path, trusted: Keyring) -> None:
    data = (repo / "refa-1.0-r0.apk").read_bytes()
    control = independent_members(data)[1].raw
    tampered = replace_member(data, 1, control.replace(b"depend = refb", b"depend = refc"))
    with pytest.raises(ApkSignatureError, match=r"refa: control member: does not match signature"):
        verify_bytes(tampered, trusted, "refa")


def test_altered_data_member_is_refused_by_datahash(repo: Path, trusted: Keyring) -> None:
    data = (repo / "refa-1.0-r0.apk").read_bytes()
    members = independent_members(data)
    # Same files, compressed differently: every per-file checksum holds, datahash does not.
    recompressed = (
        members[0].compressed + members[1].compressed + compress_member(members[2].raw, 1)
    )
    with pytest.raises(
        ApkIntegrityError, match=r"refa: data member: SHA-256 .* does not match datahash"
    ):
        verify_bytes(recompressed, trusted, "refa")
    # A changed file is named by its checksum while streaming, before the datahash check.
    tampered = replace_member(data, 2, flip_in(members[2].raw, b"reference package refa"))
    with pytest.raises(ApkIntegrityError, match="usr/share/refa/README: SHA1 checksum mismatch"):
        verify_bytes(tampered, trusted, "refa")
    # Reading metadata only (as indexing does) still catches it through datahash.
    with pytest.raises(ApkIntegrityError, match="does not match datahash"):
        verify_package(io.BytesIO(tampered), trusted, source="refa", full_data=False)


def test_altered_file_in_a_resigned_package_fails_its_checksum(
    repo: Path, keys: Path, trusted: Keyring
) -> None:
    """With datahash and signature redone, the per-file SHA-1 still catches the change."""
    data = (repo / "refa-1.0-r0.apk").read_bytes()
    members = independent_members(data)
    data_member = compress_member(flip_in(members[2].raw, b"reference package refa"))
    control_raw = members[1].raw
    old_hash = hashlib.sha256(members[2].compressed).hexdigest().encode()
    new_hash = hashlib.sha256(data_member).hexdigest().encode()
    # Same length, so the tar header's size field stays right; fix the header checksum.
    pkginfo_at = control_raw.index(b"# Generated")
    header_at = pkginfo_at - 512
    control_raw = control_raw.replace(old_hash, new_hash)
    header = bytearray(control_raw[header_at : header_at + 512])
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % sum(header)
    control_raw = control_raw[:header_at] + bytes(header) + control_raw[header_at + 512 :]
    control = compress_member(control_raw)
    signer = LocalKeySigner(keys / VECTOR_PRIVATE, algorithm=SignatureAlgorithm.RSA)
    tampered = signature_member([signer.sign(control)]) + control + data_member
    with pytest.raises(
        ApkIntegrityError,
        match=re.escape("refa: data member: usr/share/refa/README: SHA1 checksum mismatch"),
    ):
        verify_bytes(tampered, trusted, "refa")


# ----------------------------------------------------------------------------- reproduction


def extract_vector_tree(raw_data: bytes, dest: Path) -> None:
    """Recreate the staged tree of a vector package with the standard library's tar reader."""
    for info in tar_members(raw_data):
        path = dest / info.name.rstrip("/")
        if info.isdir():
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, info.mode)
        elif info.issym():
            path.symlink_to(info.linkname)
        else:
            path.write_bytes(tar_file_content(raw_data, info.name))
            os.chmod(path, info.mode)


@pytest.mark.parametrize("name", PACKAGES)
def test_our_writer_reproduces_the_vector_layout(
    repo: Path, keys: Path, trusted: Keyring, tmp_path: Path, name: str
) -> None:
    vector = (repo / name).read_bytes()
    vector_members = independent_members(vector)
    staged = tmp_path / "staged"
    staged.mkdir()
    extract_vector_tree(vector_members[2].raw, staged)
    vector_info = PkgInfo.parse(tar_file_content(vector_members[1].raw, ".PKGINFO"))
    metadata = replace(vector_info, size=0, datahash=None)
    signer = LocalKeySigner(keys / VECTOR_PRIVATE, algorithm=SignatureAlgorithm.RSA)
    out = io.BytesIO()
    with build_package(staged, metadata, source_date_epoch=1_700_000_000) as unsigned:
        write_signed_package(out, unsigned, [signer])
    ours = out.getvalue()
    contents = verify_bytes(ours, trusted, name)
    our_members = independent_members(ours)

    # Same metadata, same installed size, a datahash of our own data member.
    assert contents.info.size == vector_info.size  # type: ignore[attr-defined]
    assert PkgInfo.parse(tar_file_content(our_members[1].raw, ".PKGINFO")) == replace(
        vector_info, datahash=hashlib.sha256(our_members[2].compressed).hexdigest()
    )
    # Data entries: identical header fields and checksums, in the same order.
    assert [header_fields(i) for i in tar_members(our_members[2].raw)] == [
        header_fields(i) for i in tar_members(vector_members[2].raw)
    ]
    # Control and signature tars are cut exactly like abuild's; the data tar ends properly.
    for member in (our_members[0], our_members[1]):
        assert len(member.raw) % 512 == 0
        assert member.raw[-512:] != bytes(512)
    assert our_members[2].raw.endswith(bytes(1024))
    # gzip -n style headers: deflate, no flags, mtime 0, max compression, Unix.
    for member in our_members:
        assert member.compressed[:10] == bytes.fromhex("1f8b0800000000000203")
    control_entries = tar_members(our_members[1].raw)
    assert [(i.name, i.mode, i.uname, i.mtime) for i in control_entries] == [
        (".PKGINFO", 0o644, "root", 1_700_000_000)
    ]


def test_vector_archives_read_by_tarfile_as_one_stream(repo: Path) -> None:
    """Cut tars concatenate into one tar stream: the property apk relies on."""
    with tarfile.open(repo / "refa-1.0-r0.apk", "r:gz") as archive:
        names = archive.getnames()
    assert names[:2] == [".SIGN.RSA." + VECTOR_PUBLIC, ".PKGINFO"]
    assert "usr/bin/refa" in names
    assert zlib.decompress(
        independent_members((repo / "refa-1.0-r0.apk").read_bytes())[2].compressed, 31
    )
