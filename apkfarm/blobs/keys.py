"""Blob keys: which names a store accepts, checked the same way by every store.

A key is a ``/``-separated path of segments, as in S3. Keys are built from
job data (package names, file names from builds), so anything that could
escape a directory or confuse a tool is refused before it reaches a store:
``..`` and ``.`` segments, a leading or trailing ``/``, empty segments,
backslashes, control characters, and keys or segments longer than S3 and
POSIX file systems allow. The error names the key.
"""

from __future__ import annotations

import unicodedata

from apkfarm.errors import ApkfarmError

# S3 allows 1024 bytes of UTF-8 per key; POSIX file names have 255 bytes.
MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 255
# The local store keeps its temporary files here; no key may start with it.
RESERVED_FIRST_SEGMENT = ".apkfarm-tmp"


class InvalidBlobKey(ApkfarmError):
    """A key (or prefix) that no store accepts."""


def _refuse(key: object, why: str) -> InvalidBlobKey:
    return InvalidBlobKey(f"invalid blob key {key!r}: {why}")


def _check_characters(key: str) -> None:
    for char in key:
        if char == "\\":
            raise _refuse(key, "backslashes are not allowed")
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise _refuse(key, f"control or unassigned character U+{ord(char):04X}")


def _check_segment(key: str, segment: str) -> None:
    if segment == "":
        raise _refuse(key, "empty path segment (leading, trailing or doubled '/')")
    if segment in (".", ".."):
        raise _refuse(key, f"'{segment}' segments are not allowed")
    if len(segment.encode()) > MAX_SEGMENT_BYTES:
        raise _refuse(key, f"a segment is longer than {MAX_SEGMENT_BYTES} bytes")


def validate_key(key: str) -> str:
    """Return ``key`` if every store accepts it, else raise ``InvalidBlobKey``."""
    if not isinstance(key, str):
        raise _refuse(key, "a key is a string")
    if key == "":
        raise _refuse(key, "the key is empty")
    if len(key.encode("utf-8", errors="surrogatepass")) > MAX_KEY_BYTES:
        raise _refuse(key[:64] + "...", f"longer than {MAX_KEY_BYTES} bytes")
    _check_characters(key)
    segments = key.split("/")
    for segment in segments:
        _check_segment(key, segment)
    if segments[0] == RESERVED_FIRST_SEGMENT:
        raise _refuse(key, f"{RESERVED_FIRST_SEGMENT!r} is reserved for the store's own use")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: ``""``, or the start of a key (it may end inside a segment or in ``/``)."""
    if not isinstance(prefix, str):
        raise _refuse(prefix, "a prefix is a string")
    if prefix == "":
        return prefix
    if len(prefix.encode("utf-8", errors="surrogatepass")) > MAX_KEY_BYTES:
        raise _refuse(prefix[:64] + "...", f"longer than {MAX_KEY_BYTES} bytes")
    _check_characters(prefix)
    segments = prefix.split("/")
    complete = segments[:-1] if segments[-1] == "" else segments
    if not complete:
        raise _refuse(prefix, "a prefix cannot start with '/'")
    for segment in complete[:-1]:
        _check_segment(prefix, segment)
    last = complete[-1]
    # The last segment may be partial, but never a way up or out.
    if last in ("", ".", ".."):
        raise _refuse(prefix, f"'{last}' is not a usable prefix segment")
    return prefix


def segment(value: str, what: str) -> str:
    """Validate one segment taken from data (a job id, a file name) for use in a key."""
    if not isinstance(value, str) or "/" in value:
        raise InvalidBlobKey(f"invalid {what} {value!r} for a blob key: it must not contain '/'")
    try:
        _check_characters(value)
        _check_segment(value, value)
    except InvalidBlobKey as exc:
        raise InvalidBlobKey(f"invalid {what} {value!r} for a blob key: {exc}") from None
    return value
