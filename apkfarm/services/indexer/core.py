"""The indexer without gRPC: ``package.staged`` events in, signed repositories out.

Events come from the durable queue ``indexer`` (bound to ``package.*``) and
are collected into batches (``batch_seconds``, at most ``batch_max_events``).
A batch is split by repository (category, arch); for each repository the
jobs' packages are downloaded and checked (``verify``), the good ones are
published as one new generation (``publisher``), and ``index.published``
names the jobs it holds. Each message is acknowledged only then: its handler
waits for its batch. A job that fails a check is dead-lettered with the
reason (``RejectMessage``) and nothing of it is published; store or signer
trouble hands the message back for a later try (``RetryLater``).

The embedded mode runs the same class with a ``MemoryBus``, a
``LocalBlobStore`` for artifacts, ``LocalBlobStore(OUT)`` as the repository
and a ``LocalSignerClient``; ``index_events`` processes events directly.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apkfarm.blobs import BlobStore, layout
from apkfarm.bus import Bus, Delivery, RejectMessage, RetryLater, Subscription, names
from apkfarm.services.common.events import bounded, new_event
from apkfarm.services.common.logs import get_logger
from apkfarm.services.indexer import metrics
from apkfarm.services.indexer.batching import Batcher
from apkfarm.services.indexer.checks import Rejected, StagedJob, check_event
from apkfarm.services.indexer.publisher import Publication, RepositoryPublisher
from apkfarm.services.indexer.verify import FarmKeyring, PackageVerifier, VerifiedJob
from apkfarm.services.signer.client import SignerClient
from apkfarm.v1 import bus_pb2

log = get_logger(__name__)

QUEUE = "indexer"
PATTERNS = ("package.*",)
MAX_RETRY_DELAY = 300.0


@dataclass(frozen=True)
class IndexerSettings:
    keep_generations: int = 5
    # 0: publish as soon as the previous publication ends; a burst that arrives
    # meanwhile forms the next batch by itself, without adding latency.
    batch_seconds: float = 0.0
    batch_max_events: int = 100
    description: str = ""
    # Where staged packages wait while they are checked (default: the system's temp dir).
    work_dir: Path | None = None
    verify_concurrency: int = 4
    # Seconds before a message whose batch failed for a transient reason is tried again,
    # doubling per attempt: with the bus's 5 deliveries a job outlasts ~4 minutes of outage.
    retry_delay: float = 15.0
    keyring_refresh_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.keep_generations < 1:
            raise ValueError("keep_generations must be at least 1")
        if self.batch_seconds < 0:
            raise ValueError("batch_seconds must not be negative")
        if not 1 <= self.batch_max_events <= 1000:
            raise ValueError("batch_max_events must be between 1 and 1000")
        if self.retry_delay < 0:
            raise ValueError("retry_delay must not be negative")


@dataclass(frozen=True)
class JobOutcome:
    """What became of one ``package.staged`` event: exactly one field is set."""

    job_id: str
    published: Publication | None = None
    rejected: Rejected | None = None
    # A transient failure: the event may succeed later.
    retry: str | None = None


@dataclass(frozen=True)
class RepositoryInfo:
    category: str
    arch: str
    generation: int
    package_count: int
    index_key: str
    published_at: float


class Indexer:
    def __init__(
        self,
        *,
        bus: Bus,
        artifacts: BlobStore,
        repository: BlobStore,
        signer: SignerClient,
        identity: str = "indexer",
        settings: IndexerSettings | None = None,
    ) -> None:
        self.bus = bus
        self.artifacts = artifacts
        self.repository = repository
        self.signer = signer
        self.identity = identity
        self.settings = settings or IndexerSettings()
        self.keyring = FarmKeyring(signer, refresh_seconds=self.settings.keyring_refresh_seconds)
        self.verifier = PackageVerifier(
            artifacts, self.keyring, concurrency=self.settings.verify_concurrency
        )
        self._publishers: dict[tuple[str, str], RepositoryPublisher] = {}
        self._opening = asyncio.Lock()
        self._batcher = Batcher[bus_pb2.PackageStaged, JobOutcome](
            self.index_events,
            window=self.settings.batch_seconds,
            max_items=self.settings.batch_max_events,
        )
        self._subscription: Subscription[bus_pb2.Event] | None = None
        self._discovery: asyncio.Task[None] | None = None

    # --- life cycle -------------------------------------------------------

    async def start(self) -> None:
        """Load the known repositories in the background and consume ``package.*``."""
        self._batcher.start()
        self._discovery = asyncio.get_running_loop().create_task(self._discover())
        self._subscription = await self.bus.subscribe(
            list(PATTERNS),
            bus_pb2.Event,
            self.handle,
            queue=QUEUE,
            prefetch=self.settings.batch_max_events,
        )

    async def stop(self, grace: float) -> None:
        """Publish what is collected, take nothing new; after ``grace`` hand the rest back."""
        self._batcher.hurry()
        if self._subscription is not None:
            await self._subscription.stop(grace)
        await self._batcher.cancel()
        if self._discovery is not None and not self._discovery.done():
            self._discovery.cancel()

    # --- the bus side -----------------------------------------------------

    async def handle(self, delivery: Delivery[bus_pb2.Event]) -> None:
        event = delivery.message
        if event.WhichOneof("kind") != "package_staged":
            if delivery.routing_key == names.PACKAGE_STAGED:
                raise RejectMessage("malformed_event: a package.staged event without PackageStaged")
            log.debug("ignoring event", routing_key=delivery.routing_key)
            return
        staged = event.package_staged
        outcome = await self._batcher.submit(staged)
        if outcome.rejected is not None:
            reason = f"{outcome.rejected.reason}: {outcome.rejected}"
            await self._announce_rejection(staged, reason)
            raise RejectMessage(reason)
        if outcome.retry is not None:
            if delivery.last_attempt:
                # The bus dead-letters it now; the scheduler must not wait for it forever.
                reason = f"gave up after {delivery.attempt} attempts: {outcome.retry}"
                await self._announce_rejection(staged, reason)
                raise RejectMessage(reason)
            delay = min(self.settings.retry_delay * 2 ** (delivery.attempt - 1), MAX_RETRY_DELAY)
            raise RetryLater(outcome.retry, delay=delay)

    async def _announce_rejection(self, staged: bus_pb2.PackageStaged, reason: str) -> None:
        event = new_event(self.identity)
        event.package_rejected.CopyFrom(
            bus_pb2.PackageRejected(
                job_id=staged.job_id, template=staged.template, reason=bounded(reason)
            )
        )
        await self.bus.publish_event(names.PACKAGE_REJECTED, event, message_id=event.event_id)

    # --- indexing ---------------------------------------------------------

    async def index_events(self, events: Sequence[bus_pb2.PackageStaged]) -> list[JobOutcome]:
        """Check and publish ``events`` now; one outcome per event, in order."""
        outcomes: dict[int, JobOutcome] = {}
        groups: dict[tuple[str, str], list[tuple[int, StagedJob]]] = {}
        for position, event in enumerate(events):
            try:
                job = check_event(event)
            except Rejected as rejection:
                outcomes[position] = self._rejected(event.job_id, rejection)
                continue
            groups.setdefault(job.repository, []).append((position, job))
        for repository, members in groups.items():
            outcomes.update(await self._index_repository(repository, members))
        return [outcomes[position] for position in range(len(events))]

    async def _index_repository(
        self, repository: tuple[str, str], members: list[tuple[int, StagedJob]]
    ) -> dict[int, JobOutcome]:
        category, arch = repository
        started = time.monotonic()
        try:
            publisher = await self.publisher(category, arch)
        except Exception as error:
            log.exception("cannot open repository", repository=f"{category}/{arch}")
            return {pos: self._retry(job, f"{category}/{arch}: {error}") for pos, job in members}
        outcomes: dict[int, JobOutcome] = {}
        with tempfile.TemporaryDirectory(
            prefix="apkfarm-indexer-", dir=self.settings.work_dir
        ) as work:
            accepted = await self._checked(publisher, members, Path(work), outcomes)
            if not accepted:
                return outcomes
            try:
                publication = await publisher.publish([verified for _, verified in accepted])
                await self._announce(publication, [v.job.job_id for _, v in accepted])
            except Exception as error:
                log.exception("publishing failed", repository=f"{category}/{arch}")
                for position, verified in accepted:
                    outcomes[position] = self._retry(verified.job, f"publishing failed: {error}")
                return outcomes
            finally:
                self._export(publisher)
        for position, verified in accepted:
            outcomes[position] = JobOutcome(verified.job.job_id, published=publication)
        if publication.new_generation:
            metrics.PUBLISH_DURATION.observe(time.monotonic() - started)
        log.info(
            "published" if publication.new_generation else "already published",
            repository=f"{category}/{arch}",
            generation=publication.generation,
            added=list(publication.added),
            removed=list(publication.removed),
            packages=publication.package_count,
            jobs=[v.job.job_id for _, v in accepted],
            seconds=round(time.monotonic() - started, 3),
        )
        return outcomes

    async def _checked(
        self,
        publisher: RepositoryPublisher,
        members: list[tuple[int, StagedJob]],
        work: Path,
        outcomes: dict[int, JobOutcome],
    ) -> list[tuple[int, VerifiedJob]]:
        """The jobs whose packages all passed every check and that no newer version
        supersedes; the others get their outcome in ``outcomes``."""
        results = await asyncio.gather(
            *(self.verifier.verify_job(job, work, published=publisher.holds) for _, job in members),
            return_exceptions=True,
        )
        accepted: list[tuple[int, VerifiedJob]] = []
        for (position, job), result in zip(members, results, strict=True):
            if isinstance(result, Rejected):
                outcomes[position] = self._rejected(job.job_id, result)
            elif isinstance(result, Exception):
                outcomes[position] = self._retry(job, f"{job.label}: {result}")
            elif isinstance(result, BaseException):
                raise result
            else:
                accepted.append((position, result))
        superseded = publisher.select([verified.job for _, verified in accepted])
        for index, rejection in superseded.items():
            position, verified = accepted[index]
            outcomes[position] = self._rejected(verified.job.job_id, rejection)
        return [item for index, item in enumerate(accepted) if index not in superseded]

    async def _announce(self, publication: Publication, job_ids: Sequence[str]) -> None:
        """``index.published``: sent only once the index is uploaded (and again, unchanged,
        when a job is delivered again, so that a lost announcement is made up for)."""
        event = new_event(self.identity)
        event.index_published.CopyFrom(
            bus_pb2.IndexPublished(
                category=publication.category,
                arch=publication.arch,
                generation=publication.generation,
                index_key=publication.index_key,
                added=publication.added,
                removed=publication.removed,
                package_count=publication.package_count,
                job_ids=list(dict.fromkeys(job_ids)),
            )
        )
        await self.bus.publish_event(names.INDEX_PUBLISHED, event, message_id=event.event_id)

    def _rejected(self, job_id: str, rejection: Rejected) -> JobOutcome:
        metrics.REJECTED.labels(reason=rejection.reason).inc()
        log.warning(
            "staged job rejected", job=job_id, reason=rejection.reason, detail=str(rejection)
        )
        return JobOutcome(job_id, rejected=rejection)

    def _retry(self, job: StagedJob, reason: str) -> JobOutcome:
        log.warning("job not published; it will be tried again", job=job.job_id, reason=reason)
        return JobOutcome(job.job_id, retry=reason)

    # --- repositories -----------------------------------------------------

    async def publisher(self, category: str, arch: str) -> RepositoryPublisher:
        """The repository's publisher, its state loaded on first use."""
        key = (layout.category(category), layout.arch(arch))
        found = self._publishers.get(key)
        if found is not None:
            return found
        async with self._opening:
            found = self._publishers.get(key)
            if found is None:
                found = await RepositoryPublisher.open(
                    self.repository,
                    category,
                    arch,
                    signer=self.signer,
                    keyring=self.keyring,
                    description=self.settings.description,
                    keep_generations=self.settings.keep_generations,
                )
                self._publishers[key] = found
                self._export(found)
        return found

    async def _discover(self) -> None:
        """Load every repository that has a state, so metrics and ListRepositories show them."""
        try:
            found = await asyncio.to_thread(
                lambda: [
                    repo
                    for info in self.repository.list("")
                    if (repo := layout.parse_repository_state_key(info.key)) is not None
                ]
            )
        except Exception:
            log.exception("listing the published repositories failed")
            return
        for category, arch in found:
            try:
                await self.publisher(category, arch)
            except Exception:
                # Tried again when an event for it comes; until then it is not listed.
                log.exception("loading a repository failed", repository=f"{category}/{arch}")

    async def repositories(self) -> list[RepositoryInfo]:
        if self._discovery is not None:
            await asyncio.shield(self._discovery)
        return [
            RepositoryInfo(
                category=p.category,
                arch=p.arch,
                generation=p.state.generation,
                package_count=p.state.package_count,
                index_key=p.index_key,
                published_at=p.state.published_at,
            )
            for _, p in sorted(self._publishers.items())
        ]

    @staticmethod
    def _export(publisher: RepositoryPublisher) -> None:
        labels = {"category": publisher.category, "arch": publisher.arch}
        state = publisher.state
        metrics.INDEX_PACKAGES.labels(**labels).set(state.package_count)
        metrics.INDEX_GENERATION.labels(**labels).set(state.generation)
        if state.published_at:
            metrics.INDEX_PUBLISHED.labels(**labels).set(state.published_at)
