"""The whole farm in one process: what ``apkfarm build`` runs on a packager's machine.

The same service cores as the farm — scheduler, fetcher, one builder per
arch, signer, indexer — wired to an in-memory bus and local directories
instead of RabbitMQ and S3, and calling the signer in-process instead of
over gRPC. Nothing else needs to be installed or running.

Layout: the signed repository is ``OUT/<category>/<arch>/``; the farm's
working state (database, tree snapshots, sources, staging, logs, audit log)
is ``OUT/.apkfarm/``. The signing key is generated on first use in the keys
directory (default ``~/.config/apkfarm/keys``, like abuild's ``~/.abuild``),
and its public half is copied to ``OUT/keys/`` for clients.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import shutil
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from apkfarm.apk.keys import PRIVATE_SUFFIX, generate_key_pair
from apkfarm.audit import AuditLog
from apkfarm.blobs import LocalBlobStore
from apkfarm.bus import Delivery, MemoryBus, names
from apkfarm.errors import ApkfarmError
from apkfarm.services.builder.worker import BuildWorker, WorkerSettings
from apkfarm.services.common.jobtokens import (
    TokenIssuer,
    TokenVerifier,
    generate_token_key,
    load_private_key,
    load_public_keys,
)
from apkfarm.services.fetcher.consumer import FetchConsumer
from apkfarm.services.fetcher.core import SourceFetcher
from apkfarm.services.fetcher.events import EventPublisher
from apkfarm.services.fetcher.sites import site_table
from apkfarm.services.indexer.core import Indexer, IndexerSettings
from apkfarm.services.scheduler.core import (
    SchedulerCore,
    SchedulerSettings,
    Submission,
    build_message,
)
from apkfarm.services.scheduler.state import FINAL_STATES, StateStore
from apkfarm.services.signer.client import LocalSignerClient
from apkfarm.services.signer.core import SignerCore
from apkfarm.services.signer.keys import SigningKeys
from apkfarm.services.signer.ledger import TokenLedger
from apkfarm.v1 import bus_pb2, common_pb2

STATE_DIR = ".apkfarm"


class Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self, grace: float) -> None: ...


DEFAULT_KEYS_DIR = Path.home() / ".config" / "apkfarm" / "keys"


@dataclass(frozen=True)
class EmbeddedSettings:
    out: Path
    archs: tuple[str, ...]
    host_arch: str
    categories: tuple[str, ...] = ("main", "user")
    keys_dir: Path = DEFAULT_KEYS_DIR
    # NAME=URL for $(NAME) site macros in template sources.
    sites: tuple[tuple[str, str], ...] = ()
    build_timeout: float = 3 * 3600.0
    description: str = "apkfarm local repository"

    @property
    def state_dir(self) -> Path:
        return self.out / STATE_DIR


def _key_owner() -> str:
    """An e-mail-shaped key name for this user, as abuild names its keys."""
    user = re.sub(r"[^A-Za-z0-9._+-]", "", getpass.getuser()) or "packager"
    host = re.sub(r"[^A-Za-z0-9.-]", "", socket.gethostname()) or "localhost"
    return f"{user}@{host}"


def ensure_signing_key(keys_dir: Path) -> Path:
    """The packager's apk key (generated on first use); returns its public file."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    existing = sorted(keys_dir.glob(f"*{PRIVATE_SUFFIX}"))
    if existing:
        public = existing[-1].with_name(existing[-1].name + ".pub")
        if not public.exists():
            raise ApkfarmError(f"{existing[-1]}: its public key {public.name} is missing")
        return public
    return generate_key_pair(keys_dir, _key_owner()).public_path


@dataclass
class BuildOutcome:
    submission: Submission
    builds: list[common_pb2.Build] = field(default_factory=list)

    @property
    def failed(self) -> list[common_pb2.Build]:
        bad = {common_pb2.BUILD_STATE_FAILED, common_pb2.BUILD_STATE_BLOCKED}
        return [b for b in self.builds if b.state in bad]


class EmbeddedFarm:
    """Start with ``async with``; ``build()`` a tree; everything stops on exit."""

    def __init__(self, settings: EmbeddedSettings) -> None:
        self.settings = settings
        self.public_key: Path | None = None
        self.bus = MemoryBus()
        self._closers: list[Callable[[float], object]] = []

    async def __aenter__(self) -> EmbeddedFarm:
        settings = self.settings
        state = settings.state_dir
        state.mkdir(parents=True, exist_ok=True)
        self.public_key = ensure_signing_key(settings.keys_dir)
        published = settings.out / "keys"
        published.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.public_key, published / self.public_key.name)
        token_key = state / "jobtoken.key"
        if not token_key.exists():
            generate_token_key(token_key)
        artifacts = LocalBlobStore(state / "artifacts")
        repository = LocalBlobStore(settings.out)
        self.signer = SignerCore(
            SigningKeys(settings.keys_dir),
            TokenVerifier(load_public_keys([token_key.with_suffix(".pub")])),
            AuditLog(artifacts),
            TokenLedger(artifacts),
        )
        await self.bus.start()
        self.scheduler = SchedulerCore(
            SchedulerSettings(
                state_dir=state,
                archs=settings.archs,
                categories=settings.categories,
                host_arch=settings.host_arch,
                allow_local_trees=True,
            ),
            state=StateStore(state / "scheduler.db"),
            bus=self.bus,
            artifacts=artifacts,
            repository=repository,
            issuer=TokenIssuer(load_private_key(token_key)),
        )
        fetcher = SourceFetcher(
            artifacts, sites=site_table(dict(settings.sites)), allow_file_urls=True
        )
        await fetcher.__aenter__()
        self._closers.append(lambda _grace: fetcher.__aexit__(None, None, None))
        fetch_consumer = FetchConsumer(self.bus, fetcher, EventPublisher(self.bus, "fetcher"))
        self.indexer = Indexer(
            bus=self.bus,
            artifacts=artifacts,
            repository=repository,
            signer=LocalSignerClient(self.signer, "indexer"),
            settings=IndexerSettings(description=settings.description),
        )
        self.builders = [
            BuildWorker(
                WorkerSettings(
                    arch=arch,
                    work_dir=state / "builds" / arch,
                    identity=f"builder-{arch}",
                    build_timeout=settings.build_timeout,
                ),
                bus=self.bus,
                artifacts=artifacts,
                repository=repository,
                signer=LocalSignerClient(self.signer, f"builder-{arch}"),
            )
            for arch in settings.archs
        ]
        # Consumers first, so nothing the scheduler dispatches waits for a reader.
        parts: list[Service] = [self.indexer, fetch_consumer, *self.builders, self.scheduler]
        for part in parts:
            await part.start()
            self._closers.append(part.stop)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for close in reversed(self._closers):
            result = close(5.0)
            if asyncio.iscoroutine(result):
                await result
        await self.bus.close(grace=5.0)
        self.scheduler.state.close()

    async def build(
        self,
        ports: Path,
        packages: Sequence[str],
        *,
        on_change: Callable[[common_pb2.Build], None] | None = None,
    ) -> BuildOutcome:
        """Submit ``ports`` (``packages`` or all) and wait until every build has ended."""
        done = asyncio.Event()
        tree_id: list[str] = []

        async def changed(delivery: Delivery[bus_pb2.Event]) -> None:
            build = delivery.message.build_changed.build
            if on_change is not None:
                on_change(build)
            if (
                tree_id
                and build.state in FINAL_STATES
                and self.scheduler.unfinished(tree_id[0]) == 0
            ):
                done.set()

        watcher = await self.bus.subscribe([names.SCHEDULER_BUILD], bus_pb2.Event, changed)
        try:
            submission = await self.scheduler.submit(local_path=str(ports), packages=list(packages))
            tree_id.append(submission.tree_id)
            if self.scheduler.unfinished(submission.tree_id) == 0:
                done.set()
            await done.wait()
        finally:
            await watcher.stop(0)
        _, rows = self.scheduler.list_builds(submission.tree_id)
        return BuildOutcome(submission, [build_message(r) for r in rows])
