"""Index compression in cached pieces: one valid gzip member, identical with or without cache."""

from __future__ import annotations

import gzip
import os
import random
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from apkfarm.apk.segmented_gzip import (
    PIECE_RULE,
    decode_cache,
    encode_cache,
    ends_piece,
    record_pieces,
    segmented_member,
)


def records(count: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    return b"".join(
        b"C:Q1%s=\nP:pkg%05d\nV:1.%d-r0\nT:%s\n\n"
        % (rng.randbytes(20).hex().encode(), i, i, rng.randbytes(30).hex().encode())
        for i in range(count)
    )


def test_pieces_cover_the_text_and_cut_at_record_boundaries() -> None:
    text = records(3000)
    pieces = record_pieces(text)
    assert b"".join(pieces) == text
    assert len(pieces) > 3  # ~256 records per piece
    assert all(piece.endswith(b"\n\n") and piece.startswith(b"C:") for piece in pieces)
    assert record_pieces(b"") == []
    assert (
        b"".join(record_pieces(text + b"C:tail-without-separator"))
        == text + b"C:tail-without-separator"
    )


def test_member_is_standard_gzip_and_independent_of_the_cache() -> None:
    text = records(3000)
    pieces = [b"prefix", *record_pieces(text), bytes(1024)]
    cache: dict[bytes, bytes] = {}
    cold = segmented_member(pieces, level=9, cache=cache)
    assert segmented_member(pieces, level=9) == cold
    assert segmented_member(pieces, level=9, cache=cache) == cold
    expected = b"prefix" + text + bytes(1024)
    assert zlib.decompress(cold, 31) == expected  # CRC and length checked by zlib
    assert gzip.decompress(cold) == expected
    assert cold[:10] == bytes.fromhex("1f8b0800000000000003")
    # Close to what one stream would give (pieces restart the window).
    assert len(cold) < 1.05 * len(gzip.compress(expected, 9))


def test_one_change_recompresses_one_piece_and_prunes_the_cache() -> None:
    text = records(3000)
    cache: dict[bytes, bytes] = {}
    segmented_member(record_pieces(text), level=9, cache=cache)
    before = dict(cache)
    at = text.index(b"C:", len(text) // 2)
    changed = text[:at] + b"C:Q1new=\nP:inserted\nV:1-r0\n\n" + text[at:]
    member = segmented_member(record_pieces(changed), level=9, cache=cache)
    assert zlib.decompress(member, 31) == changed
    new_keys = set(cache) - set(before)
    assert len(new_keys) == 1  # only the piece holding the new record was compressed
    assert len(set(before) - set(cache)) == 1  # and the piece it replaced was dropped


def test_cache_file_round_trip_drops_damaged_entries() -> None:
    cache: dict[bytes, bytes] = {}
    segmented_member(record_pieces(records(2000)), level=9, cache=cache)
    data = encode_cache(cache)
    assert decode_cache(data) == cache
    damaged = bytearray(data)
    damaged[-3] ^= 0xFF  # inside the last entry's compressed bytes
    survivors = decode_cache(bytes(damaged))
    assert len(survivors) == len(cache) - 1
    assert all(cache[key] == value for key, value in survivors.items())
    assert decode_cache(b"not a cache") == {}
    assert decode_cache(data[:-5]) == {k: v for k, v in list(cache.items())[:-1]}


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=6), st.integers(1, 9))
def test_property_any_pieces_make_one_member(pieces: list[bytes], level: int) -> None:
    member = segmented_member(pieces, level=level, cache={})
    assert zlib.decompress(member, 31) == b"".join(pieces)


def test_large_random_pieces() -> None:
    pieces = [os.urandom(70_000) for _ in range(3)]
    assert gzip.decompress(segmented_member(pieces, level=6, cache={})) == b"".join(pieces)


def test_pieces_end_exactly_after_the_records_that_end_pieces() -> None:
    # What the index state relies on when it keeps, per record, whether a piece ends there.
    pieces = record_pieces(records(3000))
    assert PIECE_RULE
    for piece in pieces[:-1]:
        *inner, last = piece[:-2].split(b"\n\n")
        assert ends_piece(last)
        assert not any(ends_piece(record) for record in inner)
