"""The bwrap sandbox: its argv (pure) and what a process inside can and cannot do (bwrap)."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
from pathlib import Path, PurePosixPath

import pytest
from conftest import require

from apkfarm.apk.keys import generate_key_pair
from apkfarm.sandbox import (
    Bind,
    ResourceLimits,
    SandboxError,
    SandboxSpec,
    Symlink,
    Tmpfs,
    library_binds,
    python_runtime,
)


def pairs(argv: list[str], option: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == option]


def test_argv_binds_only_what_is_listed_read_only() -> None:
    spec = SandboxSpec(
        binds=(
            Bind(Path("/opt/runtime")),
            Bind(Path("/srv/tree"), PurePosixPath("/ports")),
            Bind(Path("/srv/out"), PurePosixPath("/out"), writable=True),
        ),
        symlinks=(Symlink("usr/lib", PurePosixPath("/lib")),),
        tmpfs=(Tmpfs(PurePosixPath("/tmp"), size=1 << 20),),
        as_root=True,
    )
    argv = spec.argv(["/bin/true"])
    assert ("/", "/") not in pairs(argv, "--ro-bind") + pairs(argv, "--bind")
    assert ("/srv/tree", "/ports") in pairs(argv, "--ro-bind")
    assert ("/opt/runtime", "/opt/runtime") in pairs(argv, "--ro-bind")
    assert pairs(argv, "--bind") == [("/srv/out", "/out")]
    assert ("usr/lib", "/lib") in pairs(argv, "--symlink")
    assert argv[argv.index("--tmpfs") - 2 : argv.index("--tmpfs") + 2] == [
        "--size",
        str(1 << 20),
        "--tmpfs",
        "/tmp",
    ]
    # parents of mount points are created traversable, not bwrap's 0700
    assert argv[argv.index("/opt") - 3 : argv.index("/opt") + 1] == [
        "--perms",
        "0755",
        "--dir",
        "/opt",
    ]


def test_argv_isolates_and_drops_privileges_when_root() -> None:
    argv = SandboxSpec(uid=2_000_000_123, gid=2_000_000_123, as_root=True).argv(["cmd", "arg"])
    for option in (
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-net",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ):
        assert option in argv
    # no user namespace: it would map the sandbox to host root
    assert "--unshare-user" not in argv and "--unshare-all" not in argv
    cap = argv.index("--cap-drop")
    assert argv[cap : cap + 6] == [
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CAP_SETUID",
        "--cap-add",
        "CAP_SETGID",
    ]
    command = argv[argv.index("--") + 1 :]
    assert command[0].endswith("/setpriv")
    assert "--reuid=2000000123" in command and "--clear-groups" in command
    limits = command[command.index("--") + 1 :]
    assert limits[0].endswith("/prlimit")
    assert "--nproc=1" in limits and "--as=536870912" in limits and "--core=0" in limits
    assert limits[-2:] == ["cmd", "arg"]


def test_argv_for_unprivileged_callers_uses_a_user_namespace() -> None:
    argv = SandboxSpec(as_root=False).argv(["cmd"])
    assert "--unshare-all" in argv and "--share-net" not in argv
    assert not any(a.endswith("/setpriv") for a in argv)
    assert "--share-net" in SandboxSpec(as_root=False, network=True).argv(["cmd"])
    assert "--unshare-net" not in SandboxSpec(as_root=True, network=True).argv(["cmd"])


def test_limits_can_be_left_out() -> None:
    spec = SandboxSpec(limits=ResourceLimits(None, None, None, None, None, None), as_root=True)
    assert not any(a.endswith("/prlimit") for a in spec.argv(["cmd"]))
    with pytest.raises(SandboxError, match="empty"):
        spec.argv([])


def test_the_environment_is_exactly_the_given_one() -> None:
    spec = SandboxSpec(env={"LC_ALL": "C.UTF-8"}, as_root=True)
    argv = spec.argv(["cmd"])
    assert "--clearenv" in argv and pairs(argv, "--setenv") == [("LC_ALL", "C.UTF-8")]
    assert spec.popen_env() == {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


# --- a real sandbox ----------------------------------------------------------------

PROBE = r"""
import json, os, resource, socket, sys
report = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
          "env": dict(os.environ), "root": sorted(os.listdir("/"))}
try:
    report["secret"] = open(sys.argv[1]).read()
except OSError as error:
    report["secret_error"] = type(error).__name__
try:
    os.fork()
    report["forked"] = True
except OSError as error:
    report["fork_error"] = error.errno
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=2)
    report["connected"] = True
except OSError as error:
    report["connect_error"] = type(error).__name__
try:
    open("/probe-was-here", "w")
    report["wrote"] = True
except OSError as error:
    report["write_error"] = type(error).__name__
report["nproc"] = resource.getrlimit(resource.RLIMIT_NPROC)[0]
print(json.dumps(report))
"""


def run_probe(
    tmp_path: Path, secret: Path, port: int, *, bind_secret: bool = False
) -> dict[str, object]:
    runtime = python_runtime()
    base = SandboxSpec()
    helper_binds, _ = library_binds((base.setpriv, base.prlimit))
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    probe.chmod(0o644)
    tmp_path.chmod(0o755)
    spec = dataclasses.replace(
        base,
        binds=(
            *runtime.binds,
            *helper_binds,
            Bind(probe, PurePosixPath("/probe.py")),
            *([Bind(secret)] if bind_secret else []),
        ),
        symlinks=runtime.symlinks,
        uid=2_000_000_900,
        gid=2_000_000_900,
    )
    argv = spec.argv([str(runtime.executable), "-I", "-S", "/probe.py", str(secret), str(port)])
    done = subprocess.run(
        argv, capture_output=True, text=True, env=spec.popen_env(), timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


@pytest.mark.sandbox
def test_inside_the_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require(os.geteuid() == 0, "the uid drop is tested where apkfarm runs: as root")
    monkeypatch.setenv("APKFARM_TEST_TOKEN", "s3cr3t-token")
    secret = tmp_path / "credentials"
    secret.write_text("password=hunter2")
    secret.chmod(0o600)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    try:
        report = run_probe(tmp_path, secret, port)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing from inside ever reached the host's loopback
    finally:
        listener.close()
    assert report["uid"] == 2_000_000_900 and report["gid"] == 2_000_000_900
    assert report["groups"] == []
    assert "secret" not in report and report["secret_error"] == "FileNotFoundError"
    assert "APKFARM_TEST_TOKEN" not in json.dumps(report["env"])
    assert set(report["env"]) <= {"PATH", "PWD", "LC_CTYPE"}  # bwrap sets PWD
    assert report.get("forked") is None and report["fork_error"] == 11  # EAGAIN
    assert report.get("connected") is None
    assert report.get("wrote") is None and not Path("/probe-was-here").exists()
    assert report["nproc"] == 1
    assert "etc" not in report["root"] and "home" not in report["root"]


@pytest.mark.sandbox
def test_a_root_only_file_stays_unreadable_even_if_bound_by_mistake(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "the uid drop is tested where apkfarm runs: as root")
    # A real signing key, made now and written 0600 as keygen writes it.
    secret = generate_key_pair(tmp_path / "keys", "farm@example.org").private_path
    report = run_probe(tmp_path, secret, 9, bind_secret=True)
    assert "secret" not in report and report["secret_error"] == "PermissionError"
