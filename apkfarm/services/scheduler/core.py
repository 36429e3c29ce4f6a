"""The scheduler's decisions, without gRPC: plan trees, dispatch jobs, follow events.

State lives in the :class:`StateStore`; every decision is one transaction
that updates builds and appends the bus messages it implies to the outbox. A
separate task publishes the outbox with broker confirms, so a crash between
deciding and publishing loses nothing, and a restart resumes where it was.

A build moves WAITING -> (FETCHING ->) QUEUED -> BUILDING -> BUILT -> DONE.
It is dispatched only when every build it waits on is DONE (indexed) or was
UP_TO_DATE; a failure blocks its dependents with the reason; infrastructure
failures are retried up to ``max_attempts`` with a fresh job token each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import Message

from apkfarm.apk.errors import ApkError
from apkfarm.apk.index import read_index
from apkfarm.blobs import BlobNotFound, BlobStore, InvalidBlobKey
from apkfarm.blobs.layout import source_key, tree_key
from apkfarm.bus import Bus, Delivery, Subscription, names
from apkfarm.errors import ApkfarmError
from apkfarm.services.common.events import bounded, new_event
from apkfarm.services.common.jobtokens import TokenIssuer
from apkfarm.services.common.logs import get_logger
from apkfarm.services.scheduler import metrics
from apkfarm.services.scheduler.planner import Problem, plan_tree
from apkfarm.services.scheduler.state import (
    ACTIVE_STATES,
    SATISFIED_STATES,
    BuildRow,
    OutboxMessage,
    State,
    StateStore,
    build_id,
    state_name,
)
from apkfarm.templates.snapshot import make_snapshot, unpack_snapshot
from apkfarm.v1 import bus_pb2, common_pb2

log = get_logger(__name__)

EVENT_QUEUE = "scheduler"
EVENT_PATTERNS = ("fetch.*", "build.*", "index.*", "package.rejected")
MAX_TREE_BYTES = 2 * 1024**3


class SchedulerError(ApkfarmError):
    """A request the scheduler cannot serve; the message says why."""


class NotFound(SchedulerError):
    pass


@dataclass(frozen=True)
class SchedulerSettings:
    state_dir: Path
    archs: tuple[str, ...]
    categories: tuple[str, ...]
    host_arch: str
    max_attempts: int = 3
    # Accept SubmitTree with a path on the scheduler's own filesystem.
    allow_local_trees: bool = False
    queue_depth_interval: float = 5.0
    # Sandboxed template evaluators per category (0: the machine's CPUs).
    evaluation_jobs: int = 0


@dataclass
class Submission:
    tree_id: str
    builds: list[BuildRow]
    problems: list[Problem]


def template_ref(row: BuildRow) -> common_pb2.TemplateRef:
    return common_pb2.TemplateRef(
        category=row.category, pkgname=row.pkgname, version=row.version, arch=row.arch
    )


def build_message(row: BuildRow) -> common_pb2.Build:
    return common_pb2.Build(
        build_id=row.build_id,
        tree_id=row.tree_id,
        template=template_ref(row),
        state=row.state,  # type: ignore[arg-type]
        reason=row.reason,
        attempts=row.attempts,
        job_id=row.job_id,
        log_key=row.log_key,
        packages=[common_pb2.StagedPackage(**p) for p in row.staged],
        wave=row.wave,
        failed_phase=row.failed_phase,
    )


class SchedulerCore:
    def __init__(
        self,
        settings: SchedulerSettings,
        *,
        state: StateStore,
        bus: Bus,
        artifacts: BlobStore,
        repository: BlobStore,
        issuer: TokenIssuer,
        identity: str = "scheduler",
    ) -> None:
        self.settings = settings
        self.state = state
        self.bus = bus
        self.artifacts = artifacts
        self.repository = repository
        self.issuer = issuer
        self.identity = identity
        self._outbox_wakeup = asyncio.Event()
        self._outbox_empty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Subscription[bus_pb2.Event] | None = None
        # Serialises decisions: event handlers, dispatch and RPCs.
        self._lock = asyncio.Lock()
        self._stopping = False

    # --- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        for arch in self.settings.archs:
            await self.bus.declare_queue(names.build_queue(arch))
        await self.bus.declare_queue(names.FETCH_QUEUE)
        self._subscription = await self.bus.subscribe(
            EVENT_PATTERNS, bus_pb2.Event, self._on_event, queue=EVENT_QUEUE, prefetch=16
        )
        self._tasks.append(asyncio.create_task(self._publish_outbox(), name="scheduler-outbox"))
        self._tasks.append(asyncio.create_task(self._watch_queues(), name="scheduler-queues"))
        # A restart resumes: whatever became ready while we were down goes out now.
        async with self._lock:
            with self.state.transaction():
                self._announce(self._dispatch_ready())
        self._outbox_wakeup.set()

    async def stop(self, grace: float) -> None:
        self._stopping = True
        if self._subscription is not None:
            await self._subscription.stop(grace)
        self._outbox_wakeup.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    @property
    def events_in_flight(self) -> int:
        return 0 if self._subscription is None else self._subscription.in_flight

    # --- the outbox -------------------------------------------------------

    def _enqueue_work(self, queue: str, message: Message) -> None:
        self._outbox_empty.clear()
        self.state.enqueue(
            "work",
            queue,
            message.DESCRIPTOR.full_name,
            message.SerializeToString(),
            uuid.uuid4().hex,
        )

    def _enqueue_event(self, routing_key: str, event: bus_pb2.Event) -> None:
        self._outbox_empty.clear()
        self.state.enqueue(
            "event",
            routing_key,
            event.DESCRIPTOR.full_name,
            event.SerializeToString(),
            event.event_id,
        )

    def _announce(self, rows: Iterable[BuildRow]) -> None:
        for row in rows:
            event = new_event(self.identity)
            event.build_changed.build.CopyFrom(build_message(row))
            self._enqueue_event(names.SCHEDULER_BUILD, event)

    async def _publish_outbox(self) -> None:
        while True:
            await self._outbox_wakeup.wait()
            self._outbox_wakeup.clear()
            while batch := self.state.pending():
                for message in batch:
                    if not await self._publish(message):
                        # The broker is away: keep the message and try again shortly.
                        await asyncio.sleep(1.0)
                        break
                    self.state.sent(message.id)
            if not self.state.pending(1):
                self._outbox_empty.set()

    async def _publish(self, message: OutboxMessage) -> bool:
        try:
            if message.kind == "work":
                await self.bus.publish_raw(
                    message.target, message.body, message.type, message_id=message.message_id
                )
            else:
                event = bus_pb2.Event.FromString(message.body)
                await self.bus.publish_event(message.target, event, message_id=message.message_id)
        except ApkfarmError as error:
            log.warning("outbox publish failed", error=str(error), target=message.target)
            return False
        return True

    async def drain_outbox(self) -> None:
        """Wait until everything decided so far was confirmed by the broker."""
        self._outbox_wakeup.set()
        await self._outbox_empty.wait()

    # --- metrics ----------------------------------------------------------

    async def _watch_queues(self) -> None:
        queues = [names.FETCH_QUEUE, *(names.build_queue(a) for a in self.settings.archs)]
        while True:
            for queue in queues:
                for name in (queue, names.dead_letter_queue(queue)):
                    with contextlib.suppress(ApkfarmError):
                        metrics.QUEUE_DEPTH.labels(queue=name).set(await self.bus.queue_depth(name))
            for (arch, state), count in self.state.count_by_state().items():
                metrics.BUILDS_BY_STATE.labels(arch=arch, state=state_name(state)).set(count)
            await asyncio.sleep(self.settings.queue_depth_interval)

    # --- trees ------------------------------------------------------------

    @property
    def snapshots_dir(self) -> Path:
        return self.settings.state_dir / "snapshots"

    @property
    def trees_dir(self) -> Path:
        return self.settings.state_dir / "trees"

    async def store_tree(self, chunks: Callable[[], Awaitable[bytes | None]]) -> tuple[str, int]:
        """Receive a tarball (UploadTree); returns its blob key and size."""
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        partial = self.snapshots_dir / f".upload-{uuid.uuid4().hex}"
        digest = hashlib.sha256()
        size = 0
        try:
            with partial.open("wb") as out:
                while (chunk := await chunks()) is not None:
                    size += len(chunk)
                    if size > MAX_TREE_BYTES:
                        raise SchedulerError(f"tree upload exceeds {MAX_TREE_BYTES} bytes")
                    digest.update(chunk)
                    out.write(chunk)
            tree_id = digest.hexdigest()
            final = self.snapshots_dir / f"{tree_id}.tar"
            partial.replace(final)
        finally:
            partial.unlink(missing_ok=True)
        key = tree_key(tree_id)
        await asyncio.to_thread(self._store_snapshot, key, final)
        return key, size

    def _store_snapshot(self, key: str, tar_path: Path) -> None:
        with tar_path.open("rb") as stream:
            self.artifacts.put_if_absent(key, stream, tar_path.stat().st_size)

    def _snapshot_from_key(self, key: str) -> tuple[str, Path]:
        tree_id = key.removeprefix("trees/").removesuffix(".tar")
        try:
            valid = tree_key(tree_id) == key
        except InvalidBlobKey:
            valid = False
        if not valid:
            raise SchedulerError(f"tree key {key!r} is not a trees/<sha256>.tar key")
        local = self.snapshots_dir / f"{tree_id}.tar"
        if not local.exists():
            try:
                self.artifacts.get_file(key, local)
            except BlobNotFound:
                raise SchedulerError(f"no uploaded tree at {key}") from None
        return tree_id, unpack_snapshot(local, tree_id, self.trees_dir)

    def _snapshot_from_path(self, path: str) -> tuple[str, Path]:
        if not self.settings.allow_local_trees:
            raise SchedulerError(
                "this scheduler does not accept local tree paths; upload the tree instead"
            )
        snapshot = make_snapshot(Path(path), self.snapshots_dir)
        self._store_snapshot(tree_key(snapshot.tree_id), snapshot.tar_path)
        return snapshot.tree_id, unpack_snapshot(
            snapshot.tar_path, snapshot.tree_id, self.trees_dir
        )

    def repository_versions(self, arch: str) -> dict[str, str]:
        """Package name -> version of what the repository index holds for ``arch`` now."""
        versions: dict[str, str] = {}
        for category in self.settings.categories:
            key = f"{category}/{arch}/APKINDEX.tar.gz"
            try:
                with self.repository.open(key) as stream:
                    index = read_index(stream, None, source=key)  # type: ignore[arg-type]
            except BlobNotFound:
                continue
            except ApkError as error:
                log.warning("unreadable repository index", key=key, error=str(error))
                continue
            for record in index.records:
                versions.setdefault(record.name, record.version)
        return versions

    async def submit(
        self,
        *,
        local_path: str = "",
        tree_key_: str = "",
        archs: Sequence[str] = (),
        categories: Sequence[str] = (),
        packages: Sequence[str] = (),
        rebuild_dependents: bool = False,
    ) -> Submission:
        wanted_archs = tuple(archs) or self.settings.archs
        for arch in wanted_archs:
            if arch not in self.settings.archs:
                raise SchedulerError(
                    f"arch {arch!r} has no builders here (configured: {', '.join(self.settings.archs)})"
                )
        wanted_categories = tuple(categories) or self.settings.categories
        if local_path:
            tree_id, tree_dir = await asyncio.to_thread(self._snapshot_from_path, local_path)
        elif tree_key_:
            tree_id, tree_dir = await asyncio.to_thread(self._snapshot_from_key, tree_key_)
        else:
            raise SchedulerError("SubmitTree needs a local_path or a tree_key")
        planned = await asyncio.to_thread(
            plan_tree,
            tree_dir,
            tree_id,
            wanted_archs,
            host_arch=self.settings.host_arch,
            categories=wanted_categories,
            packages=packages,
            rebuild_dependents=rebuild_dependents,
            repository_versions=self.repository_versions,
            cache_dir=self.settings.state_dir / "evaluations",
            evaluation_jobs=self.settings.evaluation_jobs,
        )
        async with self._lock:
            with self.state.transaction():
                self.state.add_tree(tree_id, tree_key(tree_id), wanted_archs)
                current = self._replace_plan(tree_id, wanted_archs, planned.rows)
                self._announce(current)
                self._announce(self._dispatch_ready(tree_id))
        self._outbox_wakeup.set()
        log.info(
            "tree submitted",
            tree=tree_id,
            archs=list(wanted_archs),
            builds=len(planned.rows),
            problems=len(planned.problems),
        )
        return Submission(tree_id, self.state.builds(tree_id), planned.problems)

    def _replace_plan(
        self, tree_id: str, archs: Sequence[str], rows: Sequence[BuildRow]
    ) -> list[BuildRow]:
        """Within a transaction: make ``rows`` the tree's plan for ``archs``.

        The same tree may be submitted again (other packages, or after the
        repository changed). A build still in progress from an earlier
        submission stays as it is — replanning it would dispatch it twice —
        and finished rows the new plan no longer names are dropped, so the
        tree's builds are exactly what this submission asked for.
        """
        existing = {row.build_id: row for arch in archs for row in self.state.builds(tree_id, arch)}
        planned = {row.build_id for row in rows}
        current = []
        for row in rows:
            old = existing.get(row.build_id)
            if old is not None and old.state in ACTIVE_STATES:
                current.append(old)
                continue
            self.state.put_build(row)
            current.append(row)
        for build, old in existing.items():
            if build not in planned and old.state not in ACTIVE_STATES:
                self.state.delete_build(build)
        return current

    # --- dispatch ---------------------------------------------------------

    def _source_present(self, sha256: str) -> bool:
        known = self.state.source_state(sha256)
        if known is not None and known[0] == "present":
            return True
        if self.artifacts.exists(source_key(sha256)):
            self.state.set_source(sha256, "present")
            return True
        return False

    def _dispatch_ready(
        self, tree_id: str | None = None, *, candidates: Iterable[BuildRow] | None = None
    ) -> list[BuildRow]:
        """Within a transaction: move on every WAITING build whose dependencies are met.

        ``candidates`` narrows the search to those builds (the dependents of what
        just finished), so a published package does not rescan a whole tree.
        """
        if candidates is not None:
            waiting = [r for r in candidates if r.state == State.BUILD_STATE_WAITING]
        elif tree_id:
            waiting = self.state.builds(tree_id, states=[State.BUILD_STATE_WAITING])
        else:
            waiting = self.state.builds_in_states([State.BUILD_STATE_WAITING])
        changed: list[BuildRow] = []
        for row in waiting:
            deps = [self.state.get_build(dep) for dep in row.deps]
            if not all(dep is not None and dep.state in SATISFIED_STATES for dep in deps):
                continue
            missing = [s for s in row.sources if not self._source_present(s["sha256"])]
            if missing:
                row.state = State.BUILD_STATE_FETCHING
                for source in missing:
                    known = self.state.source_state(source["sha256"])
                    if known is None or known[0] != "fetching":
                        self.state.set_source(source["sha256"], "fetching")
                        self._enqueue_work(
                            names.FETCH_QUEUE,
                            bus_pb2.FetchJob(
                                source=common_pb2.Source(**source), template=template_ref(row)
                            ),
                        )
                self.state.put_build(row)
                changed.append(row)
            else:
                self._queue_build(row)
                changed.append(row)
        return changed

    def _queue_build(self, row: BuildRow) -> None:
        row.attempts += 1
        row.job_id = f"j{uuid.uuid4().hex}"
        row.state = State.BUILD_STATE_QUEUED
        row.failed_phase = ""
        token = self.issuer.issue(row.job_id, template_ref(row), row.packages, row.attempts)
        key = self.state.tree_key(row.tree_id) or tree_key(row.tree_id)
        self._enqueue_work(
            names.build_queue(row.arch),
            bus_pb2.BuildJob(
                job_id=row.job_id,
                template=template_ref(row),
                tree_id=row.tree_id,
                tree_key=key,
                sources=[common_pb2.Source(**s) for s in row.sources],
                build_depends=row.build_depends,
                token=token,
                attempt=row.attempts,
            ),
        )
        self.state.put_build(row)

    def _block_dependents(self, root: BuildRow, why: str) -> list[BuildRow]:
        blocked: list[BuildRow] = []
        queue = [root]
        while queue:
            current = queue.pop()
            for dependent in self.state.dependents(current):
                if dependent.state not in (State.BUILD_STATE_WAITING, State.BUILD_STATE_FETCHING):
                    continue
                dependent.state = State.BUILD_STATE_BLOCKED
                dependent.reason = (
                    f"waits on {root.pkgname}, which {why}"
                    if current is root
                    else f"waits on {current.pkgname}, which is blocked ({root.pkgname} {why})"
                )
                self.state.put_build(dependent)
                blocked.append(dependent)
                queue.append(dependent)
        return blocked

    def _fail(self, row: BuildRow, reason: str) -> list[BuildRow]:
        row.state = State.BUILD_STATE_FAILED
        row.reason = bounded(reason)
        self.state.put_build(row)
        return [row, *self._block_dependents(row, "failed")]

    # --- events -----------------------------------------------------------

    async def _on_event(self, delivery: Delivery[bus_pb2.Event]) -> None:
        event = delivery.message
        kind = event.WhichOneof("kind")
        async with self._lock:
            with self.state.transaction():
                changed = self._apply(kind, event)
                self._announce(changed)
        if changed:
            self._outbox_wakeup.set()

    def _apply(self, kind: str | None, event: bus_pb2.Event) -> list[BuildRow]:
        if kind == "fetch_done":
            return self._fetch_done(event.fetch_done.source.sha256)
        if kind == "fetch_failed":
            failed = event.fetch_failed
            return self._fetch_failed(failed.source.sha256, failed.source.filename, failed.error)
        if kind == "build_started":
            return self._build_started(event.build_started)
        if kind == "build_finished":
            return self._build_finished(event.build_finished)
        if kind == "index_published":
            return self._index_published(event.index_published)
        if kind == "package_rejected":
            return self._package_rejected(event.package_rejected)
        return []

    def _package_rejected(self, rejected: bus_pb2.PackageRejected) -> list[BuildRow]:
        row = self._current(rejected.job_id, [State.BUILD_STATE_BUILT, State.BUILD_STATE_BUILDING])
        if row is None:
            return []
        return self._fail(row, f"the indexer rejected the packages: {rejected.reason}")

    def _fetch_done(self, sha256: str) -> list[BuildRow]:
        self.state.set_source(sha256, "present")
        changed = []
        for row in self.state.builds_in_states([State.BUILD_STATE_FETCHING]):
            if any(s["sha256"] == sha256 for s in row.sources) and all(
                self._source_present(s["sha256"]) for s in row.sources
            ):
                self._queue_build(row)
                changed.append(row)
        return changed

    def _fetch_failed(self, sha256: str, filename: str, error: str) -> list[BuildRow]:
        self.state.set_source(sha256, "failed", error)
        changed: list[BuildRow] = []
        for row in self.state.builds_in_states([State.BUILD_STATE_FETCHING]):
            if any(s["sha256"] == sha256 for s in row.sources):
                changed.extend(self._fail(row, f"fetching {filename} failed: {error}"))
        return changed

    def _current(self, job_id: str, states: Iterable[int]) -> BuildRow | None:
        """The build a job event belongs to, if that job is still the build's current one."""
        row = self.state.build_by_job(job_id)
        if row is None or row.state not in set(states):
            return None
        return row

    def _build_started(self, started: bus_pb2.BuildStarted) -> list[BuildRow]:
        row = self._current(started.job_id, [State.BUILD_STATE_QUEUED, State.BUILD_STATE_BUILDING])
        if row is None:
            return []
        row.state = State.BUILD_STATE_BUILDING
        row.builder_address = started.builder_address
        self.state.put_build(row)
        return [row]

    def _build_finished(self, finished: bus_pb2.BuildFinished) -> list[BuildRow]:
        arch = finished.template.arch
        result = "success" if finished.success else "failure"
        metrics.BUILDS.labels(arch=arch, result=result).inc()
        if finished.duration_seconds > 0:
            metrics.BUILD_DURATION.labels(arch=arch).observe(finished.duration_seconds)
        row = self._current(finished.job_id, [State.BUILD_STATE_QUEUED, State.BUILD_STATE_BUILDING])
        if row is None:
            return []
        row.log_key = finished.log_key
        if finished.success:
            row.state = State.BUILD_STATE_BUILT
            row.staged = [
                {
                    "name": p.name,
                    "version": p.version,
                    "arch": p.arch,
                    "category": p.category,
                    "filename": p.filename,
                    "blob_key": p.blob_key,
                    "size": p.size,
                    "sha256": p.sha256,
                }
                for p in finished.packages
            ]
            self.state.put_build(row)
            return [row]
        row.failed_phase = finished.failed_phase
        if finished.retryable and row.attempts < self.settings.max_attempts:
            row.reason = bounded(f"retrying after: {finished.error}")
            self._queue_build(row)
            return [row]
        phase = f" in {finished.failed_phase}" if finished.failed_phase else ""
        return self._fail(row, f"build failed{phase}: {finished.error}")

    def _index_published(self, published: bus_pb2.IndexPublished) -> list[BuildRow]:
        changed: list[BuildRow] = []
        for job_id in published.job_ids:
            row = self._current(job_id, [State.BUILD_STATE_BUILT, State.BUILD_STATE_BUILDING])
            if row is None:
                continue
            row.state = State.BUILD_STATE_DONE
            row.reason = f"published in {published.category}/{published.arch} generation {published.generation}"
            self.state.put_build(row)
            changed.append(row)
        if changed:
            dependents = {d.build_id: d for row in changed for d in self.state.dependents(row)}
            changed.extend(self._dispatch_ready(candidates=dependents.values()))
        return changed

    # --- operator requests ------------------------------------------------

    def _select(self, pkgname: str, arch: str, tree_id: str) -> BuildRow:
        tree = tree_id or self.state.latest_tree()
        if tree is None:
            raise NotFound("no tree has been submitted")
        if not arch:
            candidates = [
                r for r in self.state.builds(tree) if r.pkgname == pkgname or pkgname in r.packages
            ]
            if len(candidates) == 1:
                return candidates[0]
            if not candidates:
                raise NotFound(f"no build of {pkgname} in tree {tree[:12]}")
            raise SchedulerError(
                f"{pkgname} builds for several archs ({', '.join(r.arch for r in candidates)}); name one"
            )
        row = self.state.get_build(build_id(tree, arch, pkgname))
        if row is None:
            for candidate in self.state.builds(tree, arch):
                if pkgname in candidate.packages:
                    return candidate
            raise NotFound(f"no build of {pkgname} for {arch} in tree {tree[:12]}")
        return row

    def get(self, pkgname: str, arch: str, tree_id: str = "") -> BuildRow:
        return self._select(pkgname, arch, tree_id)

    def list_builds(
        self, tree_id: str = "", arch: str = "", states: Sequence[int] = ()
    ) -> tuple[str, list[BuildRow]]:
        tree = tree_id or self.state.latest_tree()
        if tree is None:
            return "", []
        return tree, self.state.builds(tree, arch or None, states)

    async def cancel(self, pkgname: str, arch: str, tree_id: str = "") -> BuildRow:
        async with self._lock:
            row = self._select(pkgname, arch, tree_id)
            if row.state not in ACTIVE_STATES:
                raise SchedulerError(
                    f"{row.pkgname} ({row.arch}) is {state_name(row.state)}; nothing to cancel"
                )
            with self.state.transaction():
                row.state = State.BUILD_STATE_CANCELLED
                row.reason = "cancelled by an operator"
                self.state.put_build(row)
                self._announce([row, *self._block_dependents(row, "was cancelled")])
        self._outbox_wakeup.set()
        return row

    async def retry(self, pkgname: str, arch: str, tree_id: str = "") -> BuildRow:
        async with self._lock:
            row = self._select(pkgname, arch, tree_id)
            if row.state not in (
                State.BUILD_STATE_FAILED,
                State.BUILD_STATE_BLOCKED,
                State.BUILD_STATE_CANCELLED,
            ):
                raise SchedulerError(
                    f"{row.pkgname} ({row.arch}) is {state_name(row.state)}; only failed, "
                    "blocked or cancelled builds can be retried"
                )
            with self.state.transaction():
                reopened = [row]
                row.state = State.BUILD_STATE_WAITING
                row.attempts = 0
                row.reason = "retry requested by an operator"
                self.state.put_build(row)
                queue = [row]
                while queue:
                    for dependent in self.state.dependents(queue.pop()):
                        if dependent.state == State.BUILD_STATE_BLOCKED:
                            dependent.state = State.BUILD_STATE_WAITING
                            dependent.reason = f"unblocked: {row.pkgname} is retried"
                            self.state.put_build(dependent)
                            reopened.append(dependent)
                            queue.append(dependent)
                self._announce(reopened)
                self._announce(self._dispatch_ready(row.tree_id))
        self._outbox_wakeup.set()
        return self.state.get_build(row.build_id) or row

    def explain(self, pkgname: str, arch: str, tree_id: str = "") -> tuple[BuildRow, list[str]]:
        row = self._select(pkgname, arch, tree_id)
        name = state_name(row.state, short=True)
        lines = [f"{row.pkgname} {row.version} ({row.arch}, tree {row.tree_id[:12]}) is {name}"]
        if row.reason:
            lines.append(f"because: {row.reason}")
        if row.state == State.BUILD_STATE_WAITING:
            for dep_id in row.deps:
                dep = self.state.get_build(dep_id)
                if dep is not None and dep.state not in SATISFIED_STATES:
                    dep_state = state_name(dep.state, short=True)
                    lines.append(f"waiting on {dep.pkgname} ({dep_state})")
        if row.state == State.BUILD_STATE_FETCHING:
            for source in row.sources:
                if not self._source_present(source["sha256"]):
                    known = self.state.source_state(source["sha256"])
                    lines.append(
                        f"waiting for source {source['filename']} ({known[0] if known else 'not requested'})"
                    )
        if row.state == State.BUILD_STATE_QUEUED:
            lines.append(
                f"queued in {names.build_queue(row.arch)} as job {row.job_id} (attempt {row.attempts}); "
                "waiting for a free builder of that arch"
            )
        if row.state == State.BUILD_STATE_BUILDING:
            lines.append(f"building as job {row.job_id} on {row.builder_address or 'a builder'}")
        if row.state == State.BUILD_STATE_BUILT:
            lines.append("packages staged and signed; waiting for the indexer to publish them")
        if row.failed_phase:
            lines.append(f"failed phase: {row.failed_phase}")
        if row.log_key:
            lines.append(f"log: {row.log_key}")
        return row, lines

    # --- for tests and the embedded mode ----------------------------------

    def unfinished(self, tree_id: str) -> int:
        return len(self.state.builds(tree_id, states=list(ACTIVE_STATES)))
