"""Errors of the apk format code; each message names the file, the member and what is wrong."""

from __future__ import annotations

from apkfarm.errors import ApkfarmError


class ApkError(ApkfarmError):
    """Base class for every refusal of the apk format code."""


class ApkFormatError(ApkError):
    """The bytes are not a well-formed v2 package or index."""


class ApkLimitError(ApkFormatError):
    """A size or count limit was exceeded (gzip bomb, oversized member or field)."""


class ApkIntegrityError(ApkError):
    """A checksum does not match: ``datahash``, a per-file checksum, a gzip CRC."""


class ApkSignatureError(ApkError):
    """No signature, an unknown signature type, an untrusted key or a bad signature."""


class PackageInputError(ApkError):
    """The staged tree or the metadata cannot be packaged as given."""


class ExtractionError(ApkError):
    """Extraction refused an entry (path escape, special file) or could not write it."""


class ApkKeyError(ApkError):
    """A key file is missing, unreadable or not an RSA key."""
