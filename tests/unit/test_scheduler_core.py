"""The scheduler's state machine on the example tree, with the other services played by the test.

The bus is the in-memory one and the store a local directory; templates are
evaluated for real (sandboxed), so these tests need bwrap.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from apkfarm.blobs import LocalBlobStore
from apkfarm.blobs.layout import source_key
from apkfarm.bus import Delivery, MemoryBus, names
from apkfarm.services.common.events import new_event
from apkfarm.services.common.jobtokens import (
    TokenIssuer,
    TokenVerifier,
    generate_token_key,
    load_private_key,
    load_public_keys,
)
from apkfarm.services.scheduler.core import (
    EVENT_QUEUE,
    SchedulerCore,
    SchedulerError,
    SchedulerSettings,
)
from apkfarm.services.scheduler.state import State, StateStore
from apkfarm.v1 import bus_pb2, common_pb2

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.sandbox


@dataclass
class Farm:
    """The scheduler plus queues the test reads jobs from, as fetcher/builder/indexer would."""

    core: SchedulerCore
    bus: MemoryBus
    artifacts: LocalBlobStore
    verifier: TokenVerifier
    fetches: asyncio.Queue[bus_pb2.FetchJob] = field(default_factory=asyncio.Queue)
    builds: asyncio.Queue[bus_pb2.BuildJob] = field(default_factory=asyncio.Queue)
    changes: list[common_pb2.Build] = field(default_factory=list)

    async def publish(self, fill: Callable[[bus_pb2.Event], None], key: str) -> None:
        event = new_event("test")
        fill(event)
        await self.bus.publish_event(key, event)

    async def settle(self) -> None:
        """Until the scheduler has handled every event and published everything it decided."""
        quiet = 0
        while quiet < 3:
            await asyncio.sleep(0)  # let the in-memory bus deliver
            await self.core.drain_outbox()
            busy = await self.bus.queue_depth(EVENT_QUEUE) or self.core.events_in_flight
            quiet = 0 if busy else quiet + 1

    def state(self, pkgname: str, arch: str = "x86_64") -> int:
        return self.core.get(pkgname, arch).state

    async def fetch_all(self) -> list[str]:
        """Play the fetcher: store every requested source and report it."""
        fetched = []
        while not self.fetches.empty():
            job = self.fetches.get_nowait()
            # The scheduler checks presence under the checksum, not content (the fetcher's job).
            self.artifacts.put_bytes(source_key(job.source.sha256), job.source.filename.encode())
            await self.publish(
                lambda e, j=job: e.fetch_done.CopyFrom(
                    bus_pb2.FetchDone(source=j.source, blob_key=source_key(j.source.sha256))
                ),
                names.FETCH_DONE,
            )
            fetched.append(job.source.filename)
        await self.settle()
        return fetched

    async def succeed(self, job: bus_pb2.BuildJob) -> None:
        await self.publish(
            lambda e: e.build_started.CopyFrom(
                bus_pb2.BuildStarted(job_id=job.job_id, template=job.template, builder="b")
            ),
            names.BUILD_STARTED,
        )
        staged = [
            common_pb2.StagedPackage(
                name=job.template.pkgname,
                version=job.template.version,
                arch=job.template.arch,
                category=job.template.category,
                filename=f"{job.template.pkgname}-{job.template.version}.apk",
                blob_key=f"staging/{job.job_id}/{job.template.pkgname}-{job.template.version}.apk",
            )
        ]
        await self.publish(
            lambda e: e.build_finished.CopyFrom(
                bus_pb2.BuildFinished(
                    job_id=job.job_id,
                    template=job.template,
                    success=True,
                    packages=staged,
                    duration_seconds=1.5,
                )
            ),
            names.BUILD_SUCCEEDED,
        )
        await self.settle()

    async def index(self, *jobs: bus_pb2.BuildJob) -> None:
        await self.publish(
            lambda e: e.index_published.CopyFrom(
                bus_pb2.IndexPublished(
                    category="main", arch="x86_64", generation=1, job_ids=[j.job_id for j in jobs]
                )
            ),
            names.INDEX_PUBLISHED,
        )
        await self.settle()

    async def fail(self, job: bus_pb2.BuildJob, *, retryable: bool, error: str = "boom") -> None:
        await self.publish(
            lambda e: e.build_finished.CopyFrom(
                bus_pb2.BuildFinished(
                    job_id=job.job_id,
                    template=job.template,
                    success=False,
                    error=error,
                    failed_phase="build",
                    retryable=retryable,
                )
            ),
            names.BUILD_FAILED,
        )
        await self.settle()

    def queued(self) -> list[bus_pb2.BuildJob]:
        jobs = []
        while not self.builds.empty():
            jobs.append(self.builds.get_nowait())
        return jobs


@asynccontextmanager
async def farm(tmp_path: Path, *, max_attempts: int = 3) -> AsyncIterator[Farm]:
    bus = MemoryBus()
    await bus.start()
    key = tmp_path / "jobtoken.key"
    public = key.with_suffix(".pub") if key.exists() else generate_token_key(key)
    artifacts = LocalBlobStore(tmp_path / "artifacts", durable=False)
    repository = LocalBlobStore(tmp_path / "repo", durable=False)
    core = SchedulerCore(
        SchedulerSettings(
            state_dir=tmp_path / "state",
            archs=("x86_64",),
            categories=("main", "user"),
            host_arch="x86_64",
            max_attempts=max_attempts,
            allow_local_trees=True,
            queue_depth_interval=3600,
        ),
        state=StateStore(tmp_path / "state" / "scheduler.db"),
        bus=bus,
        artifacts=artifacts,
        repository=repository,
        issuer=TokenIssuer(load_private_key(key)),
    )
    test_farm = Farm(core, bus, artifacts, TokenVerifier(load_public_keys([public])))

    def collector[M](queue: asyncio.Queue[M]) -> Callable[[Delivery[M]], Awaitable[None]]:
        async def handle(delivery: Delivery[M]) -> None:
            queue.put_nowait(delivery.message)

        return handle

    await bus.consume(
        names.FETCH_QUEUE, bus_pb2.FetchJob, collector(test_farm.fetches), prefetch=100
    )
    await bus.consume(
        names.build_queue("x86_64"), bus_pb2.BuildJob, collector(test_farm.builds), prefetch=100
    )

    async def on_change(delivery: Delivery[bus_pb2.Event]) -> None:
        test_farm.changes.append(delivery.message.build_changed.build)

    await bus.subscribe(["scheduler.build"], bus_pb2.Event, on_change)
    await core.start()
    try:
        yield test_farm
    finally:
        await core.stop(1)
        await bus.close(grace=1)
        core.state.close()


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_a_tree_builds_in_dependency_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with farm(tmp_path) as f:
            submission = await f.core.submit(local_path=str(EXAMPLES))
            await f.settle()
            assert {r.pkgname for r in submission.builds} >= {"libgreet", "greet", "greet-tools"}
            # Wave 0 needs its sources first; dependents wait.
            assert f.state("libgreet") == State.BUILD_STATE_FETCHING
            assert f.state("greet") == State.BUILD_STATE_WAITING
            assert f.state("greet-tools") == State.BUILD_STATE_WAITING
            fetched = await f.fetch_all()
            assert sorted(fetched) == [
                "libgreet-1.0.0.tar.gz",
                "tally-1.0.0.tar.gz",
                "wordfreq-1.0.0.tar.gz",
            ]
            first = f.queued()
            assert sorted(j.template.pkgname for j in first) == ["libgreet", "tally", "wordfreq"]
            libgreet = next(j for j in first if j.template.pkgname == "libgreet")
            grant = f.verifier.verify(libgreet.token)
            assert grant.job_id == libgreet.job_id
            # The declared packages, and the automatic splits a build may add to them.
            assert list(grant.packages)[:2] == ["libgreet", "libgreet-devel"]
            assert {"libgreet-man", "libgreet-devel-doc"} <= set(grant.packages)
            assert "openssh" not in grant.packages
            assert grant.template.version == "1.0.0-r0"
            assert libgreet.tree_key == f"trees/{libgreet.tree_id}.tar"
            assert f.artifacts.exists(libgreet.tree_key)

            await f.succeed(libgreet)
            assert f.state("libgreet") == State.BUILD_STATE_BUILT
            # Built is not enough: dependents wait for the index.
            assert f.state("greet") == State.BUILD_STATE_WAITING
            await f.index(libgreet)
            assert f.state("libgreet") == State.BUILD_STATE_DONE
            assert f.state("greet") == State.BUILD_STATE_FETCHING

            _, lines = f.core.explain("greet-tools", "x86_64")
            assert "waiting on greet (fetching)" in lines
            assert "waiting on tally (queued)" in lines

            await f.fetch_all()
            # Everything else until the tree is done.
            waiting_jobs = [j for j in first if j is not libgreet]
            for _ in range(10):
                jobs = [*waiting_jobs, *f.queued()]
                waiting_jobs = []
                for job in jobs:
                    await f.succeed(job)
                if jobs:
                    await f.index(*jobs)
                await f.fetch_all()
                if f.core.unfinished(submission.tree_id) == 0:
                    break
            tree, rows = f.core.list_builds()
            assert tree == submission.tree_id
            assert {r.pkgname: r.state for r in rows} == {
                r.pkgname: State.BUILD_STATE_DONE for r in rows
            }
            # greet got libgreet-devel into its sysroot.
            assert f.core.get("greet", "x86_64").build_depends == ["libgreet-devel"]
            assert any(
                c.template.pkgname == "greet" and c.state == State.BUILD_STATE_DONE
                for c in f.changes
            )

    run(scenario())


def test_a_failure_blocks_dependents_and_retry_unblocks(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with farm(tmp_path) as f:
            await f.core.submit(local_path=str(EXAMPLES))
            await f.settle()
            await f.fetch_all()
            libgreet = next(j for j in f.queued() if j.template.pkgname == "libgreet")
            await f.fail(libgreet, retryable=False, error="cc: error")
            assert f.state("libgreet") == State.BUILD_STATE_FAILED
            assert "cc: error" in f.core.get("libgreet", "x86_64").reason
            for dependent in ("greet", "greet-fortune"):
                assert f.state(dependent) == State.BUILD_STATE_BLOCKED
                assert "libgreet, which failed" in f.core.get(dependent, "x86_64").reason
            # Transitively: greet-tools waits on greet.
            assert f.state("greet-tools") == State.BUILD_STATE_BLOCKED

            retried = await f.core.retry("libgreet", "x86_64")
            await f.settle()
            assert retried.state == State.BUILD_STATE_QUEUED
            assert f.state("greet") == State.BUILD_STATE_WAITING
            again = next(j for j in f.queued() if j.template.pkgname == "libgreet")
            assert again.job_id != libgreet.job_id
            # An event about the old job is stale and changes nothing.
            await f.succeed(libgreet)
            assert f.state("libgreet") == State.BUILD_STATE_QUEUED

            with pytest.raises(SchedulerError, match="only failed"):
                await f.core.retry("libgreet", "x86_64")

    run(scenario())


def test_infrastructure_failures_are_retried_with_fresh_tokens_then_fail(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with farm(tmp_path, max_attempts=2) as f:
            await f.core.submit(local_path=str(EXAMPLES), packages=["tally"])
            await f.settle()
            await f.fetch_all()
            (first,) = f.queued()
            await f.fail(first, retryable=True, error="builder shut down")
            (second,) = f.queued()
            assert second.attempt == 2
            assert (
                f.verifier.verify(second.token).token_id != f.verifier.verify(first.token).token_id
            )
            await f.fail(second, retryable=True, error="builder shut down")
            assert f.state("tally") == State.BUILD_STATE_FAILED
            assert f.queued() == []

    run(scenario())


def test_a_source_that_cannot_be_fetched_fails_the_build(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with farm(tmp_path) as f:
            await f.core.submit(local_path=str(EXAMPLES), packages=["greet"])
            await f.settle()
            rows = {r.pkgname for r in f.core.list_builds()[1]}
            # Only greet and what it needs were planned.
            assert rows == {"greet", "libgreet"}
            job = f.fetches.get_nowait()
            await f.publish(
                lambda e: e.fetch_failed.CopyFrom(
                    bus_pb2.FetchFailed(source=job.source, error="sha256 mismatch: expected x")
                ),
                names.FETCH_FAILED,
            )
            await f.settle()
            assert f.state("libgreet") == State.BUILD_STATE_FAILED
            assert "sha256 mismatch" in f.core.get("libgreet", "x86_64").reason
            assert f.state("greet") == State.BUILD_STATE_BLOCKED

    run(scenario())


def test_cancel_blocks_dependents(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with farm(tmp_path) as f:
            await f.core.submit(local_path=str(EXAMPLES))
            await f.settle()
            cancelled = await f.core.cancel("libgreet", "x86_64")
            assert cancelled.state == State.BUILD_STATE_CANCELLED
            assert f.state("greet") == State.BUILD_STATE_BLOCKED
            assert "cancelled" in f.core.get("greet", "x86_64").reason
            with pytest.raises(SchedulerError, match="nothing to cancel"):
                await f.core.cancel("libgreet", "x86_64")

    run(scenario())


def test_a_restarted_scheduler_resumes(tmp_path: Path) -> None:
    async def first_life() -> str:
        async with farm(tmp_path) as f:
            await f.core.submit(local_path=str(EXAMPLES), packages=["greet"])
            await f.settle()
            await f.fetch_all()
            (libgreet,) = f.queued()
            await f.succeed(libgreet)
            # The index is published while the scheduler is down (events queue up durably
            # on the broker; here: the test hands it to the next life).
            return libgreet.job_id

    async def second_life(job_id: str) -> None:
        async with farm(tmp_path) as f:
            assert f.state("libgreet") == State.BUILD_STATE_BUILT
            job = bus_pb2.BuildJob(
                job_id=job_id,
                template=common_pb2.TemplateRef(
                    category="main", pkgname="libgreet", version="1.0.0-r0", arch="x86_64"
                ),
            )
            await f.index(job)
            assert f.state("libgreet") == State.BUILD_STATE_DONE
            # The new life picked up where the first stopped: greet's source is requested.
            assert f.state("greet") == State.BUILD_STATE_FETCHING
            assert [j.source.filename for j in [f.fetches.get_nowait()]] == ["greet-1.0.0.tar.gz"]

    job_id = asyncio.run(first_life())
    asyncio.run(second_life(job_id))


def test_unknown_archs_and_local_paths_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with farm(tmp_path) as f:
            with pytest.raises(SchedulerError, match="no builders"):
                await f.core.submit(local_path=str(EXAMPLES), archs=["mips"])
            f.core.settings = SchedulerSettings(
                **{**f.core.settings.__dict__, "allow_local_trees": False}
            )
            with pytest.raises(SchedulerError, match="does not accept local tree paths"):
                await f.core.submit(local_path=str(EXAMPLES))
            with pytest.raises(SchedulerError, match=re.escape("trees/<sha256>.tar")):
                await f.core.submit(tree_key_="trees/../../etc/passwd.tar")

    run(scenario())


def test_packages_the_indexer_rejects_fail_the_build(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with farm(tmp_path) as f:
            await f.core.submit(local_path=str(EXAMPLES), packages=["greet"])
            await f.settle()
            await f.fetch_all()
            (libgreet,) = f.queued()
            await f.succeed(libgreet)
            await f.publish(
                lambda e: e.package_rejected.CopyFrom(
                    bus_pb2.PackageRejected(
                        job_id=libgreet.job_id,
                        template=libgreet.template,
                        reason="sha256_mismatch: staged file differs",
                    )
                ),
                names.PACKAGE_REJECTED,
            )
            await f.settle()
            assert f.state("libgreet") == State.BUILD_STATE_FAILED
            assert "indexer rejected" in f.core.get("libgreet", "x86_64").reason
            assert f.state("greet") == State.BUILD_STATE_BLOCKED

    run(scenario())


def test_resubmitting_a_tree_replaces_its_plan_but_not_builds_in_progress(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with farm(tmp_path) as f:
            first = await f.core.submit(local_path=str(EXAMPLES), packages=["greet"])
            await f.settle()
            await f.fetch_all()
            (libgreet,) = f.queued()
            # Submitted again while libgreet is queued: it is not dispatched a second time.
            again = await f.core.submit(local_path=str(EXAMPLES), packages=["greet"])
            await f.settle()
            assert again.tree_id == first.tree_id
            assert f.queued() == []
            assert f.core.get("libgreet", "x86_64").job_id == libgreet.job_id
            # Asking for something else keeps the earlier submission's unfinished
            # builds (libgreet queued, greet waiting on it) and adds tally.
            other = await f.core.submit(local_path=str(EXAMPLES), packages=["tally"])
            await f.settle()
            assert {r.pkgname for r in f.core.list_builds(other.tree_id)[1]} == {
                "tally",
                "libgreet",
                "greet",
            }
            # Once those are over, a new submission's plan is exactly what it asks for.
            await f.succeed(libgreet)
            await f.index(libgreet)
            await f.core.cancel("greet", "x86_64")
            final = await f.core.submit(local_path=str(EXAMPLES), packages=["tally"])
            await f.settle()
            assert {r.pkgname for r in f.core.list_builds(final.tree_id)[1]} == {"tally"}

    run(scenario())
