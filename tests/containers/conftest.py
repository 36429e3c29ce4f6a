"""The container tier: apkfarm's images run as a farm with testcontainers.

Every test here is ``@pytest.mark.docker``. The images are built once per
session by ``tools/images.py`` (cached: a later run only checks them), and
every container a test starts is removed when it ends.

testcontainers reads its settings when it is imported. This VM has
``/.dockerenv``, so without them it would guess the Docker bridge gateway
(a 172.x address the tests must never talk to) and start a Ryuk reaper
whose image cannot be pulled here; ``tools/devtool.py test`` sets the same
values.
"""

from __future__ import annotations

import os

os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TC_HOST", "127.0.0.1")
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("DOCKER_HOST", "unix:///var/run/docker.sock")

import subprocess
from types import ModuleType

import pytest
from conftest import require
from fixtures.tools import load_tool

from containers.container_farm import ARCHS, DOCKER


@pytest.fixture(scope="session")
def images() -> ModuleType:
    """The farm's images and the local RabbitMQ/S3 stand-ins, built (or found current) once."""
    engine = subprocess.run([DOCKER, "info"], capture_output=True, check=False)
    require(engine.returncode == 0, "no Docker engine answers (tools/devtool.py engine)")
    tool = load_tool("images")
    timings = tool.build_all(ARCHS, local_infra=True)
    print(
        f"images: {sum(timings.values()):.1f}s ({', '.join(f'{k} {v:.1f}s' for k, v in timings.items())})"
    )
    return tool
