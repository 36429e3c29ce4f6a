"""One gzip member compressed in independent pieces, so unchanged pieces are never recompressed.

Each piece is deflated by a fresh compressor and ended with a sync flush (an
empty stored block: byte-aligned, not final); the last piece ends the stream.
A fresh compressor never refers back into earlier pieces, so the
concatenation is one valid deflate stream (the technique pigz uses); gzip's
CRC-32 and length cover the whole uncompressed content as usual. Any gzip
reader — zlib, apk, Python's ``gzip`` — reads the result as one member.

The index uses this: ``APKINDEX`` is cut into content-defined pieces at
record boundaries (a record whose first bytes hash to 0 mod 256 ends a
piece), so adding one package changes one piece of about 256 records, and
the compressed bytes of all the others come from a cache. The bytes depend
only on the content, never on what the cache held.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import MutableMapping, Sequence

# Pieces end after a record whose first bytes (its unique C: line) hash to 0 mod this:
# about 256 records (~64 KiB) per piece, which costs ~2% in size over one stream.
_PIECE_MASK = 0xFF
_RECORD_HEAD = 40
# Names the rule above, for whoever stores which records end pieces (the index state):
# change it whenever the rule changes.
PIECE_RULE = f"crc32-{_RECORD_HEAD}-{_PIECE_MASK:x}"
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"  # deflate, no name, mtime 0, Unix

SegmentCache = MutableMapping[bytes, bytes]


def ends_piece(record: bytes) -> bool:
    """True when a piece ends after ``record`` (its lines, without the blank line after it)."""
    return zlib.crc32(record[:_RECORD_HEAD]) & _PIECE_MASK == 0


def record_pieces(text: bytes) -> list[bytes]:
    """Cut blank-line-separated records into pieces at content-defined record boundaries."""
    parts = text.split(b"\n\n")  # the last part is what follows the final separator
    cuts = [i for i, record in enumerate(parts[:-1]) if ends_piece(record)]
    pieces: list[bytes] = []
    start = 0
    for cut in cuts:
        pieces.append(b"\n\n".join(parts[start : cut + 1]) + b"\n\n")
        start = cut + 1
    rest = b"\n\n".join(parts[start:])
    if rest:
        pieces.append(rest)
    return pieces


def _key(piece: bytes, level: int) -> bytes:
    # SHA-256: with the CPU's SHA instructions twice as fast as BLAKE2b here.
    return bytes([level]) + hashlib.sha256(piece).digest()


def _deflate(piece: bytes, level: int, *, final: bool) -> bytes:
    deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflate.compress(piece) + deflate.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


def segmented_member(
    pieces: Sequence[bytes], *, level: int, cache: SegmentCache | None = None
) -> bytes:
    """One gzip member holding ``b"".join(pieces)``; non-final pieces are cached by content.

    When a cache is given, entries for pieces not used this time are removed
    from it, so it never grows beyond one index's worth of pieces.
    """
    used: set[bytes] = set()
    out = [_GZIP_HEADER]
    crc = 0
    size = 0
    last = len(pieces) - 1
    for index, piece in enumerate(pieces):
        crc = zlib.crc32(piece, crc)
        size += len(piece)
        if index == last:
            out.append(_deflate(piece, level, final=True))
            continue
        if cache is None:
            out.append(_deflate(piece, level, final=False))
            continue
        key = _key(piece, level)
        used.add(key)
        compressed = cache.get(key)
        if compressed is None:
            compressed = cache[key] = _deflate(piece, level, final=False)
        out.append(compressed)
    if not pieces:
        out.append(_deflate(b"", level, final=True))
    out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    if cache is not None:
        for stale in [key for key in cache if key not in used]:
            del cache[stale]
    return b"".join(out)


_CACHE_MAGIC = b"apkfarm-segments 2\n"  # 2: SHA-256 keys and digests
_ENTRY_HEAD = struct.Struct("<BI16s")  # key length, value length, digest of the value


def _value_digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()[:16]  # SHA-256: see _key


def encode_cache(cache: SegmentCache) -> bytes:
    """A flat file of the cache; each entry carries a digest of its compressed bytes."""
    parts = [_CACHE_MAGIC]
    for key, value in cache.items():
        parts.append(_ENTRY_HEAD.pack(len(key), len(value), _value_digest(value)) + key + value)
    return b"".join(parts)


def decode_cache(data: bytes) -> dict[bytes, bytes]:
    """Inverse of ``encode_cache``. Damaged entries are dropped: a cache may only miss,
    never hand back wrong bytes."""
    if not data.startswith(_CACHE_MAGIC):
        return {}
    cache: dict[bytes, bytes] = {}
    pos = len(_CACHE_MAGIC)
    while pos + _ENTRY_HEAD.size <= len(data):
        key_length, value_length, digest = _ENTRY_HEAD.unpack_from(data, pos)
        pos += _ENTRY_HEAD.size
        key = data[pos : pos + key_length]
        value = data[pos + key_length : pos + key_length + value_length]
        pos += key_length + value_length
        intact = len(key) == key_length and len(value) == value_length
        if intact and _value_digest(value) == digest:
            cache[key] = value
    return cache
