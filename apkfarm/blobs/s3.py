"""A blob store on any S3-compatible server (MinIO, SeaweedFS, AWS), via the minio SDK.

Uploads stream: an object larger than ``part_size`` goes up as a multipart
upload, reading one part at a time (the SDK keeps at most
``parallel_uploads`` parts in flight), so memory stays flat in object size.
S3 itself makes a PUT or a completed multipart upload visible atomically.

``put_if_absent`` sends ``If-None-Match: *`` with the single PUT or with the
CompleteMultipartUpload request; the server refuses (412) if the key exists,
so two racing writers cannot both win. The minio SDK (7.2) has no parameter
for conditional writes, so this module calls its request-level helpers for
those two requests; everything else uses the public API.

The secret key never appears in ``repr``, logs or error messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, suppress
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from minio import Minio
from minio.commonconfig import ComposeSource, CopySource
from minio.error import S3Error
from minio.helpers import DictType, md5sum_hash
from minio.xml import Element, SubElement, getbytes
from urllib3.exceptions import HTTPError

from apkfarm.blobs.api import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    HashingReader,
    PutResult,
    Readable,
    as_reader,
)
from apkfarm.blobs.keys import InvalidBlobKey, validate_key, validate_prefix

MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = 8 * 1024 * 1024
# Single-request copies are limited to 5 GiB by S3; larger ones are composed.
MAX_SINGLE_COPY = 5 * 1024**3
_NOT_FOUND = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}
_EXISTS = {"PreconditionFailed"}


class S3BlobStore(BlobStore):
    """A ``BlobStore`` in one bucket (optionally under a key prefix) of an S3 server."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = True,
        region: str | None = None,
        prefix: str = "",
        part_size: int = DEFAULT_PART_SIZE,
        parallel_uploads: int = 2,
        create_bucket: bool = True,
    ) -> None:
        """``endpoint`` is ``host:port`` (``http://``/``https://`` also accepted, setting ``secure``).

        ``prefix`` (``""`` or ending in ``/``) puts every key of this store
        under it, so that several farms or test runs can share a bucket.
        """
        host, secure = _parse_endpoint(endpoint, secure)
        if prefix and (not prefix.endswith("/") or validate_prefix(prefix) != prefix):
            raise InvalidBlobKey(f"invalid store prefix {prefix!r}: it must end with '/'")
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self.endpoint = host
        self.bucket = bucket
        self.secure = secure
        self.region = region
        self.prefix = prefix
        self.part_size = part_size
        self.parallel_uploads = parallel_uploads
        self._client = Minio(
            host, access_key=access_key, secret_key=secret_key, secure=secure, region=region
        )
        if create_bucket:
            self.ensure_bucket()

    def __repr__(self) -> str:
        scheme = "https" if self.secure else "http"
        return (
            f"S3BlobStore({scheme}://{self.endpoint}, bucket={self.bucket!r}, "
            f"prefix={self.prefix!r})"
        )

    def _where(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint}"

    def _name(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _error(self, exc: Exception, op: str, key: str | None = None) -> BlobStoreError:
        what = f"blob {key!r}" if key is not None else self._where()
        if isinstance(exc, S3Error):
            if exc.code in _NOT_FOUND and key is not None:
                return BlobNotFound(f"blob {key!r} not found in {self._where()}")
            return BlobStoreError(f"S3 {op} of {what} failed: {exc.code}: {exc.message}")
        if isinstance(exc, HTTPError | OSError):
            return BlobStoreError(f"S3 {op} of {what}: cannot reach {self.endpoint}: {exc}")
        return BlobStoreError(f"S3 {op} of {what} failed: {type(exc).__name__}: {exc}")

    # --- bucket -----------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (idempotent, race-safe)."""
        try:
            if self._client.bucket_exists(self.bucket):
                return
            self._client.make_bucket(self.bucket, location=self.region)
        except S3Error as exc:
            if exc.code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return
            raise self._error(exc, "bucket creation") from exc
        except (HTTPError, OSError, ValueError) as exc:
            raise self._error(exc, "bucket creation") from exc

    def check(self) -> None:
        try:
            found = self._client.bucket_exists(self.bucket)
        except (S3Error, HTTPError, OSError, ValueError) as exc:
            raise self._error(exc, "health check") from exc
        if not found:
            raise BlobStoreError(f"{self._where()} does not exist")

    # --- writing ----------------------------------------------------------

    def put_stream(
        self,
        key: str,
        stream: Readable,
        length: int | None = None,
        *,
        content_type: str = "application/octet-stream",
    ) -> PutResult:
        name = self._name(key)
        reader = HashingReader(stream, key=key, length=length)
        try:
            result = self._client.put_object(
                self.bucket,
                name,
                reader,  # type: ignore[arg-type]
                length if length is not None else -1,
                content_type=content_type,
                part_size=self.part_size,
                num_parallel_uploads=self.parallel_uploads,
            )
        except BlobStoreError:
            raise
        except (S3Error, HTTPError, OSError, ValueError) as exc:
            raise self._error(exc, "upload", key) from exc
        return PutResult(key, reader.size, reader.sha256.hexdigest(), _etag(result.etag))

    def put_if_absent(
        self,
        key: str,
        data: bytes | Readable,
        length: int | None = None,
        *,
        content_type: str = "application/octet-stream",
    ) -> bool:
        name = self._name(key)
        if self.exists(key):
            return False
        stream, known = as_reader(data)
        reader = HashingReader(stream, key=key, length=known if length is None else length)
        headers: DictType = {"Content-Type": content_type, "If-None-Match": "*"}
        try:
            first = _read_full(reader, self.part_size)
            second = _read_full(reader, self.part_size) if len(first) == self.part_size else b""
            if not second:
                # Fits one request: a conditional PUT.
                self._client._put_object(self.bucket, name, first, headers=headers)
                return True
            return self._conditional_multipart(name, reader, [first, second], headers)
        except S3Error as exc:
            if exc.code in _EXISTS:
                return False
            raise self._error(exc, "conditional upload", key) from exc
        except BlobStoreError:
            raise
        except (HTTPError, OSError, ValueError) as exc:
            raise self._error(exc, "conditional upload", key) from exc

    def _conditional_multipart(
        self, name: str, reader: HashingReader, parts: list[bytes], headers: DictType
    ) -> bool:
        client = self._client
        upload_id = client._create_multipart_upload(
            self.bucket, name, {"Content-Type": headers["Content-Type"]}
        )
        etags: list[str] = []
        try:
            pending = list(parts)
            while pending:
                part = pending.pop(0)
                etags.append(
                    client._upload_part(self.bucket, name, part, None, upload_id, len(etags) + 1)
                )
                if not pending:
                    following = _read_full(reader, self.part_size)
                    if following:
                        pending.append(following)
            body = _complete_multipart_body(etags)
            client._execute(
                "POST",
                self.bucket,
                name,
                body=body,
                headers={
                    "Content-Type": "application/xml",
                    "Content-MD5": md5sum_hash(body) or "",
                    "If-None-Match": "*",
                },
                query_params={"uploadId": upload_id},
            )
        except BaseException:
            # Abort so that no orphaned parts stay behind (also when the key existed).
            with suppress(S3Error, HTTPError, OSError):
                client._abort_multipart_upload(self.bucket, name, upload_id)
            raise
        return True

    def copy(self, source: str, destination: str) -> BlobInfo:
        src, dst = self._name(source), self._name(destination)
        size = self.stat(source).size
        try:
            if size <= MAX_SINGLE_COPY:
                self._client.copy_object(self.bucket, dst, CopySource(self.bucket, src))
            else:
                self._client.compose_object(self.bucket, dst, [ComposeSource(self.bucket, src)])
        except (S3Error, HTTPError, OSError, ValueError) as exc:
            raise self._error(exc, f"copy to {destination!r}", source) from exc
        return self.stat(destination)

    def delete(self, key: str) -> None:
        name = self._name(key)
        try:
            self._client.remove_object(self.bucket, name)
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                return
            raise self._error(exc, "delete", key) from exc
        except (HTTPError, OSError) as exc:
            raise self._error(exc, "delete", key) from exc

    # --- reading ----------------------------------------------------------

    def open(self, key: str) -> AbstractContextManager[Readable]:
        name = self._name(key)
        try:
            response = self._client.get_object(self.bucket, name)
        except (S3Error, HTTPError, OSError, ValueError) as exc:
            raise self._error(exc, "download", key) from exc
        return _ResponseStream(response, self, key)

    def stat(self, key: str) -> BlobInfo:
        name = self._name(key)
        try:
            found = self._client.stat_object(self.bucket, name)
        except (S3Error, HTTPError, OSError, ValueError) as exc:
            raise self._error(exc, "stat", key) from exc
        return BlobInfo(
            key=key,
            size=int(found.size or 0),
            etag=_etag(found.etag),
            last_modified=_utc(found.last_modified),
        )

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        validate_prefix(prefix)
        try:
            for obj in self._client.list_objects(
                self.bucket, prefix=self.prefix + prefix, recursive=True
            ):
                name = obj.object_name or ""
                if obj.is_dir or not name.startswith(self.prefix):
                    continue
                key = name[len(self.prefix) :]
                try:
                    validate_key(key)
                except InvalidBlobKey:
                    continue  # not written through a store
                yield BlobInfo(
                    key=key,
                    size=int(obj.size or 0),
                    etag=_etag(obj.etag),
                    last_modified=_utc(obj.last_modified),
                )
        except (S3Error, HTTPError, OSError, ValueError) as exc:
            raise self._error(exc, f"listing of prefix {prefix!r} in") from exc


class _ResponseStream:
    """An S3 GET response as a ``Readable`` context manager that returns its connection."""

    def __init__(self, response: Any, store: S3BlobStore, key: str) -> None:
        self._response = response
        self._store = store
        self._key = key

    def read(self, size: int = -1, /) -> bytes:
        try:
            data: bytes = self._response.read(None if size < 0 else size)
        except (HTTPError, OSError) as exc:
            raise self._store._error(exc, "download", self._key) from exc
        return data

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._response.close()
        self._response.release_conn()


def _parse_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    if "://" not in endpoint:
        return endpoint, secure
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or parts.path not in ("", "/") or not parts.netloc:
        raise ValueError(f"S3 endpoint {endpoint!r} must be host:port or http(s)://host:port")
    return parts.netloc, parts.scheme == "https"


def _read_full(reader: Readable, size: int) -> bytes:
    """Read exactly ``size`` bytes unless the stream ends first (short reads are retried)."""
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = reader.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _complete_multipart_body(etags: list[str]) -> bytes:
    element = Element("CompleteMultipartUpload")
    for number, etag in enumerate(etags, start=1):
        part = SubElement(element, "Part")
        SubElement(part, "PartNumber", str(number))
        SubElement(part, "ETag", f'"{etag}"')
    body: bytes = getbytes(element)
    return body


def _etag(value: str | None) -> str:
    return (value or "").strip('"')


def _utc(value: datetime | None) -> datetime:
    if value is None:
        return datetime.fromtimestamp(0, UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
