"""The farm's blob store: streamed objects in S3 or a local directory (see ``api``)."""

from apkfarm.blobs.api import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    Digest,
    PutResult,
    Readable,
)
from apkfarm.blobs.keys import InvalidBlobKey, validate_key
from apkfarm.blobs.local import LocalBlobStore

__all__ = [
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "BlobStoreError",
    "Digest",
    "InvalidBlobKey",
    "LocalBlobStore",
    "PutResult",
    "Readable",
    "validate_key",
]
