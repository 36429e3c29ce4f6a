"""Evaluating templates in sandboxed worker processes, never in this one.

Each worker is ``python -I -S worker.py`` inside a bwrap sandbox (see
``apkfarm.sandbox``) that holds only the Python runtime, the worker script
and the ports tree, read-only, as its own unprivileged uid. A worker
evaluates many templates, one batch at a time, for one category only: a
template can disturb the templates evaluated after it in the same process,
so ``user`` templates never share a process with ``main`` ones. A worker
holds up to two batches, so that it never waits for this process between
them.

How many workers each category gets is decided by ``prepare()`` from the
number of templates each has to evaluate: the configured ``jobs`` shared in
proportion, at least one per category (with 2 CPUs and cports' 76 % main /
24 % user: two ``main`` workers and one ``user`` worker, all working from
the start). Without it, at most ``jobs`` workers run, an idle one making
room for another category.

The parent enforces a per-template wall-clock timeout: a template that does
not answer in time is reported ("evaluation timed out after 30s"), its
worker is killed, and the rest of its batch goes to a fresh worker. A worker
that dies gets its template retried once on a fresh worker before the
template is blamed. Workers stay alive between ``evaluate()`` calls, so a
long-lived evaluator (the scheduler's) re-evaluates an edited template in
about a millisecond.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import marshal
import math
import os
import selectors
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from apkfarm.profiles import BuildContext
from apkfarm.sandbox import (
    MIB,
    Bind,
    ResourceLimits,
    SandboxError,
    SandboxSpec,
    Symlink,
    library_binds,
    python_runtime,
    require_bwrap,
)
from apkfarm.templates.fields import spec_digest, worker_spec

__all__ = [
    "TREE_MOUNT",
    "WORKER_SCRIPT",
    "EvaluationRequest",
    "EvaluatorSettings",
    "Progress",
    "TemplateEvaluator",
    "worker_version",
]

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
WORKER_MOUNT = PurePosixPath("/run/apkfarm/worker.py")
TREE_MOUNT = PurePosixPath("/ports")  # must equal worker.MOUNT
MAX_LINE_BYTES = 16 * MIB
# Requests read ahead while no worker is ready yet (bounds the sources held).
READ_AHEAD_AT_START = 4096
STDERR_TAIL = 8192

Progress = Callable[[int, int], None]


def _frame(message: dict[str, Any]) -> bytes:
    """A message to a worker: marshal data after its length (see worker.py).

    Marshal only this way: what a worker sends back is parsed as JSON.
    """
    data = marshal.dumps(message, 4)
    return len(data).to_bytes(4, "big") + data


_EXIT = _frame({"op": "exit"})

# Worker uids are handed out across every evaluator of this process, starting
# at a per-process offset, so that concurrent workers rarely share one.
_UIDS = itertools.count(os.getpid() * 64)
ResultHandler = Callable[[str, dict[str, Any]], None]


@functools.cache
def worker_version() -> str:
    """Identifies the worker's behaviour: its code and the tables it is given."""
    digest = hashlib.sha256(WORKER_SCRIPT.read_bytes())
    digest.update(spec_digest().encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class EvaluationRequest:
    """One template to evaluate; results are returned under `key`."""

    key: str
    category: str
    name: str
    source: str
    repositories: tuple[str, ...]


def _default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


def allot_workers(counts: Mapping[str, int], jobs: int) -> dict[str, int]:
    """Workers per category for evaluating `counts` templates per category.

    ``jobs`` workers are shared in proportion to the counts; every category
    with work gets at least one (categories never share a worker) and none
    more than it has templates.
    """
    busy = {category: count for category, count in counts.items() if count > 0}
    total = sum(busy.values())
    return {
        category: max(1, min(count, round(jobs * count / total)))
        for category, count in busy.items()
    }


@dataclass(frozen=True)
class EvaluatorSettings:
    """How many workers, how long a template may take, what a worker may use."""

    jobs: int = field(default_factory=_default_jobs)
    timeout: float = 30.0
    startup_timeout: float = 30.0
    batch_size: int = 32
    limits: ResourceLimits = field(
        default_factory=lambda: ResourceLimits(
            address_space=768 * MIB, cpu_seconds=3600, file_size=1 * MIB, processes=1
        )
    )
    # Each worker runs as its own host uid from this range (when we are root),
    # so that RLIMIT_NPROC counts that worker alone. Nothing else may use them.
    uid_base: int = 2_000_000_000
    uid_count: int = 65536
    # The interpreter inside the sandbox (Python >= 3.10; default: this
    # process's own). Compiling templates is most of the work, so a build with
    # PGO/LTO evaluates markedly faster.
    python: Path | None = None


@dataclass
class _Item:
    request: EvaluationRequest
    id: int
    attempts: int = 0


class _Worker:
    """One sandboxed worker process and what it is doing."""

    def __init__(self, category: str, spec: SandboxSpec, command: list[str]) -> None:
        self.category = category
        info_read, info_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                spec.argv(command, info_fd=info_write),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=spec.popen_env(),
                close_fds=True,
                pass_fds=(info_write,),
            )
        except BaseException:
            os.close(info_read)
            raise
        finally:
            os.close(info_write)
        self.info = info_read  # bwrap writes {"child-pid": N} here
        os.set_blocking(info_read, False)
        self._sandbox_pid: int | None = None
        assert self.process.stdin and self.process.stdout and self.process.stderr
        self.stdin = self.process.stdin.fileno()
        self.stdout = self.process.stdout.fileno()
        self.stderr = self.process.stderr.fileno()
        for fd in (self.stdin, self.stdout, self.stderr):
            os.set_blocking(fd, False)
        self.ready = False
        self.batch: deque[_Item] = deque()
        self.pending = bytearray()  # bytes still to write to stdin
        self.writing = False  # stdin registered for write events
        self.lines = bytearray()  # stdout not yet split into lines
        self.stderr_tail = bytearray()
        self.started = time.monotonic()
        self.item_started = self.started
        self.closed = False
        self.cpu_seconds = 0.0  # as the worker last reported it

    @property
    def busy(self) -> bool:
        return bool(self.batch) or not self.ready

    def sandbox_pid(self) -> int | None:
        """PID 1 of the sandbox's PID namespace, if bwrap has said it."""
        if self._sandbox_pid is None:
            try:
                pid = json.loads(os.read(self.info, 4096)).get("child-pid")
            except (OSError, ValueError, AttributeError):
                return None
            if isinstance(pid, int) and pid > 1:
                self._sandbox_pid = pid
        return self._sandbox_pid

    def describe_exit(self) -> str:
        code = self.process.poll()
        tail = self.stderr_tail.decode("utf-8", "replace").strip()
        status = "still running" if code is None else f"exit status {code}"
        return f"{status}; stderr: {tail[-2000:]}" if tail else status


class TemplateEvaluator:
    """Evaluates templates of one ports tree in sandboxed workers.

    Use as a context manager, or call ``close()``; workers are kept warm
    between ``evaluate()`` calls until then.
    """

    def __init__(self, tree: Path, settings: EvaluatorSettings | None = None) -> None:
        self.tree = Path(tree).resolve()
        self.settings = settings or EvaluatorSettings()
        if self.settings.jobs < 1:
            raise SandboxError("evaluator needs at least one job")
        self._bwrap = require_bwrap()
        self._spec, self._command = self._sandbox()
        self._workers: list[_Worker] = []
        self._selector = selectors.DefaultSelector()
        self._ids = itertools.count(1)
        self._init_frame = _frame({"op": "init", "spec": worker_spec()})
        self.started_workers = 0
        self._retiring: list[tuple[_Worker, float]] = []
        self.stopped_cpu_seconds = 0.0  # CPU time of workers already stopped
        self._on_result: ResultHandler | None = None
        self._progress: Progress | None = None
        self._pulled = 0
        self._allotment: dict[str, int] = {}  # workers per category, from prepare()

    def prepare(self, counts: Mapping[str, int]) -> None:
        """Size each category's pool for `counts` templates to evaluate (see
        ``allot_workers``) and start the workers it lacks now, so that their
        start-up overlaps with whatever the caller does next (reading the
        templates). The sizes hold until the next ``prepare()``."""
        self._allotment = allot_workers(counts, self.settings.jobs)
        for category, wanted in self._allotment.items():
            have = sum(1 for w in self._workers if w.category == category)
            for _ in range(wanted - have):
                self._start(category)

    def prestart(self, categories: Sequence[str]) -> None:
        """Start one idle worker per entry of `categories` now (up to ``jobs`` in all),
        so that their start-up overlaps with whatever the caller does next."""
        for category in categories:
            if len(self._workers) >= self.settings.jobs:
                break
            self._start(category)

    # --- sandbox ---------------------------------------------------------------------

    def _sandbox(self) -> tuple[SandboxSpec, list[str]]:
        base = SandboxSpec(bwrap=self._bwrap)
        # Both look-ups wait on child processes (the interpreter's probe, ldd)
        # the first time in a process: run them side by side.
        helpers: list[tuple[tuple[Bind, ...], tuple[Symlink, ...]]] = []
        failures: list[BaseException] = []

        def find_helpers() -> None:
            try:
                helpers.append(library_binds((base.setpriv, base.prlimit)))
            except BaseException as error:  # re-raised below, in this thread
                failures.append(error)

        finder = threading.Thread(target=find_helpers, name="apkfarm-sandbox-libraries")
        finder.start()
        try:
            runtime = self.runtime = python_runtime(self.settings.python)
        finally:
            finder.join()
        if failures:
            raise failures[0]
        helper_libraries, helper_links = helpers[0]
        binds: list[Bind] = list(runtime.binds)
        for bind in helper_libraries:
            if bind not in binds:
                binds.append(bind)
        binds.append(Bind(WORKER_SCRIPT, WORKER_MOUNT))
        binds.append(Bind(self.tree, TREE_MOUNT))
        symlinks = list(runtime.symlinks)
        symlinks += [link for link in helper_links if link not in symlinks]
        spec = dataclasses.replace(
            base,
            binds=tuple(binds),
            symlinks=tuple(symlinks),
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
            hostname="apkfarm-eval",
            limits=self.settings.limits,
        )
        command = [str(runtime.executable), "-I", "-S", "-B", str(WORKER_MOUNT)]
        return spec, command

    def _start(self, category: str) -> _Worker:
        uid = self.settings.uid_base + next(_UIDS) % self.settings.uid_count
        spec = dataclasses.replace(self._spec, uid=uid, gid=uid)
        try:
            worker = _Worker(category, spec, self._command)
        except OSError as error:
            raise SandboxError(f"cannot start the template evaluation sandbox: {error}") from error
        self.started_workers += 1
        self._workers.append(worker)
        self._selector.register(worker.stdout, selectors.EVENT_READ, (worker, "out"))
        self._selector.register(worker.stderr, selectors.EVENT_READ, (worker, "err"))
        self._send(worker, self._init_frame)
        return worker

    def _detach(self, worker: _Worker) -> None:
        worker.closed = True
        for fd in (worker.stdout, worker.stderr, *([worker.stdin] if worker.writing else [])):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(fd)

    def _ask_to_exit(self, worker: _Worker) -> bool:
        """Tell an idle worker to exit; False if it cannot even be told."""
        try:
            os.set_blocking(worker.stdin, True)
            os.write(worker.stdin, _EXIT)
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                assert worker.process.stdin is not None
                worker.process.stdin.close()
        return True

    def _kill(self, worker: _Worker) -> None:
        # Kill the sandbox's PID 1 first: that takes every process inside
        # with it. Its PID is still bwrap's unreaped child, so it cannot
        # have been reused.
        pid = worker.sandbox_pid()
        if pid is not None and worker.process.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            # bwrap exits once PID 1 is gone, which is once every process
            # inside is gone: then nothing of the sandbox is left.
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=5)
        with contextlib.suppress(OSError):
            worker.process.kill()
        worker.process.wait()

    def _release(self, worker: _Worker) -> None:
        # What the worker said last on stderr explains its death.
        with contextlib.suppress(OSError):
            while data := os.read(worker.stderr, 65536):
                worker.stderr_tail += data
                del worker.stderr_tail[:-STDERR_TAIL]
        with contextlib.suppress(OSError):
            os.close(worker.info)
        with contextlib.suppress(OSError):
            assert worker.process.stdin is not None
            worker.process.stdin.close()
        # An evaluation returns with its last result, before the worker's
        # "done" (which reports its CPU time) is read: read what is left.
        with contextlib.suppress(OSError):
            while len(worker.lines) < MAX_LINE_BYTES and (data := os.read(worker.stdout, 65536)):
                worker.lines += data
        for line in worker.lines.split(b"\n"):
            if line.startswith(b'{"op":"done"'):
                with contextlib.suppress(ValueError, AttributeError):
                    cpu = json.loads(line).get("cpu")
                    if isinstance(cpu, int | float):
                        worker.cpu_seconds = float(cpu)
        for stream in (worker.process.stdout, worker.process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.stopped_cpu_seconds += worker.cpu_seconds

    def _stop(self, worker: _Worker, *, kill: bool) -> None:
        """Stop `worker` now: ask an idle one to exit, kill a busy or stuck one."""
        if worker.closed:
            return
        self._detach(worker)
        if not kill and not worker.busy and self._ask_to_exit(worker):
            try:
                worker.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                kill = True  # a template left it unable to exit
        else:
            kill = True
        if kill:
            self._kill(worker)
        self._release(worker)
        self._workers.remove(worker)

    def _retire(self, worker: _Worker) -> None:
        """Ask an idle worker to exit and move on; ``_reap`` collects it later."""
        self._detach(worker)
        self._workers.remove(worker)
        if not self._ask_to_exit(worker):
            self._kill(worker)
            self._release(worker)
            return
        self._retiring.append((worker, time.monotonic() + 2.0))

    def _reap(self, *, wait: bool = False) -> None:
        """Collect retired workers that have exited (all of them with `wait`)."""
        for entry in list(self._retiring):
            worker, deadline = entry
            if worker.process.poll() is None:
                if not wait and time.monotonic() < deadline:
                    continue
                try:
                    worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self._kill(worker)  # a template left it unable to exit
            self._release(worker)
            self._retiring.remove(entry)

    @property
    def cpu_seconds(self) -> float:
        """CPU time all workers of this evaluator have spent (as they report it)."""
        live = [*self._workers, *(w for w, _ in self._retiring)]
        return self.stopped_cpu_seconds + sum(w.cpu_seconds for w in live)

    def close(self) -> None:
        """Stop every worker."""
        for worker in list(self._workers):
            self._stop(worker, kill=worker.busy)
        self._reap(wait=True)
        self._selector.close()

    def __enter__(self) -> TemplateEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- protocol ----------------------------------------------------------------------

    def _send(self, worker: _Worker, data: bytes) -> None:
        worker.pending += data
        self._flush(worker)

    def _flush(self, worker: _Worker) -> None:
        try:
            while worker.pending:
                written = os.write(worker.stdin, worker.pending)
                del worker.pending[:written]
        except BlockingIOError:
            pass
        except OSError:
            worker.pending.clear()  # the worker is gone; its stdout will say EOF
        # Wait for the pipe to drain only while something is left to write.
        if worker.pending and not worker.writing:
            self._selector.register(worker.stdin, selectors.EVENT_WRITE, (worker, "in"))
            worker.writing = True
        elif not worker.pending and worker.writing:
            self._selector.unregister(worker.stdin)
            worker.writing = False

    def _give_batch(self, worker: _Worker, items: list[_Item], context: dict[str, Any]) -> None:
        message = {
            "op": "batch",
            "context": context,
            "items": [
                {
                    "id": item.id,
                    "category": item.request.category,
                    "name": item.request.name,
                    "source": item.request.source,
                    "repositories": list(item.request.repositories),
                }
                for item in items
            ],
        }
        worker.batch.extend(items)
        worker.item_started = time.monotonic()
        self._send(worker, _frame(message))

    # --- the loop ------------------------------------------------------------------------

    def evaluate(
        self,
        requests: Iterable[EvaluationRequest],
        context: BuildContext,
        progress: Progress | None = None,
        on_result: ResultHandler | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Evaluate `requests` for `context`; results by request key.

        `requests` is consumed lazily, a little ahead of the workers, so a
        caller that produces them (reading and hashing template files) keeps
        the workers busy from the first few templates on.

        A result is the worker's report (``{"ok": True, "fields": ...}`` or
        ``{"ok": False, "error": ...}``); results the environment caused
        (timeouts, crashed workers) carry ``"transient": True``.
        `on_result(key, result)` sees each result as it arrives, so callers
        can work while the workers still evaluate. `progress(done, total)`
        counts results against the requests seen so far.
        Raises SandboxError when no worker can be started at all.
        """
        results: dict[str, dict[str, Any]] = {}
        context_data = context.to_json()
        queues: dict[str, deque[_Item]] = {}
        source = iter(requests)
        exhausted = False
        pulled = 0
        batch_size = self.settings.batch_size
        self._on_result = on_result
        self._progress = progress
        try:
            while True:
                # How far ahead of the workers requests are read: each may hold
                # two batches, and one more waits for it. While none is ready
                # yet, reading on is the only useful work.
                if any(w.ready for w in self._workers):
                    ahead = max(len(self._workers), self.settings.jobs) * batch_size * 3
                else:
                    ahead = READ_AHEAD_AT_START
                queued = sum(len(q) for q in queues.values())
                # A batch's worth at a time, so that batches go out and
                # workers are heard from in between.
                chunk = batch_size
                while not exhausted and queued < ahead and chunk:
                    request = next(source, None)
                    if request is None:
                        exhausted = True
                        break
                    queues.setdefault(request.category, deque()).append(
                        _Item(request, next(self._ids))
                    )
                    queued += 1
                    pulled += 1
                    chunk -= 1
                self._pulled = pulled
                if self._retiring:
                    self._reap()
                self._dispatch(queues, context_data, exhausted=exhausted)
                active = [w for w in self._workers if w.busy]
                if not active:
                    if exhausted and not any(queues.values()):
                        break
                    if exhausted:  # pragma: no cover - dispatch always places work
                        raise SandboxError("template evaluation made no progress")
                    continue
                now = time.monotonic()
                more = not exhausted and sum(len(q) for q in queues.values()) < ahead
                wait = 0.0 if more else min(self._deadline(w) for w in active) - now
                for key, _ in self._selector.select(max(0.0, wait)):
                    worker, kind = key.data
                    if worker.closed:
                        continue
                    if kind == "in":
                        self._flush(worker)
                    elif kind == "err":
                        self._read_stderr(worker)
                    else:
                        self._read_stdout(worker, queues, results)
                now = time.monotonic()
                for worker in [w for w in self._workers if w.busy and now >= self._deadline(w)]:
                    self._expire(worker, queues, results)
        except BaseException:
            for worker in [w for w in self._workers if w.busy]:
                self._stop(worker, kill=True)
            raise
        return results

    def _deadline(self, worker: _Worker) -> float:
        if not worker.ready:
            return worker.started + self.settings.startup_timeout + self.settings.timeout
        return worker.item_started + self.settings.timeout

    def _dispatch(
        self, queues: dict[str, deque[_Item]], context: dict[str, Any], *, exhausted: bool = True
    ) -> None:
        jobs = self.settings.jobs
        batch_size = self.settings.batch_size
        for category, queue in queues.items():
            allotted = self._allotment.get(category)
            while queue:
                # A ready worker may hold a second batch, so that it never waits
                # for this process between batches; a starting one gets one.
                takers = [
                    w
                    for w in self._workers
                    if w.category == category
                    and (not w.batch or (w.ready and len(w.batch) <= self.settings.batch_size))
                ]
                worker = min(takers, key=lambda w: len(w.batch), default=None)
                if worker is None:
                    if allotted is not None:
                        if sum(1 for w in self._workers if w.category == category) >= allotted:
                            break
                    elif len(self._workers) >= jobs:
                        # Make room: an idle worker whose category has nothing left.
                        spare = next(
                            (w for w in self._workers if not w.busy and not queues.get(w.category)),
                            None,
                        )
                        if spare is None:
                            break
                        self._retire(spare)
                    worker = self._start(category)
                if exhausted:  # the last ones: spread them over the pool
                    size = max(1, min(batch_size, math.ceil(len(queue) / (allotted or jobs))))
                elif len(queue) < batch_size and worker.batch:
                    break  # more are coming: wait for a full batch while this one is busy
                else:
                    size = batch_size
                items = [queue.popleft() for _ in range(min(size, len(queue)))]
                self._give_batch(worker, items, context)

    def _read_stderr(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.stderr, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(worker.stderr)
            return
        worker.stderr_tail += data
        del worker.stderr_tail[:-STDERR_TAIL]

    def _read_stdout(
        self,
        worker: _Worker,
        queues: dict[str, deque[_Item]],
        results: dict[str, dict[str, Any]],
    ) -> None:
        try:
            data = os.read(worker.stdout, 65536)  # a pipe holds 64 KiB; more only costs allocation
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._died(worker, queues, results)
            return
        worker.lines += data
        start = 0
        try:
            while True:
                end = worker.lines.find(b"\n", start)
                if end < 0:
                    if len(worker.lines) - start > MAX_LINE_BYTES:
                        self._broken(worker, queues, results, "a result over 16 MiB")
                    return
                line = worker.lines[start:end]
                start = end + 1
                if not self._handle(worker, line, queues, results):
                    return
        finally:
            del worker.lines[:start]  # once per read, not once per line

    def _handle(
        self,
        worker: _Worker,
        line: bytearray,
        queues: dict[str, deque[_Item]],
        results: dict[str, dict[str, Any]],
    ) -> bool:
        """Act on one line from a worker; False when the worker had to be dropped."""
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            self._broken(worker, queues, results, "output that is not a JSON object")
            return False
        if not worker.ready:
            if message.get("op") != "ready" or message.get("protocol") != 1:
                self._broken(worker, queues, results, "an unexpected greeting")
                return False
            worker.ready = True
            worker.item_started = time.monotonic()
            return True
        if message.get("op") == "done":
            cpu = message.get("cpu")
            if isinstance(cpu, int | float):
                worker.cpu_seconds = float(cpu)
            return True
        if not worker.batch or message.get("id") != worker.batch[0].id:
            self._broken(worker, queues, results, "a result for another template")
            return False
        item = worker.batch.popleft()
        message.pop("id", None)
        message.pop("transient", None)
        self._record(results, item.request.key, message)
        worker.item_started = time.monotonic()
        return True

    # --- failures ----------------------------------------------------------------------

    def _requeue(self, worker: _Worker, queues: dict[str, deque[_Item]]) -> None:
        queue = queues.setdefault(worker.category, deque())
        queue.extendleft(reversed(worker.batch))
        worker.batch.clear()

    def _fail_current(
        self, worker: _Worker, results: dict[str, dict[str, Any]], message: str
    ) -> None:
        item = worker.batch.popleft()
        self._record(results, item.request.key, {"ok": False, "error": message, "transient": True})

    def _record(self, results: dict[str, dict[str, Any]], key: str, result: dict[str, Any]) -> None:
        results[key] = result
        if self._on_result is not None:
            self._on_result(key, result)
        if self._progress is not None:
            self._progress(len(results), self._pulled)

    def _expire(
        self,
        worker: _Worker,
        queues: dict[str, deque[_Item]],
        results: dict[str, dict[str, Any]],
    ) -> None:
        if not worker.ready:
            detail = worker.describe_exit()
            self._stop(worker, kill=True)
            raise SandboxError(f"the template evaluation sandbox did not start: {detail}")
        self._fail_current(
            worker, results, f"evaluation timed out after {self.settings.timeout:g}s"
        )
        self._requeue(worker, queues)
        self._stop(worker, kill=True)

    def _died(
        self,
        worker: _Worker,
        queues: dict[str, deque[_Item]],
        results: dict[str, dict[str, Any]],
    ) -> None:
        self._stop(worker, kill=True)
        if not worker.ready:
            raise SandboxError(
                f"the template evaluation sandbox did not start: {worker.describe_exit()}"
            )
        if worker.batch:
            current = worker.batch[0]
            current.attempts += 1
            if current.attempts >= 2:
                self._fail_current(
                    worker,
                    results,
                    f"the evaluation worker died while evaluating it ({worker.describe_exit()})",
                )
        self._requeue(worker, queues)

    def _broken(
        self,
        worker: _Worker,
        queues: dict[str, deque[_Item]],
        results: dict[str, dict[str, Any]],
        what: str,
    ) -> None:
        self._stop(worker, kill=True)
        if not worker.ready:
            raise SandboxError(
                f"the template evaluation sandbox sent {what}: {worker.describe_exit()}"
            )
        if worker.batch:
            self._fail_current(worker, results, f"the evaluation worker sent {what}")
        self._requeue(worker, queues)
