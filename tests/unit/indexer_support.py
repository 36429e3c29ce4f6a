"""Real signed packages, staged as builders stage them, for the indexer's tests.

Packages are built with ``build_package`` and signed by a real signer core
(``signer_support.Farm``) with a job token, exactly as a builder gets them
signed; variants are unsigned, signed by a key the farm does not know, or
announced with a wrong name, digest or key.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import itertools
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from signer_support import Farm

from apkfarm.apk.assemble import write_package
from apkfarm.apk.index import IndexRecord, read_index
from apkfarm.apk.keys import Keyring, generate_key_pair
from apkfarm.apk.package import build_package
from apkfarm.apk.pkginfo import PkgInfo
from apkfarm.apk.signing import LocalKeySigner
from apkfarm.blobs import BlobInfo, BlobStore, LocalBlobStore, PutResult, Readable, layout
from apkfarm.bus import Bus
from apkfarm.services.indexer.core import Indexer, IndexerSettings
from apkfarm.services.signer.client import LocalSignerClient, SignerClient
from apkfarm.v1 import bus_pb2, common_pb2


class RecordingStore(BlobStore):
    """A store that records every write and delete, in order, and can fail on purpose."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner
        self.log: builtins.list[tuple[str, str]] = []
        # Keys whose next write raises (a crash at that point of a publication).
        self.fail_puts: set[str] = set()

    def _put(self, key: str) -> None:
        if key in self.fail_puts:
            self.fail_puts.discard(key)
            raise OSError(f"injected failure writing {key}")
        self.log.append(("put", key))

    def put_stream(
        self,
        key: str,
        stream: Readable,
        length: int | None = None,
        *,
        content_type: str = "application/octet-stream",
    ) -> PutResult:
        self._put(key)
        return self.inner.put_stream(key, stream, length, content_type=content_type)

    def put_if_absent(
        self,
        key: str,
        data: bytes | Readable,
        length: int | None = None,
        *,
        content_type: str = "application/octet-stream",
    ) -> bool:
        self._put(key)
        return self.inner.put_if_absent(key, data, length, content_type=content_type)

    def copy(self, source: str, destination: str) -> BlobInfo:
        self._put(destination)
        return self.inner.copy(source, destination)

    def delete(self, key: str) -> None:
        self.log.append(("delete", key))
        self.inner.delete(key)

    def open(self, key: str) -> AbstractContextManager[Readable]:
        return self.inner.open(key)

    def stat(self, key: str) -> BlobInfo:
        return self.inner.stat(key)

    def check(self) -> None:
        self.inner.check()

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        return self.inner.list(prefix)

    def puts(self) -> builtins.list[str]:
        return [key for op, key in self.log if op == "put"]


@dataclass
class Staging:
    """One package to stage, and how to spoil it."""

    name: str
    # What the event claims, when it should differ from the package.
    claimed_name: str | None = None
    claimed_sha256: str | None = None
    claimed_size: int | None = None
    blob_key: str | None = None
    signing: str = "farm"  # farm | none | other
    text: str = "hello"


@dataclass
class IndexerFarm:
    """A signer core, an artifacts store, a recording repository store and an indexer."""

    tmp_path: Path
    farm: Farm = field(init=False)
    artifacts: BlobStore = field(init=False)
    repository: RecordingStore = field(init=False)
    signer: LocalSignerClient = field(init=False)
    _jobs: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.farm = Farm(self.tmp_path)
        self.artifacts = LocalBlobStore(self.tmp_path / "artifacts", durable=False)
        self.repository = RecordingStore(LocalBlobStore(self.tmp_path / "repo", durable=False))
        self.signer = LocalSignerClient(self.farm.core, "indexer")
        other_dir = self.tmp_path / "other-keys"
        other_dir.mkdir()
        self.other_key = generate_key_pair(other_dir, "intruder@example.org", now=0x3000)

    def indexer(
        self, bus: Bus, *, signer: SignerClient | None = None, **settings: object
    ) -> Indexer:
        defaults: dict[str, object] = {"batch_seconds": 0.05, "retry_delay": 0.0}
        defaults.update(settings)
        return Indexer(
            bus=bus,
            artifacts=self.artifacts,
            repository=self.repository,
            signer=signer or self.signer,
            settings=IndexerSettings(**defaults),  # type: ignore[arg-type]
        )

    def keyring(self) -> Keyring:
        return Keyring.from_pem(
            {key.name: key.pem.encode() for key in self.farm.core.public_keys()}
        )

    # --- staging ----------------------------------------------------------

    def stage(
        self,
        packages: Sequence[Staging | str],
        *,
        pkgname: str | None = None,
        version: str = "1.0-r0",
        arch: str = "x86_64",
        category: str = "main",
        job_id: str | None = None,
    ) -> bus_pb2.PackageStaged:
        """Build, sign and upload ``packages`` of one job; the event a builder would send."""
        items = [p if isinstance(p, Staging) else Staging(p) for p in packages]
        job_id = job_id or f"job-{next(self._jobs)}"
        template = common_pb2.TemplateRef(
            category=category, pkgname=pkgname or items[0].name, version=version, arch=arch
        )
        token = self.farm.issuer.issue(job_id, template, [item.name for item in items], attempt=1)
        event = bus_pb2.PackageStaged(job_id=job_id, template=template)
        for item in items:
            data = self.package_bytes(item, template, token)
            file_name = f"{item.claimed_name or item.name}-{version}.apk"
            key = item.blob_key or layout.staging_key(job_id, file_name)
            # A claimed key no store accepts: the bytes are where they belong, the claim lies.
            valid = item.blob_key is None or not any(s in ("..", ".") for s in key.split("/"))
            self.artifacts.put_bytes(key if valid else layout.staging_key(job_id, file_name), data)
            event.packages.append(
                common_pb2.StagedPackage(
                    name=item.claimed_name or item.name,
                    version=version,
                    arch=arch,
                    category=category,
                    filename=file_name,
                    blob_key=key,
                    size=item.claimed_size or len(data),
                    sha256=item.claimed_sha256 or hashlib.sha256(data).hexdigest(),
                )
            )
        return event

    def package_bytes(
        self, item: Staging, template: common_pb2.TemplateRef, token: common_pb2.JobToken
    ) -> bytes:
        tree = self.tmp_path / "trees" / f"{item.name}-{template.version}-{item.text}"
        (tree / "usr/share" / item.name).mkdir(parents=True, exist_ok=True)
        (tree / "usr/share" / item.name / "README").write_text(f"{item.name}: {item.text}\n")
        info = PkgInfo(
            pkgname=item.name,
            pkgver=template.version,
            arch=template.arch,
            origin=template.pkgname,
            pkgdesc=f"The {item.name} package",
            builddate=1_700_000_000,
        )
        out = io.BytesIO()
        with build_package(tree, info) as unsigned:
            if item.signing == "none":
                unsigned.write_unsigned(out)
                return out.getvalue()
            if item.signing == "other":
                signatures = [
                    LocalKeySigner(self.other_key.private_path).sign(unsigned.control_member)
                ]
            else:
                signed = self.farm.core.sign_package(
                    unsigned.control_member, token, f"builder-{template.arch}"
                )
                signatures = list(signed.signatures)
            write_package(out, signatures, unsigned.control_member, unsigned.data.chunks())
        return out.getvalue()

    # --- reading the repository back --------------------------------------

    def published_index(self, category: str = "main", arch: str = "x86_64") -> list[IndexRecord]:
        """The records of the published index, whose signature must verify with the farm's keys."""
        key = layout.repository_index_key(category, arch)
        data = self.repository.inner.get_bytes(key)
        return read_index(io.BytesIO(data), self.keyring(), source=key).records

    def generation_index(
        self, generation: int, category: str = "main", arch: str = "x86_64"
    ) -> list[IndexRecord]:
        key = layout.repository_generation_key(category, arch, generation)
        data = self.repository.inner.get_bytes(key)
        return read_index(io.BytesIO(data), self.keyring(), source=key).records

    def has(self, key: str) -> bool:
        return self.repository.inner.exists(key)
