"""The build sandbox, proven with hostile templates: no network, no writes outside its
directories, no host credentials, hung builds killed — and the host untouched.

Also: what a build sees (environment, uid, capabilities, root), that its log
streams live with phase markers in order, that cancelling kills it, and
that the same build twice gives the same bytes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import textwrap
import time
from pathlib import Path

import pytest
from build_support import (
    EXAMPLES,
    build,
    processes_of,
    request,
    template_text,
    write_template,
)
from conftest import require
from fixtures.examples import ExampleDistfiles

from apkfarm.build.log import LogEvent, LogLine, MemoryLog, PhaseFinished, PhaseStarted
from apkfarm.build.result import BuildFailed
from apkfarm.build.runner import BuilderSettings, run_build

pytestmark = pytest.mark.sandbox

UID_BASE = 2_150_000_000
UIDS = range(UID_BASE, UID_BASE + 1000)
SETTINGS = BuilderSettings(uid_base=UID_BASE, uid_count=1000, jobs=2)
ROOT_ONLY = os.geteuid() == 0


def run(tmp_path: Path, name: str, body: str, **kwargs: object) -> tuple[object, MemoryLog]:
    """Build a one-template tree; returns the result or the BuildFailed, and the log."""
    tree = tmp_path / "tree"
    write_template(tree, f"main/{name}", template_text(name, body))
    log = MemoryLog()
    req = request(tree, f"main/{name}", tmp_path / "work", **kwargs)  # type: ignore[arg-type]
    try:
        return build(req, log, SETTINGS), log
    except BuildFailed as failure:
        return failure, log


def failed(tmp_path: Path, name: str, body: str, **kwargs: object) -> tuple[BuildFailed, MemoryLog]:
    outcome, log = run(tmp_path, name, body, **kwargs)
    assert isinstance(outcome, BuildFailed), f"expected the build to fail:\n{log.text()}"
    return outcome, log


# --- network ---------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["build", "check", "install"])
def test_no_network_in_any_phase(tmp_path: Path, phase: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
    body = textwrap.dedent(f"""
        def {phase}(self):
            self.do("python3", "-c", "{probe}")
        """)
    if phase != "install":
        body += "\ndef install(self):\n    self.install_dir('usr/share/netprobe')\n"
    try:
        failure, _ = failed(tmp_path, "netprobe", body)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing reached the host's loopback
    finally:
        listener.close()
    assert failure.phase == phase and failure.reason == "error"
    assert "exit status 1" in failure.detail
    assert any("ConnectionRefusedError" in line or "unreachable" in line for line in failure.tail)


# --- writing ---------------------------------------------------------------------------

WRITE_TARGETS = {
    "/usr/bin/apkfarm-pwned": lambda tmp: Path("/usr/bin/apkfarm-pwned"),
    "/etc/apkfarm-pwned": lambda tmp: Path("/etc/apkfarm-pwned"),
    "/apkfarm-pwned": lambda tmp: Path("/apkfarm-pwned"),
    "/ports/main/writer/pwned": lambda tmp: tmp / "tree/main/writer/pwned",
    "/sysroot/pwned": lambda tmp: tmp / "work/sysroot/pwned",
    "/run/apkfarm/lib/pwned": lambda tmp: Path("/run/apkfarm/lib/pwned"),
}


@pytest.mark.parametrize("target", sorted(WRITE_TARGETS))
def test_writing_outside_its_directories_fails_and_the_host_is_untouched(
    tmp_path: Path, target: str
) -> None:
    body = f"""
    def build(self):
        self.do("sh", "-c", "echo pwned > {target}")

    def install(self):
        self.install_dir("usr/share/writer")
    """
    failure, _ = failed(tmp_path, "writer", body)
    assert failure.phase == "build"
    assert any("Read-only file system" in t or "Permission denied" in t for t in failure.tail)
    assert not WRITE_TARGETS[target](tmp_path).exists()


def test_its_own_directories_are_writable(tmp_path: Path) -> None:
    body = """
    def build(self):
        self.do("sh", "-c", "echo a > /tmp/a && echo b > b && mkdir -p /destdir/x && echo ok")

    def install(self):
        self.install_dir("usr/share/writer")
    """
    outcome, log = run(tmp_path, "writer", body)
    assert not isinstance(outcome, BuildFailed), log.text()
    assert "ok" in log.lines()


# --- credentials -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/ports/main/credprobe/credentials", "/etc/shadow", "/root/.ssh/id_ed25519"]
)
def test_host_credentials_cannot_be_read(tmp_path: Path, path: str) -> None:
    require(ROOT_ONLY, "the uid drop is tested where apkfarm runs: as root")
    body = f"""
    def build(self):
        self.do("cat", "{path}")

    def install(self):
        self.install_dir("usr/share/credprobe")
    """
    tree = tmp_path / "tree"
    directory = write_template(tree, "main/credprobe", template_text("credprobe", body))
    secret = directory / "credentials"
    secret.write_text("token=s3cr3t\n")
    secret.chmod(0o600)  # root's, as a host credentials file is
    log = MemoryLog()
    with pytest.raises(BuildFailed) as caught:
        build(request(tree, "main/credprobe", tmp_path / "work"), log, SETTINGS)
    assert caught.value.phase == "build"
    expected = "Permission denied" if path.startswith("/ports") else "No such file"
    assert any(expected in line for line in caught.value.tail), caught.value.tail
    assert "s3cr3t" not in log.text()


# --- hung and runaway builds -----------------------------------------------------------


def test_a_hung_build_is_killed_by_the_silence_watchdog(tmp_path: Path) -> None:
    body = """
    def build(self):
        self.do("sh", "-c", "sleep 600 & echo started; sleep 600")

    def install(self):
        self.install_dir("usr/share/hang")
    """
    begun = time.monotonic()
    failure, _ = failed(tmp_path, "hang", body, silence=2.0, timeout=120.0)
    assert time.monotonic() - begun < 30
    assert failure.reason == "silence" and failure.phase == "build"
    assert "no output for 2s" in str(failure) and "killed" in str(failure)
    assert failure.tail[-1] == "started"
    assert processes_of(UIDS) == []  # the background sleep died with the sandbox


def test_the_wall_clock_timeout_kills_a_chatty_build(tmp_path: Path) -> None:
    body = """
    def build(self):
        self.do("sh", "-c", "while true; do echo tick; sleep 0.2; done")

    def install(self):
        self.install_dir("usr/share/chatty")
    """
    failure, _ = failed(tmp_path, "chatty", body, silence=60.0, timeout=3.0)
    assert failure.reason == "timeout" and "timed out after 3s" in str(failure)
    assert processes_of(UIDS) == []


def test_too_much_output_stops_the_build(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    body = """
    def build(self):
        self.do("sh", "-c", "yes 0123456789 | head -c 5000000; sleep 600")

    def install(self):
        self.install_dir("usr/share/noisy")
    """
    write_template(tree, "main/noisy", template_text("noisy", body))
    settings = BuilderSettings(uid_base=UID_BASE, uid_count=1000, max_log_bytes=1 << 20)
    with pytest.raises(BuildFailed) as caught:
        build(request(tree, "main/noisy", tmp_path / "work"), MemoryLog(), settings)
    assert caught.value.reason == "log_limit"
    assert processes_of(UIDS) == []


def test_cancelling_the_build_kills_the_sandbox(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    body = """
    def build(self):
        self.do("sh", "-c", "echo waiting; sleep 600")

    def install(self):
        self.install_dir("usr/share/waiter")
    """
    write_template(tree, "main/waiter", template_text("waiter", body))

    async def scenario() -> None:
        started = asyncio.Event()

        class Log:
            async def emit(self, event: LogEvent) -> None:
                if isinstance(event, LogLine) and event.text == "waiting":
                    started.set()

        task = asyncio.create_task(
            run_build(request(tree, "main/waiter", tmp_path / "work"), Log(), settings=SETTINGS)
        )
        await asyncio.wait_for(started.wait(), 60)
        assert processes_of(UIDS) != []
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert processes_of(UIDS) == []


# --- what a build sees -----------------------------------------------------------------


def test_a_clean_fixed_unprivileged_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APKFARM_TEST_TOKEN", "s3cr3t-token")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:3128")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-key")
    script = (
        "env | sort; echo uid=$(id -u) gid=$(id -g) user=$(id -un); echo pwd=$(pwd); "
        "echo root=$(ls / | tr '\\\\n' ' '); echo etc=$(ls /etc | tr '\\\\n' ' '); "
        "grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status; echo host=$(hostname)"
    )
    body = f"""
    def build(self):
        self.do("sh", "-c", "{script}")

    def install(self):
        self.install_dir("usr/share/envprobe")
    """
    outcome, log = run(tmp_path, "envprobe", body)
    assert not isinstance(outcome, BuildFailed), log.text()
    lines = log.lines()
    text = "\n".join(lines)
    assert "s3cr3t" not in text and "proxy" not in text.lower()
    assert "SOURCE_DATE_EPOCH=1704067200" in lines and "HOME=/tmp" in lines
    assert "pwd=/builddir/envprobe-1.0.0" in lines  # the fixed in-sandbox build path
    (ids,) = [line for line in lines if line.startswith("uid=")]
    uid = int(ids.split()[0].removeprefix("uid="))
    if ROOT_ONLY:
        assert uid in UIDS and "user=build" in ids
    assert "CapEff:\t0000000000000000" in lines and "CapPrm:\t0000000000000000" in lines
    assert "NoNewPrivs:\t1" in lines
    (root,) = [line for line in lines if line.startswith("root=")]
    visible = set(root.removeprefix("root=").split())
    assert {"builddir", "destdir", "sysroot", "ports", "tmp", "usr", "etc"} <= visible
    assert not visible & {"root", "home", "var", "srv", "opt", "mnt", "media", "work"}
    (etc,) = [line for line in lines if line.startswith("etc=")]
    assert "shadow" not in etc and "ssl" not in etc and "passwd" in etc
    assert "host=apkfarm-build" in lines


def test_the_log_streams_live_in_phase_order(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    body = """
    def pre_build(self):
        self.log("before the build")

    def build(self):
        self.do("sh", "-c", "echo first-line; sleep 1.5; echo second-line")

    def install(self):
        self.install_dir("usr/share/streamer")
    """
    write_template(tree, "main/streamer", template_text("streamer", body))
    received: list[tuple[float, LogEvent]] = []

    class Log:
        async def emit(self, event: LogEvent) -> None:
            received.append((time.monotonic(), event))

    asyncio.run(
        run_build(request(tree, "main/streamer", tmp_path / "work"), Log(), settings=SETTINGS)
    )
    events = [e for _, e in received]
    at = {e.text: t for t, e in received if isinstance(e, LogLine)}
    assert at["second-line"] - at["first-line"] > 1.0  # each line as it was printed
    started = [e.phase for e in events if isinstance(e, PhaseStarted)]
    assert started == [
        "setup", "extract", "prepare", "patch", "configure", "build", "check", "install",
        "split", "package",
    ]  # fmt: skip
    build_start = events.index(
        next(e for e in events if isinstance(e, PhaseStarted) and e.phase == "build")
    )
    build_end = events.index(
        next(e for e in events if isinstance(e, PhaseFinished) and e.phase == "build")
    )
    inside = [e.text for e in events[build_start:build_end] if isinstance(e, LogLine)]
    assert inside == [
        "=> streamer: running pre_build",
        "=> streamer: before the build",
        "+ sh -c 'echo first-line; sleep 1.5; echo second-line'",
        "first-line",
        "second-line",
    ]
    assert all(e.phase == "build" for e in events[build_start:build_end] if isinstance(e, LogLine))
    finished = events[build_end]
    assert isinstance(finished, PhaseFinished) and finished.seconds > 1.4


def test_the_same_build_twice_gives_the_same_bytes(
    tmp_path: Path, example_distfiles: ExampleDistfiles
) -> None:
    digests = []
    for attempt in ("one", "two"):
        result = build(
            request(EXAMPLES, "main/libgreet", tmp_path / attempt, sources=example_distfiles.files),
            settings=SETTINGS,
        )
        with result:
            digests.append(
                [
                    (p.package.control_member, b"".join(p.package.data.chunks()))
                    for p in result.packages
                ]
            )
    assert digests[0] == digests[1]
