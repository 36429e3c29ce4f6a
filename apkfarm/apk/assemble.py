"""Assembly: a signature member in front of a control and a data member makes a ``.apk``.

The signature member is a cut tar (no end-of-archive blocks) of one or more
``.SIGN.*`` files; several signatures let a repository rotate keys (clients
use the first one by a key they trust). Its tar entries have mtime 0, so the
same signatures always give the same bytes.

A builder hands packages on unsigned (control + data members only).
``split_unsigned_package`` reads just the control member off such a stream,
so a signer process receives nothing else; ``assemble_from_unsigned`` then
writes the signed package by copying the rest of the stream.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from apkfarm.apk.errors import ApkFormatError, ApkLimitError, ApkSignatureError
from apkfarm.apk.gzip_members import GZIP_MAGIC, compress_member
from apkfarm.apk.package import UnsignedPackage
from apkfarm.apk.signing import SignatureFile, Signer, parse_signature_name
from apkfarm.apk.tar import file_entry

_COPY_CHUNK = 1 << 20
MAX_CONTROL_MEMBER = 16 << 20


def check_signature_files(signatures: Sequence[SignatureFile]) -> None:
    """At least one signature, each of a known type, no name twice."""
    if not signatures:
        raise ApkSignatureError("no signatures to write")
    seen: set[str] = set()
    for signature in signatures:
        parse_signature_name(signature.name)
        if not signature.signature:
            raise ApkSignatureError(f"{signature.name}: empty signature")
        if signature.name in seen:
            raise ApkSignatureError(f"{signature.name}: given twice")
        seen.add(signature.name)


def signature_member(signatures: Sequence[SignatureFile]) -> bytes:
    """The compressed signature member holding every given signature file, in order."""
    check_signature_files(signatures)
    tar = b"".join(
        file_entry(s.name.encode("utf-8"), s.signature, mode=0o644, mtime=0) for s in signatures
    )
    return compress_member(tar)


def sign_member(member: bytes, signers: Sequence[Signer]) -> list[SignatureFile]:
    """Ask every signer to sign ``member`` (key rotation: old and new key both sign)."""
    if not signers:
        raise ApkSignatureError("no signer given")
    signatures = [signer.sign(member) for signer in signers]
    check_signature_files(signatures)
    return signatures


def write_package(
    out: BinaryIO,
    signatures: Sequence[SignatureFile],
    control_member: bytes,
    data_chunks: Iterable[bytes],
) -> int:
    """Write signature, control and data members; returns the package size in bytes."""
    head = signature_member(signatures)
    out.write(head)
    out.write(control_member)
    size = len(head) + len(control_member)
    for chunk in data_chunks:
        out.write(chunk)
        size += len(chunk)
    return size


def write_signed_package(
    out: BinaryIO, unsigned: UnsignedPackage, signers: Sequence[Signer]
) -> int:
    """Sign the control member with every signer and write the whole ``.apk``."""
    signatures = sign_member(unsigned.control_member, signers)
    return write_package(out, signatures, unsigned.control_member, unsigned.data.chunks())


@dataclass(frozen=True)
class UnsignedSplit:
    """The control member of an unsigned package, and the bytes read past it."""

    control_member: bytes
    data_head: bytes  # the start of the data member, already read from the stream


def split_unsigned_package(
    stream: BinaryIO, *, limit: int = MAX_CONTROL_MEMBER, source: str = "unsigned package"
) -> UnsignedSplit:
    """Read only the first gzip member (the control member) of an unsigned package."""
    inflater = zlib.decompressobj(31)
    taken = bytearray()
    head = stream.read(2)
    if head != GZIP_MAGIC:
        raise ApkFormatError(f"{source}: not a gzip stream")
    pending = head
    inflated = 0
    while not inflater.eof:
        if not pending:
            pending = stream.read(1 << 16)
            if not pending:
                raise ApkFormatError(f"{source}: control member: truncated")
        try:
            inflated += len(inflater.decompress(pending, 1 << 16))
        except zlib.error as error:
            raise ApkFormatError(f"{source}: control member: corrupt gzip data ({error})") from None
        if inflated > limit:
            raise ApkLimitError(f"{source}: control member: inflates beyond {limit} bytes")
        rest = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
        taken += pending[: len(pending) - len(rest)]
        pending = rest
        if len(taken) > limit:
            raise ApkLimitError(f"{source}: control member: larger than {limit} bytes")
    return UnsignedSplit(bytes(taken), bytes(pending))


def assemble_from_unsigned(
    out: BinaryIO,
    signatures: Sequence[SignatureFile],
    split: UnsignedSplit,
    rest: BinaryIO,
) -> int:
    """Write the signed package: signatures, the split-off control member, then the data."""

    def data_chunks() -> Iterable[bytes]:
        if split.data_head:
            yield split.data_head
        while chunk := rest.read(_COPY_CHUNK):
            yield chunk

    return write_package(out, signatures, split.control_member, data_chunks())
