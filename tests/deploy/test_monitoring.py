"""Alert rules and the Grafana dashboard: valid PromQL over the farm's own metric names."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from deploy_support import REPO_ROOT, render_overlay, tool

DASHBOARD = REPO_ROOT / "k8s" / "components" / "monitoring" / "apkfarm-dashboard.json"
# The metric names of the service conventions.
CONVENTION_METRICS = {
    "apkfarm_builds_total",
    "apkfarm_build_duration_seconds",
    "apkfarm_queue_depth",
    "apkfarm_fetch_bytes_total",
    "apkfarm_sign_requests_total",
    "apkfarm_sign_refusals_total",
    "apkfarm_index_packages",
    "apkfarm_index_generation",
    "apkfarm_index_published_timestamp_seconds",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    names = set()
    for found in re.findall(r"\bapkfarm_[a-z_]+", expr):
        name = found
        for suffix in HISTOGRAM_SUFFIXES:
            if found.endswith(suffix) and found.removesuffix(suffix) in CONVENTION_METRICS:
                name = found.removesuffix(suffix)
        names.add(name)
    return names


def promtool_check_rules(groups: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def prometheus_rule() -> dict[str, Any]:
    [rule] = [doc for doc in render_overlay("production") if doc["kind"] == "PrometheusRule"]
    return rule


def test_alert_rules_pass_promtool(tmp_path: Path) -> None:
    promtool_check_rules(prometheus_rule()["spec"]["groups"], tmp_path)


def test_alerts_cover_the_farms_failure_modes() -> None:
    rules = [r for g in prometheus_rule()["spec"]["groups"] for r in g["rules"]]
    alerts = {r["alert"]: r for r in rules}
    for name, metric in {
        "ApkfarmBuildQueueBacklog": "apkfarm_queue_depth",
        "ApkfarmBuildsFailing": "apkfarm_builds_total",
        "ApkfarmSignerRefusals": "apkfarm_sign_refusals_total",
        "ApkfarmIndexNotPublished": "apkfarm_index_published_timestamp_seconds",
    }.items():
        assert metric in alerts[name]["expr"], name
    for rule in rules:
        assert metric_names(rule["expr"]) <= CONVENTION_METRICS, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_shows_every_required_view() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = set().union(*(metric_names(e) for e in dashboard_exprs()))
    assert used <= CONVENTION_METRICS, used - CONVENTION_METRICS
    # queue depth, builds by result, duration, sign rate, refusals, index age
    assert {
        "apkfarm_queue_depth",
        "apkfarm_builds_total",
        "apkfarm_build_duration_seconds",
        "apkfarm_sign_requests_total",
        "apkfarm_sign_refusals_total",
        "apkfarm_index_published_timestamp_seconds",
    } <= used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "arch"}


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # Grafana's variables, as Grafana would substitute them.
    rules = [
        {"record": f"apkfarm:dashboard_{i}", "expr": e.replace("$__rate_interval", "1m").replace("$arch", ".+")}
        for i, e in enumerate(dashboard_exprs())
    ]  # fmt: skip
    promtool_check_rules([{"name": "dashboard", "rules": rules}], tmp_path)


def test_dashboard_ships_in_the_monitoring_component() -> None:
    maps = [doc for doc in render_overlay("production") if doc["kind"] == "ConfigMap"
            and doc["metadata"]["name"] == "apkfarm-grafana-dashboard"]  # fmt: skip
    assert len(maps) == 1
    assert maps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(maps[0]["data"]["apkfarm-dashboard.json"]) == json.loads(
        DASHBOARD.read_text()
    )
