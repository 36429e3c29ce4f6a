"""Running the build driver: output streamed line by line, phase events, limits enforced.

The driver writes the build's output to one pipe (stdout and stderr
together) and its events to another (the control descriptor). Before an
event is handled the output pipe is drained, and the driver waits for the
event's acknowledgement before it goes on: every line is logged in the
phase that produced it (see ``apkfarm.build.driver.protocol``).

Limits, each ending the build with a clear reason:

* ``timeout`` — wall-clock time of the whole driver run;
* ``silence`` — no output and no event for that long (a hung build);
* ``log_limit`` — more output than ``max_log_bytes``.

Ending means killing everything: for a sandboxed run the sandbox's PID 1
(which bwrap names on its info descriptor), so the kernel kills every
process of its PID namespace at once, then bwrap itself; for the
benchmark's unsandboxed run, the process group. Cancelling the awaiting
task does the same before the cancellation propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from apkfarm.build.log import (
    BuildLog,
    LogEvent,
    LogLine,
    PhaseFinished,
    PhaseStarted,
    PhaseStatus,
)
from apkfarm.build.result import FailureReason, PhaseTiming

__all__ = ["DriverOutcome", "DriverRun", "OutputLimits"]

_CHUNK = 1 << 16
_MAX_CONTROL_BUFFER = 2 << 20
_PIPE_GRACE = 5.0  # how long to wait for output after the driver exited (unsandboxed)

# argv for the given control and acknowledgement descriptors and bwrap's info
# descriptor (None when unsandboxed)
ArgvFactory = Callable[[int, int, int | None], Sequence[str]]


@dataclass(frozen=True)
class OutputLimits:
    timeout: float
    silence: float
    max_log_bytes: int = 256 << 20
    max_line_bytes: int = 64 << 10
    tail_lines: int = 40


@dataclass
class DriverOutcome:
    """How the driver run ended."""

    returncode: int | None
    phase: str  # the phase running last
    packages: list[dict[str, Any]] | None = None  # the result event
    failure: tuple[str, str] | None = None  # (phase, message) of the failed event
    killed: FailureReason | None = None
    kill_message: str = ""
    phases: list[PhaseTiming] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    protocol_error: str | None = None


class DriverRun:
    """One run of the driver process (see the module docstring)."""

    def __init__(
        self,
        argv: ArgvFactory,
        env: Mapping[str, str],
        log: BuildLog,
        limits: OutputLimits,
        *,
        sandboxed: bool,
        started: float,
        phase: str = "build",
    ) -> None:
        self._argv = argv
        self._env = dict(env)
        self._log = log
        self._limits = limits
        self._sandboxed = sandboxed
        self._started = started  # monotonic time the build started: log times count from it
        self.outcome = DriverOutcome(returncode=None, phase=phase)
        self._tail: deque[str] = deque(maxlen=limits.tail_lines)
        self._events: asyncio.Queue[LogEvent | None] = asyncio.Queue()
        self._output = bytearray()
        self._control = bytearray()
        self._log_bytes = 0
        self._last_activity = time.monotonic()
        self._phase_started: dict[str, float] = {}
        self._sandbox_pid: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._fds: dict[str, int] = {}
        self._ack = -1
        self._open: set[str] = set()
        self._wake = asyncio.Event()

    def _elapsed(self) -> float:
        return time.monotonic() - self._started

    # --- the run -----------------------------------------------------------------------

    async def run(self) -> DriverOutcome:
        loop = asyncio.get_running_loop()
        out_read, out_write = os.pipe()
        control_read, control_write = os.pipe()
        ack_read, ack_write = os.pipe()
        self._ack = ack_write
        pass_fds = [control_write, ack_read]
        info_read: int | None = None
        info_write: int | None = None
        if self._sandboxed:
            info_read, info_write = os.pipe()
            pass_fds.append(info_write)
        self._fds = {"output": out_read, "control": control_read}
        if info_read is not None:
            self._fds["info"] = info_read
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self._argv(control_write, ack_read, info_write),
                stdin=subprocess.DEVNULL,
                stdout=out_write,
                stderr=out_write,
                env=self._env,
                pass_fds=pass_fds,
                close_fds=True,
                start_new_session=not self._sandboxed,
            )
        except BaseException:
            for fd in [*self._fds.values(), ack_write]:
                os.close(fd)
            raise
        finally:
            for child_end in (out_write, control_write, ack_read, info_write):
                if child_end is not None:
                    os.close(child_end)
        for name, fd in self._fds.items():
            os.set_blocking(fd, False)
            self._open.add(name)
        loop.add_reader(out_read, self._on_output)
        loop.add_reader(control_read, self._on_control)
        if info_read is not None:
            loop.add_reader(info_read, self._on_info)
        writer = asyncio.create_task(self._write_events())
        try:
            await self._supervise()
        except BaseException:
            self._kill("error", "the build was cancelled")
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._process.wait())
            raise
        finally:
            for name in list(self._open):
                self._close(name)
            os.close(ack_write)
            await self._events.put(None)
            await writer
        self.outcome.tail = list(self._tail)
        return self.outcome

    async def _supervise(self) -> None:
        process = self._process
        assert process is not None
        exited: asyncio.Future[Any] = asyncio.ensure_future(process.wait())
        exited_at: float | None = None
        try:
            while True:
                now = time.monotonic()
                if exited.done() and exited_at is None:
                    exited_at = now
                if exited.done() and not (self._open - {"info"}):
                    break
                if exited_at is not None and now - exited_at > _PIPE_GRACE:
                    # something the driver started still holds the pipes
                    self._kill_group()
                    break
                limit = self._limits
                deadline = self._started + limit.timeout
                quiet_until = self._last_activity + limit.silence
                if self.outcome.killed is None:
                    if now >= deadline:
                        self._kill("timeout", f"timed out after {limit.timeout:g}s")
                    elif now >= quiet_until:
                        self._kill("silence", f"no output for {limit.silence:g}s")
                wait = min(deadline, quiet_until) - now if self.outcome.killed is None else 1.0
                if exited_at is not None:
                    wait = min(wait, exited_at + _PIPE_GRACE - now)
                self._wake.clear()
                woken: asyncio.Future[Any] = asyncio.ensure_future(self._wake.wait())
                waiting: set[asyncio.Future[Any]] = {exited, woken}
                await asyncio.wait(
                    waiting, timeout=max(wait, 0.01), return_when=asyncio.FIRST_COMPLETED
                )
                woken.cancel()
        finally:
            if not exited.done():
                exited.cancel()
        self.outcome.returncode = process.returncode

    # --- killing ----------------------------------------------------------------------

    def _kill(self, reason: FailureReason, message: str) -> None:
        if self.outcome.killed is not None:
            return
        self.outcome.killed = reason
        self.outcome.kill_message = message
        process = self._process
        if self._sandboxed:
            if self._sandbox_pid is None:
                self._on_info()
            if self._sandbox_pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(self._sandbox_pid, signal.SIGKILL)
        else:
            self._kill_group()
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        self._wake.set()

    def _kill_group(self) -> None:
        process = self._process
        if process is not None and not self._sandboxed:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    # --- reading ------------------------------------------------------------------------

    def _close(self, name: str) -> None:
        if name not in self._open:
            return
        self._open.discard(name)
        fd = self._fds[name]
        asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        self._wake.set()

    def _read(self, name: str) -> bytes | None:
        """A chunk, b"" at end of file, None when nothing is there now."""
        if name not in self._open:
            return b""
        try:
            data = os.read(self._fds[name], _CHUNK)
        except BlockingIOError:
            return None
        if not data:
            self._close(name)
        return data

    def _on_info(self) -> None:
        data = self._read("info")
        if not data:
            return
        try:
            pid = json.loads(data).get("child-pid")
        except (ValueError, AttributeError):
            return
        if isinstance(pid, int) and pid > 1:
            self._sandbox_pid = pid
            if self.outcome.killed is not None:  # killed before bwrap named it
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def _on_output(self) -> None:
        while True:
            data = self._read("output")
            if data is None:
                return
            if not data:
                if self._output:
                    self._line(bytes(self._output))
                    self._output.clear()
                return
            self._last_activity = time.monotonic()
            self._log_bytes += len(data)
            if self._log_bytes > self._limits.max_log_bytes:
                self._kill("log_limit", f"more than {self._limits.max_log_bytes} bytes of output")
            self._output += data
            self._split_lines()

    def _split_lines(self) -> None:
        buffer = self._output
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            self._line(bytes(buffer[start:end]))
            start = end + 1
        del buffer[:start]
        limit = self._limits.max_line_bytes
        while len(buffer) > limit:
            self._line(bytes(buffer[:limit]))
            del buffer[:limit]

    def _line(self, raw: bytes) -> None:
        limit = self._limits.max_line_bytes
        for start in range(0, max(len(raw), 1), limit):
            text = raw[start : start + limit].decode("utf-8", "replace").rstrip("\r")
            self._tail.append(text)
            self._events.put_nowait(LogLine(text, self.outcome.phase, self._elapsed()))

    def _on_control(self) -> None:
        self._on_output()  # every line written before this event is logged before it
        while True:
            data = self._read("control")
            if not data:  # nothing more now, or the end
                break
            self._last_activity = time.monotonic()
            self._control += data
            if len(self._control) > _MAX_CONTROL_BUFFER:
                self._protocol_error("an oversized event")
                return
        while True:
            end = self._control.find(b"\n")
            if end < 0:
                return
            line = bytes(self._control[:end])
            del self._control[: end + 1]
            try:
                event = json.loads(line)
            except ValueError:
                self._protocol_error("a malformed event")
                return
            if not isinstance(event, dict):
                self._protocol_error("a malformed event")
                return
            self._handle(event)
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(self._ack, b"\x06")  # the driver may go on

    def _protocol_error(self, what: str) -> None:
        self.outcome.protocol_error = f"the build driver sent {what}"
        self._kill("error", self.outcome.protocol_error)

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        phase = event.get("phase")
        if kind == "phase" and isinstance(phase, str):
            if event.get("state") == "start":
                self.outcome.phase = phase
                self._phase_started[phase] = time.monotonic()
                self._events.put_nowait(PhaseStarted(phase, self._elapsed()))
                return
            status: PhaseStatus = "skipped" if event.get("status") == "skipped" else "ok"
            seconds = time.monotonic() - self._phase_started.get(phase, time.monotonic())
            reason = event.get("reason")
            self.outcome.phases.append(PhaseTiming(phase, seconds, status))
            self._events.put_nowait(
                PhaseFinished(
                    phase, self._elapsed(), seconds, status, str(reason) if reason else ""
                )
            )
        elif kind == "failed":
            failed_phase = phase if isinstance(phase, str) else self.outcome.phase
            self.outcome.failure = (failed_phase, str(event.get("message", "")))
        elif kind == "result":
            packages = event.get("packages")
            if isinstance(packages, list) and all(isinstance(p, dict) for p in packages):
                self.outcome.packages = packages
            else:
                self._protocol_error("a malformed result")
        else:
            self._protocol_error(f"an unknown event {kind!r}")

    async def _write_events(self) -> None:
        while True:
            event = await self._events.get()
            if event is None:
                return
            await self._log.emit(event)
