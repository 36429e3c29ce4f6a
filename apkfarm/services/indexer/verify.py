"""Downloading a staged package and proving it is what its job says it is.

The package is streamed from the artifacts store into a private temporary
file while its SHA-256 is computed; size and digest must equal the event's;
then the file is read with the farm's keyring (signature, control member,
data hash) and its ``.PKGINFO`` is compared with the event and the template.
Only that file — the bytes that were checked — is later copied into the
repository, so the staged object being replaced meanwhile changes nothing.

The keyring comes from the signer (``ListKeys``) and is fetched again when a
package is signed by a key it does not hold yet (after a key rotation), at
most once per ``refresh_seconds``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from apkfarm.apk.errors import ApkError, ApkSignatureError
from apkfarm.apk.index import IndexRecord
from apkfarm.apk.index_state import FileStamp, StateEntry
from apkfarm.apk.keys import Keyring
from apkfarm.apk.reader import verify_package
from apkfarm.blobs import BlobNotFound, BlobStore
from apkfarm.blobs.api import CHUNK_SIZE, HashingReader
from apkfarm.services.indexer.checks import (
    Rejected,
    StagedFile,
    StagedJob,
    check_contents,
    check_download,
)
from apkfarm.services.signer.client import SignerClient


class FarmKeyring:
    """The farm's public keys as the signer publishes them, cached."""

    def __init__(self, signer: SignerClient, *, refresh_seconds: float = 10.0) -> None:
        self.signer = signer
        self.refresh_seconds = refresh_seconds
        self._keyring: Keyring | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> Keyring:
        """The cached keyring, fetched on first use (``SignerUnavailable`` if it cannot be)."""
        if self._keyring is None:
            async with self._lock:
                if self._keyring is None:
                    await self._fetch()
        assert self._keyring is not None
        return self._keyring

    async def refresh(self) -> Keyring:
        """Fetch again unless the cached keyring is younger than ``refresh_seconds``."""
        async with self._lock:
            if self._keyring is None or time.monotonic() - self._fetched_at >= self.refresh_seconds:
                await self._fetch()
        assert self._keyring is not None
        return self._keyring

    async def _fetch(self) -> None:
        self._keyring = await self.signer.public_keys()
        self._fetched_at = time.monotonic()


@dataclass(frozen=True)
class VerifiedFile:
    """A package ready to publish: its checked bytes on disk and its index entry.

    ``path`` is None when the repository already holds exactly these bytes.
    """

    staged: StagedFile
    entry: StateEntry | None
    path: Path | None


@dataclass(frozen=True)
class VerifiedJob:
    job: StagedJob
    files: tuple[VerifiedFile, ...]


def download(store: BlobStore, staged: StagedFile, destination: Path, where: str) -> None:
    """Stream the staged object to ``destination``; its size and digest must be the event's."""
    try:
        stored_size = store.stat(staged.blob_key).size
        if stored_size != staged.size:
            # Refused before downloading: the event's size bounds what is read.
            raise Rejected(
                "size_mismatch",
                f"{where}: {stored_size} bytes in the store, the event says {staged.size}",
            )
        with store.open(staged.blob_key) as stream, destination.open("xb") as out:
            reader = HashingReader(stream, key=staged.blob_key, length=staged.size)
            while chunk := reader.read(CHUNK_SIZE):
                out.write(chunk)
    except BlobNotFound:
        raise Rejected("missing_blob", f"{where}: {staged.blob_key} is not in the store") from None
    check_download(staged, reader.size, reader.sha256.hexdigest(), where)


def read_entry(
    job: StagedJob, staged: StagedFile, path: Path, keyring: Keyring, where: str
) -> StateEntry:
    """Verify the downloaded package with ``keyring`` and make its index entry."""
    try:
        with path.open("rb") as stream:
            contents = verify_package(stream, keyring, source=where, full_data=False)
        check_contents(job, staged, contents)
        record = IndexRecord.from_package(contents, staged.size)
        return StateEntry.from_record(
            staged.file_name, FileStamp(staged.size, staged.sha256), record
        )
    except ApkSignatureError as error:
        raise Rejected("signature", str(error)) from None
    except ApkError as error:
        raise Rejected("malformed_package", str(error)) from None


class PackageVerifier:
    """Checks staged packages from ``artifacts`` into files under a work directory."""

    def __init__(self, artifacts: BlobStore, keyring: FarmKeyring, *, concurrency: int = 4) -> None:
        self.artifacts = artifacts
        self.keyring = keyring
        self._slots = asyncio.Semaphore(concurrency)
        # Work file names: one job may be delivered twice in one batch.
        self._serial = itertools.count(1)

    async def verify_job(
        self, job: StagedJob, work_dir: Path, *, published: Callable[[str, str], bool]
    ) -> VerifiedJob:
        """Every package of ``job``, checked; ``published(file, sha256)`` tells the files the
        repository already holds with those bytes (they are neither read nor copied).

        Raises ``Rejected`` for the first package that fails a check; anything
        else (store or signer trouble) is worth retrying.
        """
        files = await asyncio.gather(
            *(self._verify_file(job, staged, work_dir, published) for staged in job.files)
        )
        return VerifiedJob(job, tuple(files))

    async def _verify_file(
        self,
        job: StagedJob,
        staged: StagedFile,
        work_dir: Path,
        published: Callable[[str, str], bool],
    ) -> VerifiedFile:
        if published(staged.file_name, staged.sha256):
            # The same bytes are already in the repository: nothing to read or copy.
            return VerifiedFile(staged, None, None)
        where = f"{job.label}: {staged.file_name}"
        path = work_dir / f"{next(self._serial)}-{staged.file_name}"
        async with self._slots:
            await asyncio.to_thread(download, self.artifacts, staged, path, where)
            keyring = await self.keyring.get()
            try:
                entry = await asyncio.to_thread(read_entry, job, staged, path, keyring, where)
            except Rejected as rejection:
                if rejection.reason != "signature":
                    raise
                # Perhaps signed by a key added since the keyring was fetched.
                fresh = await self.keyring.refresh()
                if set(fresh) <= set(keyring):
                    raise
                entry = await asyncio.to_thread(read_entry, job, staged, path, fresh, where)
        return VerifiedFile(staged, entry, path)
