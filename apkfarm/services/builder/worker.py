"""One architecture's builder, without gRPC: take a job, build, sign, stage, report.

For each ``BuildJob`` from ``build.<arch>`` (one at a time):

1. announce ``build.started`` (with the address that serves its live log);
2. fetch the tree snapshot (cached per tree), the sources (checked against
   their SHA-256) and, through the runtime, the farm packages it builds on;
3. run the sandboxed build (``apkfarm.build.run_build``), the log streamed
   into a ``LogBuffer`` and the phases announced as ``build.phase``;
4. get each package's control member signed with the job's token, assemble
   the signed ``.apk`` and upload it under ``staging/<job>/``; upload the log;
5. announce ``package.staged`` (for the indexer) and ``build.succeeded``,
   and only then acknowledge the job.

A template that fails to build is a result: ``build.failed`` (not retryable)
and the job is acknowledged. Infrastructure trouble (store, signer) is
``build.failed`` with ``retryable`` set, so the scheduler dispatches a new
attempt with a new token. So is a job the broker delivers again after its
builder died between signing and announcing: the signer refuses the spent
token, and a new attempt gets a fresh one. On shutdown a running build is given the grace
period; if it does not finish, it is cancelled (its sandbox killed) and the
job goes back to the queue unacknowledged for another builder.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from apkfarm.apk.assemble import signature_member
from apkfarm.apk.keys import Keyring
from apkfarm.apk.signing import SignatureFile
from apkfarm.blobs import BlobStore, BlobStoreError
from apkfarm.blobs.layout import log_key, source_key, staging_key
from apkfarm.build.log import CallbackLog, LogEvent, PhaseStarted, render
from apkfarm.build.result import BuildFailed, BuildRequest, BuildResult, BuiltPackage
from apkfarm.build.runner import BuilderSettings, remove_work_dir, run_build
from apkfarm.build.sysroot import DependencySource
from apkfarm.bus import Bus, Delivery, RejectMessage, RetryLater, Subscription, names
from apkfarm.errors import ApkfarmError
from apkfarm.services.builder.logbuffer import LogBuffer
from apkfarm.services.common.events import bounded, new_event
from apkfarm.services.common.logs import get_logger
from apkfarm.services.signer.client import SignerClient, SignerUnavailable, SigningRefused
from apkfarm.templates.snapshot import template_epoch, unpack_snapshot
from apkfarm.v1 import bus_pb2, common_pb2

log = get_logger(__name__)

_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._~-]{0,250}")
# Signer refusals that mean "this token already signed that package" (the same
# content, or a rebuild that came out different), not "this package is wrong".
SPENT_TOKEN_REFUSALS = frozenset({"replayed_token", "different_content"})


@dataclass(frozen=True)
class WorkerSettings:
    arch: str
    work_dir: Path
    identity: str
    # Where the scheduler reaches this builder's TailLog ("host:port").
    advertise_address: str = ""
    build_timeout: float = 3 * 3600.0
    silence_timeout: float = 1800.0
    # Exit after this many jobs (0: never) — one-build pods under a KEDA ScaledJob.
    max_jobs: int = 0
    # Exit when no job arrived for this long (0: never).
    idle_exit_seconds: float = 0.0
    keep_logs: int = 16
    runtime: BuilderSettings = field(default_factory=BuilderSettings)


@dataclass
class CurrentJob:
    job_id: str
    template: common_pb2.TemplateRef
    phase: str = "setup"


class InfrastructureError(ApkfarmError):
    """Something outside the template failed; another attempt may succeed."""


class BuildWorker:
    def __init__(
        self,
        settings: WorkerSettings,
        *,
        bus: Bus,
        artifacts: BlobStore,
        repository: BlobStore,
        signer: SignerClient,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.artifacts = artifacts
        self.repository = repository
        self.signer = signer
        self.finished = asyncio.Event()
        self.current: CurrentJob | None = None
        self.builds_done = 0
        self.logs: OrderedDict[str, LogBuffer] = OrderedDict()
        self._subscription: Subscription[bus_pb2.BuildJob] | None = None
        self._keyring: Keyring | None = None
        self._last_activity = time.monotonic()
        self._idle_task: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        self._subscription = await self.bus.consume(
            names.build_queue(self.settings.arch), bus_pb2.BuildJob, self._handle, prefetch=1
        )
        if self.settings.idle_exit_seconds > 0:
            self._idle_task = asyncio.create_task(self._exit_when_idle(), name="builder-idle")

    async def stop(self, grace: float) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
        if self._subscription is not None:
            # A build still running after the grace period is cancelled and its job
            # returned to the queue for another builder.
            await self._subscription.stop(grace)

    async def _exit_when_idle(self) -> None:
        while True:
            idle = time.monotonic() - self._last_activity
            if self.current is None and idle >= self.settings.idle_exit_seconds:
                log.info("no job arrived; exiting", idle_seconds=round(idle))
                self.finished.set()
                return
            await asyncio.sleep(max(1.0, self.settings.idle_exit_seconds - idle))

    # --- one job ----------------------------------------------------------

    async def _handle(self, delivery: Delivery[bus_pb2.BuildJob]) -> None:
        job = delivery.message
        if job.template.arch != self.settings.arch:
            raise RejectMessage(
                f"job {job.job_id} is for {job.template.arch}, this builder builds {self.settings.arch}"
            )
        if self.settings.max_jobs and self.builds_done >= self.settings.max_jobs:
            # This pod is done and about to exit; the job is for a fresh builder.
            raise RetryLater("this builder has done its jobs and is exiting")
        self.current = CurrentJob(job.job_id, job.template)
        buffer = self._log_buffer(job.job_id)
        started = time.monotonic()
        try:
            await self._publish(
                names.BUILD_STARTED,
                lambda e: e.build_started.CopyFrom(
                    bus_pb2.BuildStarted(
                        job_id=job.job_id,
                        template=job.template,
                        builder=self.settings.identity,
                        builder_address=self.settings.advertise_address,
                        attempt=job.attempt,
                    )
                ),
            )
            await self._run(job, buffer, started)
        finally:
            await buffer.close()
            self.current = None
            self._last_activity = time.monotonic()
        self.builds_done += 1
        if self.settings.max_jobs and self.builds_done >= self.settings.max_jobs:
            self.finished.set()

    async def _run(self, job: bus_pb2.BuildJob, buffer: LogBuffer, started: float) -> None:
        work = self.settings.work_dir / job.job_id
        outcome = bus_pb2.BuildFinished(
            job_id=job.job_id, template=job.template, attempt=job.attempt
        )
        staged: list[common_pb2.StagedPackage] = []
        try:
            result = await self._build(job, buffer, work)
            with result:
                staged = await self._stage(job, result)
            outcome.success = True
            outcome.packages.extend(staged)
            # The build's own time, for apkfarm_build_duration_seconds: what the
            # template costs, not what the farm adds around it.
            outcome.duration_seconds = result.seconds
        except BuildFailed as failure:
            outcome.error = bounded(str(failure))
            outcome.failed_phase = failure.phase
        except SigningRefused as refusal:
            outcome.error = bounded(f"signing refused: {refusal}")
            outcome.failed_phase = "sign"
            # The job's token was spent by an earlier delivery of this same job
            # whose builder died after signing: a fresh token (the scheduler's
            # next attempt) is the way on, not a failed template.
            outcome.retryable = refusal.reason in SPENT_TOKEN_REFUSALS
        except (InfrastructureError, SignerUnavailable, BlobStoreError) as trouble:
            outcome.error = bounded(str(trouble))
            outcome.retryable = True
        except ApkfarmError as error:
            # A refused source, dependency or package: the template's problem.
            outcome.error = bounded(str(error))
            outcome.failed_phase = self.current.phase if self.current else ""
        finally:
            await asyncio.to_thread(_remove, work)
        if not outcome.success:
            outcome.duration_seconds = time.monotonic() - started
            await buffer.append(f"--- build failed: {outcome.error}\n".encode())
        outcome.log_key = await self._upload_log(job.job_id, buffer)
        if outcome.success:
            await self._publish(
                names.PACKAGE_STAGED,
                lambda e: e.package_staged.CopyFrom(
                    bus_pb2.PackageStaged(job_id=job.job_id, template=job.template, packages=staged)
                ),
            )
        key = names.BUILD_SUCCEEDED if outcome.success else names.BUILD_FAILED
        await self._publish(key, lambda e: e.build_finished.CopyFrom(outcome))
        log.info(
            "build finished",
            job=job.job_id,
            template=f"{job.template.category}/{job.template.pkgname}",
            arch=job.template.arch,
            success=outcome.success,
            retryable=outcome.retryable,
            seconds=round(outcome.duration_seconds, 2),
        )

    async def _build(self, job: bus_pb2.BuildJob, buffer: LogBuffer, work: Path) -> BuildResult:
        template = f"{job.template.category}/{job.template.pkgname}"
        tree = await asyncio.to_thread(self._tree, job)
        sources = await asyncio.to_thread(self._sources, job, work / "sources")
        keyring = await self._farm_keyring()

        async def emit(event: LogEvent) -> None:
            await buffer.append((render(event) + "\n").encode("utf-8", "replace"))
            if isinstance(event, PhaseStarted) and self.current is not None:
                self.current.phase = event.phase
                await self._publish(
                    names.BUILD_PHASE,
                    lambda e: e.build_phase.CopyFrom(
                        bus_pb2.BuildPhase(
                            job_id=job.job_id, template=job.template, phase=event.phase
                        )
                    ),
                )

        request = BuildRequest(
            tree=tree,
            template=template,
            arch=self.settings.arch,
            sources=sources,
            dependencies=DependencySource(self.repository, keyring),
            work_dir=work / "build",
            source_date_epoch=template_epoch(tree / job.template.category / job.template.pkgname),
            timeout=self.settings.build_timeout,
            silence_timeout=self.settings.silence_timeout,
        )
        result = await run_build(request, CallbackLog(emit), settings=self.settings.runtime)
        if result.version != job.template.version:
            result.close()
            raise BuildFailed(
                template,
                "setup",
                f"the tree builds version {result.version}, the job asked for {job.template.version}",
            )
        return result

    def _tree(self, job: bus_pb2.BuildJob) -> Path:
        """The job's tree snapshot, unpacked once per tree and reused."""
        trees = self.settings.work_dir / "trees"
        unpacked = trees / job.tree_id
        if unpacked.is_dir():
            return unpacked
        tar = trees / f"{job.tree_id}.tar"
        if not tar.exists():
            try:
                self.artifacts.get_file(job.tree_key, tar)
            except BlobStoreError as error:
                raise InfrastructureError(f"tree snapshot {job.tree_key}: {error}") from error
        try:
            return unpack_snapshot(tar, job.tree_id, trees)
        finally:
            tar.unlink(missing_ok=True)

    def _sources(self, job: bus_pb2.BuildJob, directory: Path) -> dict[str, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        files: dict[str, Path] = {}
        for source in job.sources:
            if not _FILENAME.fullmatch(source.filename) or source.filename in {".", ".."}:
                raise BuildFailed(
                    f"{job.template.category}/{job.template.pkgname}",
                    "setup",
                    f"source file name {source.filename!r} is not a plain file name",
                )
            path = directory / source.filename
            try:
                digest = self.artifacts.get_file(source_key(source.sha256), path)
            except BlobStoreError as error:
                raise InfrastructureError(f"source {source.filename}: {error}") from error
            if digest.sha256 != source.sha256:
                raise InfrastructureError(
                    f"source {source.filename}: stored content has sha256 {digest.sha256}, "
                    f"expected {source.sha256}"
                )
            files[source.filename] = path
        return files

    async def _farm_keyring(self) -> Keyring:
        if self._keyring is None:
            self._keyring = await self.signer.public_keys()
        return self._keyring

    async def _stage(
        self, job: bus_pb2.BuildJob, result: BuildResult
    ) -> list[common_pb2.StagedPackage]:
        if self.current is not None:
            self.current.phase = "sign"
        staged = []
        for built in result.packages:
            signatures = await self.signer.sign_package(built.package.control_member, job.token)
            staged.append(await asyncio.to_thread(self._upload_package, job, built, signatures))
        return staged

    def _upload_package(
        self, job: bus_pb2.BuildJob, built: BuiltPackage, signatures: list[SignatureFile]
    ) -> common_pb2.StagedPackage:
        spool = self.settings.work_dir / job.job_id / f"{built.filename}.signed"
        spool.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with spool.open("wb") as out:
            for chunk in (signature_member(signatures), built.package.control_member):
                out.write(chunk)
                digest.update(chunk)
            for chunk in built.package.data.chunks():
                out.write(chunk)
                digest.update(chunk)
        key = staging_key(job.job_id, built.filename)
        try:
            put = self.artifacts.put_file(key, spool)
        except BlobStoreError as error:
            raise InfrastructureError(f"uploading {built.filename}: {error}") from error
        finally:
            spool.unlink(missing_ok=True)
        if put.sha256 != digest.hexdigest():
            raise InfrastructureError(f"{built.filename}: the store kept different bytes")
        return common_pb2.StagedPackage(
            name=built.info.pkgname,
            version=built.info.pkgver,
            arch=built.info.arch,
            category=job.template.category,
            filename=built.filename,
            blob_key=key,
            size=put.size,
            sha256=put.sha256,
        )

    async def _upload_log(self, job_id: str, buffer: LogBuffer) -> str:
        key = log_key(job_id)
        try:
            await asyncio.to_thread(
                self.artifacts.put_stream,
                key,
                io.BytesIO(buffer.getvalue()),
                len(buffer),
                content_type="text/plain; charset=utf-8",
            )
        except BlobStoreError as error:
            log.warning("log upload failed", job=job_id, error=str(error))
            return ""
        return key

    # --- helpers ----------------------------------------------------------

    def _log_buffer(self, job_id: str) -> LogBuffer:
        buffer = LogBuffer(job_id)
        self.logs[job_id] = buffer
        while len(self.logs) > self.settings.keep_logs:
            self.logs.popitem(last=False)
        return buffer

    async def _publish(self, routing_key: str, fill: Callable[[bus_pb2.Event], object]) -> None:
        event = new_event(self.settings.identity)
        fill(event)
        await self.bus.publish_event(routing_key, event, message_id=event.event_id)


def _remove(work: Path) -> None:
    if work.exists():
        remove_work_dir(work)
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(work)
