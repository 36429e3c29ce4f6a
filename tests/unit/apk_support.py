"""Helpers for the apk tests: independent parsing of the v2 layout and hand-made packages.

The independent helpers use only zlib, tarfile and hashlib, never
``apkfarm.apk``, so that tests compare our code against a second reading.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from apkfarm.apk.assemble import signature_member
from apkfarm.apk.gzip_members import compress_member
from apkfarm.apk.signing import SignatureFile, Signer
from apkfarm.apk.tar import END_OF_ARCHIVE, file_entry

VECTOR_PUBLIC = "ref@example.org-0001.rsa.pub"
VECTOR_PRIVATE = "ref@example.org-0001.rsa"
OTHER_PUBLIC = "other@example.org-0002.rsa.pub"


@dataclass(frozen=True)
class Member:
    start: int
    compressed: bytes
    raw: bytes


def independent_members(data: bytes) -> list[Member]:
    """Split concatenated gzip members by walking zlib.decompressobj over the bytes."""
    members = []
    pos = 0
    while pos < len(data):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        raw = inflater.decompress(data[pos:])
        assert inflater.eof, "member does not end"
        end = len(data) - len(inflater.unused_data)
        members.append(Member(pos, data[pos:end], raw))
        pos = end
    return members


def identity(control_compressed: bytes) -> str:
    return "Q1" + base64.b64encode(hashlib.sha1(control_compressed).digest()).decode()


def tar_members(raw: bytes) -> list[tarfile.TarInfo]:
    """Entries of a (possibly cut) tar with the standard library's reader."""
    with tarfile.open(fileobj=io.BytesIO(raw + END_OF_ARCHIVE), mode="r:") as archive:
        return archive.getmembers()


def tar_file_content(raw: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(raw + END_OF_ARCHIVE), mode="r:") as archive:
        extracted = archive.extractfile(name)
        assert extracted is not None
        return extracted.read()


def header_fields(info: tarfile.TarInfo) -> tuple[object, ...]:
    """What apk reads from a header, for structural comparisons."""
    return (
        info.name,
        info.type,
        info.mode,
        info.uid,
        info.gid,
        info.uname,
        info.gname,
        info.mtime,
        info.size,
        info.linkname,
        info.pax_headers.get("APK-TOOLS.checksum.SHA1"),
    )


def pkginfo_text(**fields: str | list[str]) -> bytes:
    lines = ["# hand-made for a test"]
    for key, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key} = {item}")
    return ("\n".join(lines) + "\n").encode()


def craft_package(
    data_tar: bytes,
    signers: list[Signer] | None,
    *,
    pkgname: str = "crafted",
    pkgver: str = "1.0-r0",
    extra_control: bytes = b"",
    datahash: str | None = None,
    signatures: list[SignatureFile] | None = None,
) -> bytes:
    """A package whose data tar (with its end-of-archive) is given as raw bytes."""
    data = compress_member(data_tar)
    info = pkginfo_text(
        pkgname=pkgname,
        pkgver=pkgver,
        arch="x86_64",
        size="0",
        datahash=datahash or hashlib.sha256(data).hexdigest(),
    )
    control = compress_member(file_entry(b".PKGINFO", info, mode=0o644, mtime=0) + extra_control)
    head = b""
    if signatures is not None:
        head = signature_member(signatures)
    elif signers:
        head = signature_member([s.sign(control) for s in signers])
    return head + control + data


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
