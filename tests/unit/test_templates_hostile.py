"""Hostile templates: each fails alone with a clear error; the rest loads; the host is untouched.

The hostile templates live in ``user``; ``main`` is evaluated by other
worker processes, which a hostile ``user`` template cannot reach.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_templates_helpers import template_source, write_tree

from apkfarm.templates import EvaluatorSettings, LoadResult, TreeLoader

pytestmark = pytest.mark.sandbox

TIMEOUT = 3.0
UID_BASE = 2_000_100_000


def hostile(name: str, body: str) -> str:
    return template_source(name, "import os, sys\n" + body, options=["!lint"])


@pytest.fixture(scope="module")
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    yield server
    server.close()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths outside the tree that hostile templates aim at."""
    base = tmp_path_factory.mktemp("host")
    base.chmod(0o755)
    secret = base / "credentials.json"
    secret.write_text('{"aws_secret_access_key": "AKIA-TOP-SECRET"}')
    secret.chmod(0o600)
    return {
        "secret": secret,
        "target": base / "pwned",
        "tmp": Path(f"/tmp/apkfarm-pwned-{os.getpid()}"),
    }


@pytest.fixture(scope="module")
def result(
    tmp_path_factory: pytest.TempPathFactory,
    listener: socket.socket,
    host: dict[str, Path],
) -> Iterator[LoadResult]:
    port = listener.getsockname()[1]
    os.environ["APKFARM_TEST_CREDENTIAL"] = "ghp_TOP-SECRET-TOKEN"
    tree = write_tree(
        tmp_path_factory.mktemp("ports"),
        {
            "main/good": template_source("good"),
            "main/detector": template_source(
                "detector",
                "import sys as _sys\n"
                "if '_apkfarm_poison' in _sys.modules:\n    broken = 'poisoned'\n",
            ),
            "user/socket": hostile(
                "socket",
                f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n",
            ),
            "user/write-host": hostile("write-host", f"open({str(host['target'])!r}, 'w')\n"),
            "user/write-tmp": hostile("write-tmp", f"open({str(host['tmp'])!r}, 'w')\n"),
            "user/write-tree": hostile(
                "write-tree", "open(str(self.template_path / 'template.py'), 'a').write('x')\n"
            ),
            "user/write-files": hostile("write-files", "open(str(self.files_path / 'new'), 'w')\n"),
            "user/read-secret": hostile(
                "read-secret", f"pkgdesc = open({str(host['secret'])!r}).read()\n"
            ),
            "user/read-shadow": hostile("read-shadow", "pkgdesc = open('/etc/shadow').read()\n"),
            "user/read-env": hostile("read-env", "configure_env = dict(os.environ)\n"),
            "user/fork-bomb": hostile("fork-bomb", "while True:\n    os.fork()\n"),
            "user/thread": hostile(
                "thread", "import threading\nthreading.Thread(target=print).start()\n"
            ),
            "user/subprocess": hostile(
                "subprocess", "import subprocess\nsubprocess.run(['/bin/sh', '-c', 'id'])\n"
            ),
            "user/memory": hostile("memory", "_hog = bytearray(8 << 30)\n"),
            "user/spin": hostile("spin", "while True:\n    pass\n"),
            "user/sleep": hostile("sleep", "import time\ntime.sleep(10**6)\n"),
            "user/suicide": hostile("suicide", "os.kill(os.getpid(), 9)\n"),
            "user/exit": hostile("exit", "sys.exit(0)\n"),
            "user/noise": hostile("noise", "print('x' * 100000)\nos.write(1, b'{\"id\": 1}\\n')\n"),
            "user/poison": hostile("poison", "sys.modules['_apkfarm_poison'] = sys\n"),
            "user/zz-good": template_source("zz-good"),
        },
    )
    tree.chmod(0o755)
    # Writable for everyone on the host: only the read-only bind stops a write.
    (tree / "user" / "write-tree" / "template.py").chmod(0o666)
    (tree / "user" / "write-files" / "files").mkdir(mode=0o777)
    (tree / "user" / "write-files" / "files").chmod(0o777)
    settings = EvaluatorSettings(jobs=2, timeout=TIMEOUT, uid_base=UID_BASE)
    try:
        with TreeLoader(tree, settings=settings) as loader:
            loaded = loader.load("x86_64", host_arch="x86_64")
    finally:
        del os.environ["APKFARM_TEST_CREDENTIAL"]
    yield loaded


def error(result: LoadResult, name: str) -> str:
    found = [i.message for i in result.errors if i.template == f"user/{name}"]
    assert len(found) == 1, (name, found)
    return found[0]


def test_the_rest_of_the_tree_loads(result: LoadResult) -> None:
    assert set(result.templates) == {
        "main/good",
        "main/detector",
        "user/noise",
        "user/zz-good",
        "user/poison",
        "user/read-env",
    }


def test_no_network(result: LoadResult, listener: socket.socket) -> None:
    assert "ConnectionRefusedError" in error(result, "socket")
    with pytest.raises(TimeoutError):
        listener.accept()  # the host's loopback never saw a connection


def test_no_writes_to_the_host_or_the_tree(result: LoadResult, host: dict[str, Path]) -> None:
    assert "No such file or directory" in error(result, "write-host")
    assert not host["target"].exists()
    assert "No such file or directory" in error(result, "write-tmp")
    assert not host["tmp"].exists()
    assert "Read-only file system" in error(result, "write-tree")
    assert "Read-only file system" in error(result, "write-files")
    assert not (result.tree.root / "user" / "write-files" / "files" / "new").exists()
    assert result.tree.templates["user/write-tree"].path.read_text().endswith("'a').write('x')\n")


def test_no_credentials(result: LoadResult) -> None:
    assert "FileNotFoundError" in error(result, "read-secret")
    assert "FileNotFoundError" in error(result, "read-shadow")
    env = result.templates["user/read-env"].fields["configure_env"]
    assert "APKFARM_TEST_CREDENTIAL" not in env
    assert set(env) <= {"PATH", "PWD", "LC_ALL", "LC_CTYPE"}
    everything = repr([t.to_json() for t in result.templates.values()]) + repr(result.errors)
    assert "TOP-SECRET" not in everything


def test_no_processes_or_threads(result: LoadResult) -> None:
    assert "Resource temporarily unavailable" in error(result, "fork-bomb")
    assert "can't start new thread" in error(result, "thread")
    assert "Resource temporarily unavailable" in error(result, "subprocess")


def test_memory_is_bounded(result: LoadResult) -> None:
    assert error(result, "memory") == "ran out of memory (line 9)"


def test_hangs_time_out(result: LoadResult) -> None:
    assert error(result, "spin") == f"evaluation timed out after {TIMEOUT:g}s"
    assert error(result, "sleep") == f"evaluation timed out after {TIMEOUT:g}s"


def test_a_worker_that_dies_is_replaced(result: LoadResult) -> None:
    assert error(result, "suicide").startswith("the evaluation worker died while evaluating it")
    assert error(result, "exit") == "evaluation failed (line 9): SystemExit: 0"


def test_output_noise_does_not_confuse_the_protocol(result: LoadResult) -> None:
    assert result.templates["user/noise"].pkgname == "noise"


def test_user_templates_cannot_poison_main_ones(result: LoadResult) -> None:
    assert result.templates["main/detector"].excluded is None


def test_no_process_outlives_the_evaluator(result: LoadResult) -> None:
    # The fixture closed the loader: every worker, killed or not, must be gone.
    leftovers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            uid = entry.stat().st_uid
        except FileNotFoundError:
            continue
        if UID_BASE <= uid < UID_BASE + 65536:
            leftovers.append(entry.name)
    assert leftovers == []
