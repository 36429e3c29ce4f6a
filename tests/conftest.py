"""Shared pytest configuration: test tiers and how a missing dependency is handled.

Tiers are pytest markers (see pyproject.toml). Outside CI a tier whose tools are
missing is skipped with the reason; with ``CI=true`` the same situation is a
failure, because CI must never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
VECTORS = REPO_ROOT.parent / "shared" / "vectors"
if not VECTORS.is_dir():
    VECTORS = Path(os.environ.get("APKFARM_VECTORS", "/work/shared/vectors"))

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Fixtures every test directory can use: private servers, the examples' sources.
pytest_plugins = ["fixtures.servers", "fixtures.examples"]


def require(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when a tier's dependency is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing test dependency in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _bwrap_works() -> bool:
    return shutil.which("bwrap") is not None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("sandbox"):
        require(_bwrap_works(), "bubblewrap (bwrap) is not installed")
    if item.get_closest_marker("cross"):
        for tool in ("qemu-aarch64-static", "aarch64-linux-gnu-gcc", "riscv64-linux-gnu-gcc"):
            require(shutil.which(tool) is not None, f"{tool} is not installed")


@pytest.fixture(scope="session")
def vectors() -> Path:
    require(VECTORS.is_dir(), f"test vectors not found at {VECTORS}")
    return VECTORS
