"""Supervising a driver process: ordered output and events, limits, protocol errors.

The "drivers" here are small Python scripts of the test's own speaking the
driver protocol (events on a descriptor, one acknowledgement byte back),
run without a sandbox in their own process group.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

from apkfarm.build.log import LogLine, MemoryLog, PhaseFinished, PhaseStarted
from apkfarm.build.supervise import DriverOutcome, DriverRun, OutputLimits

PRELUDE = """
import json, os, sys, time
control, ack = int(sys.argv[1]), int(sys.argv[2])
def send(**event):
    sys.stdout.flush()
    os.write(control, (json.dumps(event) + "\\n").encode())
    assert os.read(ack, 1)
"""


def supervise(
    tmp_path: Path, body: str, limits: OutputLimits | None = None
) -> tuple[DriverOutcome, MemoryLog, float]:
    script = tmp_path / "driver.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    log = MemoryLog()

    def argv(control: int, ack: int, info: int | None) -> list[str]:
        return [sys.executable, "-u", str(script), str(control), str(ack)]

    started = time.monotonic()
    run = DriverRun(
        argv,
        {"PATH": "/usr/bin:/bin"},
        log,
        limits or OutputLimits(timeout=60, silence=30),
        sandboxed=False,
        started=started,
    )
    outcome = asyncio.run(run.run())
    return outcome, log, time.monotonic() - started


def test_lines_are_logged_in_the_phase_that_printed_them(tmp_path: Path) -> None:
    outcome, log, _ = supervise(
        tmp_path,
        """
        send(event="phase", phase="configure", state="start")
        for i in range(200):
            os.system(f"echo configure-{i}")  # a child writes straight into the pipe
        send(event="phase", phase="configure", state="end", status="ok", seconds=0.1)
        send(event="phase", phase="build", state="start")
        print("building")
        send(event="phase", phase="build", state="end", status="ok", seconds=0.1)
        send(event="result", packages=[{"name": "foo", "auto": False}])
        """,
    )
    assert outcome.returncode == 0 and outcome.packages == [{"name": "foo", "auto": False}]
    assert outcome.killed is None and outcome.failure is None
    kinds = [
        (type(e).__name__, e.phase, getattr(e, "text", ""))
        for e in log.events
        if not isinstance(e, LogLine) or e.text in ("configure-0", "configure-199", "building")
    ]
    assert kinds == [
        ("PhaseStarted", "configure", ""),
        ("LogLine", "configure", "configure-0"),
        ("LogLine", "configure", "configure-199"),
        ("PhaseFinished", "configure", ""),
        ("PhaseStarted", "build", ""),
        ("LogLine", "build", "building"),
        ("PhaseFinished", "build", ""),
    ]
    assert [t.phase for t in outcome.phases] == ["configure", "build"]


def test_a_failure_event_names_its_phase(tmp_path: Path) -> None:
    outcome, _, _ = supervise(
        tmp_path,
        """
        send(event="phase", phase="check", state="start")
        print("FAIL: 1 of 3 tests")
        send(event="failed", phase="check", message="command 'make check' failed")
        sys.exit(1)
        """,
    )
    assert outcome.failure == ("check", "command 'make check' failed")
    assert outcome.returncode == 1 and outcome.tail == ["FAIL: 1 of 3 tests"]


def ended(pid: int, within: float = 5.0) -> bool:
    """Whether process `pid` is gone, or dead and not yet reaped, within `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)  # a failed test leaves nothing running
            return False
        time.sleep(0.05)


def test_silence_kills_the_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    outcome, _, seconds = supervise(
        tmp_path,
        f"""
        import subprocess
        child = subprocess.Popen(["sleep", "600"])
        with open({str(pid_file)!r}, "w") as stream:
            stream.write(str(child.pid))
        send(event="phase", phase="build", state="start")
        print("about to hang")
        time.sleep(600)
        """,
        OutputLimits(timeout=60, silence=1.0),
    )
    assert outcome.killed == "silence" and outcome.phase == "build"
    assert outcome.kill_message == "no output for 1s"
    assert seconds < 10
    assert ended(int(pid_file.read_text()))  # the background child died with the group


def test_timeout_and_log_limit(tmp_path: Path) -> None:
    outcome, _, seconds = supervise(
        tmp_path,
        """
        while True:
            print("tick")
            time.sleep(0.1)
        """,
        OutputLimits(timeout=1.5, silence=30),
    )
    assert outcome.killed == "timeout" and 1.4 < seconds < 10
    outcome, _, _ = supervise(
        tmp_path,
        """
        sys.stdout.write("x" * 3_000_000)
        time.sleep(600)
        """,
        OutputLimits(timeout=60, silence=30, max_log_bytes=1_000_000, max_line_bytes=100_000),
    )
    assert outcome.killed == "log_limit"


def test_long_lines_are_split(tmp_path: Path) -> None:
    _, log, _ = supervise(
        tmp_path,
        """
        print("y" * 250)
        send(event="result", packages=[])
        """,
        OutputLimits(timeout=60, silence=30, max_line_bytes=100),
    )
    assert [len(line) for line in log.lines()] == [100, 100, 50]


def test_a_malformed_event_ends_the_run(tmp_path: Path) -> None:
    outcome, _, _ = supervise(
        tmp_path,
        """
        os.write(control, b"this is not json\\n")
        time.sleep(600)
        """,
    )
    assert outcome.protocol_error == "the build driver sent a malformed event"
    assert outcome.killed == "error"
    outcome, _, _ = supervise(
        tmp_path,
        """
        send(event="surprise")
        time.sleep(600)
        """,
    )
    assert outcome.protocol_error == "the build driver sent an unknown event 'surprise'"


def test_exit_without_a_result(tmp_path: Path) -> None:
    outcome, log, _ = supervise(tmp_path, "print('bye'); os._exit(3)")
    assert outcome.returncode == 3 and outcome.packages is None and outcome.failure is None
    assert log.lines() == ["bye"]


def test_phase_events_carry_status_and_reason(tmp_path: Path) -> None:
    _, log, _ = supervise(
        tmp_path,
        """
        send(event="phase", phase="check", state="start")
        send(event="phase", phase="check", state="end", status="skipped", reason="cross build")
        send(event="result", packages=[])
        """,
    )
    started, finished = log.events
    assert isinstance(started, PhaseStarted)
    assert isinstance(finished, PhaseFinished)
    assert (finished.status, finished.reason) == ("skipped", "cross build")


def test_no_descriptor_is_left_open(tmp_path: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    supervise(tmp_path, "send(event='result', packages=[])")
    assert set(os.listdir("/proc/self/fd")) == before
