"""The Kubernetes manifests: every overlay renders, validates, and says what the farm needs.

Core kinds are validated by kubernetes-validate --strict (unknown fields and
unknown apiVersions fail). KEDA and prometheus-operator objects are checked
against the hand-written schemas in schemas/ (written from the projects'
documented fields: CRDs cannot be downloaded here). The rest are properties
the farm relies on: hardening, probes, key isolation, per-arch builders and
the exact network flows of the service conventions.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from deploy_support import (
    CRD_SCHEMAS,
    OVERLAYS,
    REPO_ROOT,
    clean_env,
    compose_config,
    pod_specs,
    render_overlay,
)

SCHEMAS = REPO_ROOT / "tests" / "deploy" / "schemas"
# The oldest release with user-namespaced pods and unmasked /proc for them
# (builders), and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
FARM_SERVICES = ("scheduler", "fetcher", "signer", "indexer")
ALL_ARCHS = ("x86_64", "aarch64", "riscv64")


def objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in render_overlay(overlay) if doc["kind"] == kind]


def named(overlay: str, kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in objects(overlay, kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{overlay}: expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def schema(api_version: str, kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / CRD_SCHEMAS[(api_version, kind)]).read_text())
    return loaded


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [c for c in spec["containers"] if c["name"] == name]
    assert len(matches) == 1
    return matches[0]


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


# --- rendering and schema validation ----------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_whole_farm(overlay: str) -> None:
    docs = render_overlay(overlay)
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    for name in ("scheduler", "rabbitmq", "minio"):
        assert ("StatefulSet", name) in kinds
    for name in ("fetcher", "signer", "indexer"):
        assert ("Deployment", name) in kinds
    assert {("ScaledJob", "builder-x86_64"), ("ScaledJob", "builder-aarch64")} <= kinds
    names = [
        (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"]) for doc in docs
    ]
    assert len(names) == len(set(names)), f"{overlay}: duplicate objects"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_pass_strict_kubernetes_validation(overlay: str, version: str) -> None:
    failures = []
    for doc in render_overlay(overlay):
        if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
            continue
        label = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            failures.append(f"{label}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            # An unknown apiVersion/kind is a failure, not a warning.
            failures.append(f"{label}: no schema: {error.message}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builder_job_templates_pass_strict_kubernetes_validation(
    overlay: str, version: str
) -> None:
    """KEDA creates batch/v1 Jobs from jobTargetRef: validate it as exactly that."""
    for scaled in objects(overlay, "ScaledJob"):
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": scaled["metadata"]["name"], "namespace": "apkfarm-build"},
            "spec": scaled["spec"]["jobTargetRef"],
        }
        kubernetes_validate.validate(job, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_match_their_schemas(overlay: str) -> None:
    checked = 0
    for doc in render_overlay(overlay):
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_SCHEMAS:
            jsonschema.validate(doc, schema(*key))
            checked += 1
    assert checked >= 3  # builders and their TriggerAuthentication at least


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        ("ScaledJob", lambda d: d["spec"].__setitem__("maxReplicas", 3)),
        ("ScaledJob", lambda d: d["spec"]["triggers"][0]["metadata"].pop("queueName")),
        ("ScaledJob", lambda d: d["spec"]["scalingStrategy"].__setitem__("strategy", "fast")),
        ("TriggerAuthentication", lambda d: d["spec"]["secretTargetRef"][0].pop("key")),
        ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].__setitem__("interval", "15")),
        ("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].pop("expr")),
    ],
)
def test_schemas_reject_what_the_operators_would(kind: str, mutate: Any) -> None:
    """The hand-written schemas are strict: a typo or a missing field fails."""
    doc = copy.deepcopy(
        named("production", kind, objects("production", kind)[0]["metadata"]["name"])
    )
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema(doc["apiVersion"], kind))


# --- pod hardening -----------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_non_root_read_only_and_without_capabilities(overlay: str) -> None:
    for name, spec in pod_specs(render_overlay(overlay)):
        assert spec.get("automountServiceAccountToken") is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        for c in spec.get("initContainers", []) + spec["containers"]:
            where = f"{name} container {c['name']}"
            context = c["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert "privileged" not in context, where
            assert {"requests", "limits"} <= set(c["resources"]), where
            assert "memory" in c["resources"]["limits"], where


# The workloads that start bwrap sandboxes: builders (builds) and the
# scheduler (template evaluation). Only these get what bwrap needs.
BWRAP_KINDS = {"ScaledJob"}
BWRAP_WORKLOADS = {"StatefulSet/scheduler"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_bwrap_pods_run_unconfined_and_only_in_the_build_namespace(overlay: str) -> None:
    levels = {
        doc["metadata"]["name"]: doc["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        for doc in objects(overlay, "Namespace")
    }
    # The keys, broker and object store stay under "restricted"; only the
    # namespace of the bwrap pods admits unconfined seccomp and unmasked /proc.
    assert levels == {"apkfarm": "restricted", "apkfarm-build": "privileged"}
    bwrap_pods = set()
    for doc in render_overlay(overlay):
        for name, spec in pod_specs([doc]):
            pod_seccomp = spec["securityContext"].get("seccompProfile", {}).get("type")
            runs_bwrap = doc["kind"] in BWRAP_KINDS or name in BWRAP_WORKLOADS
            if runs_bwrap:
                bwrap_pods.add(name)
                assert doc["metadata"]["namespace"] == "apkfarm-build", name
                # An unmasked /proc is only admitted in a user namespace.
                assert spec["hostUsers"] is False, name
                assert spec["securityContext"]["runAsNonRoot"] is True, name
            else:
                assert doc["metadata"]["namespace"] == "apkfarm", name
                assert "hostUsers" not in spec, name
            for c in spec.get("initContainers", []) + spec["containers"]:
                context = c["securityContext"]
                seccomp = context.get("seccompProfile", {}).get("type", pod_seccomp)
                if runs_bwrap:
                    assert seccomp == "Unconfined", name
                    assert context["procMount"] == "Unmasked", name
                    assert context["appArmorProfile"] == {"type": "Unconfined"}, name
                    # Rights come from bwrap's own user namespace, never from capabilities.
                    assert context["capabilities"] == {"drop": ["ALL"]}, name
                    assert context["readOnlyRootFilesystem"] is True, name
                else:
                    assert seccomp == "RuntimeDefault", name
                    assert "procMount" not in context, name
                    assert "appArmorProfile" not in context, name
    assert "StatefulSet/scheduler" in bwrap_pods
    assert any(name.startswith("ScaledJob/builder-") for name in bwrap_pods)


def test_the_scheduler_has_writable_volumes_for_its_state_and_tmp() -> None:
    """Read-only root: the database, tree snapshots and evaluation cache live on
    the state volume, temporary files (object-store transfers) in /tmp."""
    for overlay in OVERLAYS:
        spec = named(overlay, "StatefulSet", "scheduler")["spec"]["template"]["spec"]
        mounts = {m["mountPath"]: m for m in container(spec, "scheduler")["volumeMounts"]}
        for path in ("/var/lib/apkfarm", "/tmp"):
            assert not mounts[path].get("readOnly", False), (overlay, path)
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]], overlay
        assert env_of(container(spec, "scheduler"))["APKFARM_STATE_DIR"] == "/var/lib/apkfarm"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_use_native_grpc_probes_on_the_health_listener(overlay: str) -> None:
    for service in FARM_SERVICES:
        kind = "StatefulSet" if service == "scheduler" else "Deployment"
        spec = named(overlay, kind, service)["spec"]["template"]["spec"]
        c = container(spec, service)
        assert c["readinessProbe"]["grpc"] == {"port": 50052}, service
        assert c["livenessProbe"]["grpc"] == {"port": 50052, "service": "liveness"}, service
        env = {e["name"] for e in c.get("env", [])} | {"APKFARM_HEALTH_LISTEN"}
        assert "APKFARM_HEALTH_LISTEN" in env
    common = {doc["metadata"]["namespace"]: doc["data"] for doc in objects(overlay, "ConfigMap")
              if doc["metadata"]["name"] == "apkfarm-common"}  # fmt: skip
    for data in common.values():
        assert data["APKFARM_HEALTH_LISTEN"] == "0.0.0.0:50052"
        assert data["APKFARM_GRPC_LISTEN"] == "0.0.0.0:50051"
        assert data["APKFARM_METRICS_LISTEN"] == "0.0.0.0:9100"


def test_scheduler_is_a_single_replica_with_its_own_volume() -> None:
    for overlay in OVERLAYS:
        scheduler = named(overlay, "StatefulSet", "scheduler")
        assert scheduler["spec"]["replicas"] == 1
        claims = [t["metadata"]["name"] for t in scheduler["spec"]["volumeClaimTemplates"]]
        mounts = container(scheduler["spec"]["template"]["spec"], "scheduler")["volumeMounts"]
        state = [m for m in mounts if m["mountPath"] == "/var/lib/apkfarm"]
        assert state and state[0]["name"] in claims


# Behaviour settings compose and the manifests must agree on (addresses and
# paths legitimately differ between the two).
SHARED_SETTINGS = {
    "scheduler": ("APKFARM_ARCHS", "APKFARM_CATEGORIES", "APKFARM_HOST_ARCH", "APKFARM_MAX_ATTEMPTS"),
    "indexer": ("APKFARM_KEEP_GENERATIONS", "APKFARM_BATCH_SECONDS"),
}  # fmt: skip


@pytest.mark.parametrize("service", sorted(SHARED_SETTINGS))
def test_service_settings_match_compose(service: str) -> None:
    """The same farm in both: e.g. the indexer publishes at once (APKFARM_BATCH_SECONDS 0)."""
    compose_service = compose_config("compose.yaml", env=clean_env())["services"][service]
    compose_env = compose_service["environment"]
    kind = "StatefulSet" if service == "scheduler" else "Deployment"
    for overlay in ("dev", "production"):
        spec = named(overlay, kind, service)["spec"]["template"]["spec"]
        manifest_env = env_of(container(spec, service))
        for name in SHARED_SETTINGS[service]:
            assert manifest_env[name] == compose_env[name], (overlay, service, name)


# --- secrets -----------------------------------------------------------------


def secret_names(spec: dict[str, Any]) -> set[str]:
    names = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    for c in spec.get("initContainers", []) + spec["containers"]:
        for entry in c.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        for source in c.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_signing_keys_are_mounted_only_into_the_signer(overlay: str) -> None:
    holders = [name for name, spec in pod_specs(render_overlay(overlay))
               if secret_names(spec) & {"apkfarm-signing-keys", "apkfarm-signing-keys-retired"}]  # fmt: skip
    assert holders == ["Deployment/signer"]
    spec = named(overlay, "Deployment", "signer")["spec"]["template"]["spec"]
    signer = container(spec, "signer")
    # The running signer sees the keys only through a memory-backed copy.
    keys_volume = next(m["name"] for m in signer["volumeMounts"]
                       if m["mountPath"] == "/run/secrets/apkfarm-keys")  # fmt: skip
    volume = next(v for v in spec["volumes"] if v["name"] == keys_volume)
    assert volume["emptyDir"]["medium"] == "Memory"
    assert "APKFARM_AMQP_URL" not in env_of(signer)
    job_token_holders = [name for name, spec in pod_specs(render_overlay(overlay))
                         if "apkfarm-job-token" in secret_names(spec)]  # fmt: skip
    assert job_token_holders == ["StatefulSet/scheduler"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_pod_mounts_only_its_own_tls_identity(overlay: str) -> None:
    for name, spec in pod_specs(render_overlay(overlay)):
        tls = {s for s in secret_names(spec) if s.startswith("apkfarm-tls-")}
        if name.startswith("ScaledJob/"):
            identity = name.removeprefix("ScaledJob/")
        else:
            identity = name.split("/", 1)[1]
        if identity in FARM_SERVICES or identity.startswith("builder-"):
            assert tls == {f"apkfarm-tls-{identity}"}, name
            env = env_of(container(spec, spec["containers"][0]["name"]))
            assert env["APKFARM_IDENTITY"] == identity, name
        else:
            assert tls == set(), name


# --- builders ------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_builder_is_consistent_for_its_arch(overlay: str) -> None:
    scaled_jobs = objects(overlay, "ScaledJob")
    assert scaled_jobs
    for scaled in scaled_jobs:
        arch = scaled["metadata"]["name"].removeprefix("builder-")
        assert arch in ALL_ARCHS
        spec = scaled["spec"]
        template = spec["jobTargetRef"]["template"]
        c = container(template["spec"], "builder")
        env = env_of(c)
        assert env["APKFARM_ARCH"] == arch
        assert env["APKFARM_IDENTITY"] == f"builder-{arch}"
        # One build per Job: scale-down never interrupts a running build.
        assert env["APKFARM_MAX_JOBS"] == "1"
        assert c["image"].rsplit("/", 1)[-1].split(":")[0] == f"builder-{arch}"
        assert template["metadata"]["labels"]["apkfarm.dev/arch"] == arch
        assert scaled["metadata"]["labels"]["apkfarm.dev/arch"] == arch
        [trigger] = spec["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == f"build.{arch}"
        assert trigger["metadata"]["mode"] == "QueueLength"
        assert spec["rollout"]["strategy"] == "gradual"
        assert spec["jobTargetRef"]["backoffLimit"] == 0
        assert template["spec"]["restartPolicy"] == "Never"
        terms = template["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        arch_terms = [
            e for t in terms for e in t["matchExpressions"] if e["key"] == "kubernetes.io/arch"
        ]
        assert arch_terms, f"builder-{arch} is not pinned to a node arch"


def test_adding_an_arch_also_tells_the_scheduler() -> None:
    overlay = "production-with-riscv64"
    names = {doc["metadata"]["name"] for doc in objects(overlay, "ScaledJob")}
    assert names == {"builder-x86_64", "builder-aarch64", "builder-riscv64"}
    spec = named(overlay, "StatefulSet", "scheduler")["spec"]["template"]["spec"]
    archs = env_of(container(spec, "scheduler"))["APKFARM_ARCHS"].split(",")
    assert sorted(archs) == sorted(names_arch.removeprefix("builder-") for names_arch in names)


# --- network policies ------------------------------------------------------------

# Pods of the farm and of its neighbours, as (namespace, labels).
PODS: dict[str, tuple[str, dict[str, str]]] = {
    "scheduler": ("apkfarm-build", {"app.kubernetes.io/name": "scheduler"}),
    "fetcher": ("apkfarm", {"app.kubernetes.io/name": "fetcher"}),
    "signer": ("apkfarm", {"app.kubernetes.io/name": "signer"}),
    "indexer": ("apkfarm", {"app.kubernetes.io/name": "indexer"}),
    "rabbitmq": ("apkfarm", {"app.kubernetes.io/name": "rabbitmq"}),
    "minio": ("apkfarm", {"app.kubernetes.io/name": "minio"}),
    "bucket-init": ("apkfarm", {"app.kubernetes.io/name": "bucket-init"}),
    "builder": (
        "apkfarm-build",
        {"app.kubernetes.io/name": "builder", "apkfarm.dev/arch": "aarch64"},
    ),
    "prometheus": ("monitoring", {"app.kubernetes.io/name": "prometheus"}),
    "keda": ("keda", {"app.kubernetes.io/name": "keda-operator"}),
    "ingress": ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}),
    "stranger": ("default", {"app": "stranger"}),
}
PORTS = (50051, 50052, 9100, 5672, 15692, 9000)
OUTSIDERS = ("prometheus", "keda", "ingress", "stranger")

# The flows of the service conventions, and nothing else.
EXPECTED_FLOWS = {
    ("scheduler", "rabbitmq", 5672), ("scheduler", "minio", 9000), ("scheduler", "builder", 50051),
    ("fetcher", "rabbitmq", 5672), ("fetcher", "minio", 9000),
    ("builder", "rabbitmq", 5672), ("builder", "minio", 9000), ("builder", "signer", 50051),
    ("indexer", "rabbitmq", 5672), ("indexer", "minio", 9000), ("indexer", "signer", 50051),
    ("signer", "minio", 9000),
    ("bucket-init", "minio", 9000),
    ("keda", "rabbitmq", 5672),
    ("ingress", "minio", 9000),
    ("prometheus", "rabbitmq", 15692),
    *(("prometheus", name, 9100) for name in ("scheduler", "fetcher", "signer", "indexer", "builder")),
    # Operators reach the scheduler's mTLS API from anywhere.
    *((name, "scheduler", 50051) for name in OUTSIDERS),
}  # fmt: skip


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert "matchExpressions" not in selector, "the evaluator only knows matchLabels"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def peer_matches(peer: dict[str, Any], policy_ns: str, pod: str) -> bool:
    namespace, labels = PODS[pod]
    if "ipBlock" in peer:
        return False  # internet ranges only; cluster pods are in the excepted ranges
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": namespace}
        if not selects(peer["namespaceSelector"], ns_labels):
            return False
    elif namespace != policy_ns:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], labels)


def rule_allows(rule: dict[str, Any], key: str, policy_ns: str, other: str, port: int) -> bool:
    ports = rule.get("ports")
    if ports is not None and not any(p.get("port") == port for p in ports):
        return False
    peers = rule.get(key)
    return peers is None or any(peer_matches(peer, policy_ns, other) for peer in peers)


def direction_allows(
    policies: list[dict[str, Any]], pod: str, other: str, port: int, ingress: bool
) -> bool:
    namespace, labels = PODS[pod]
    kind, rules_key, peer_key = (
        ("Ingress", "ingress", "from") if ingress else ("Egress", "egress", "to")
    )
    isolating = [
        p for p in policies
        if p["metadata"]["namespace"] == namespace
        and selects(p["spec"]["podSelector"], labels)
        and kind in p["spec"]["policyTypes"]
    ]  # fmt: skip
    if not isolating:
        return True
    return any(
        rule_allows(rule, peer_key, namespace, other, port)
        for p in isolating
        for rule in p["spec"].get(rules_key, [])
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_exactly_the_farms_flows(overlay: str) -> None:
    policies = objects(overlay, "NetworkPolicy")
    allowed = {
        (src, dst, port)
        for src in PODS
        for dst in PODS
        for port in PORTS
        if src != dst
        and PODS[dst][0] in {"apkfarm", "apkfarm-build"}  # only the farm's side is ours
        and direction_allows(policies, src, dst, port, ingress=False)
        and direction_allows(policies, dst, src, port, ingress=True)
    }
    assert allowed - EXPECTED_FLOWS == set(), "flows allowed beyond the conventions"
    assert EXPECTED_FLOWS - allowed == set(), "flows of the conventions that are blocked"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_farm_pod_may_resolve_names(overlay: str) -> None:
    policies = objects(overlay, "NetworkPolicy")
    for namespace in ("apkfarm", "apkfarm-build"):
        dns = [p for p in policies if p["metadata"]["namespace"] == namespace
               and p["spec"]["podSelector"] == {} and "Egress" in p["spec"]["policyTypes"]
               and any(port.get("port") == 53 for rule in p["spec"].get("egress", [])
                       for port in rule.get("ports", []))]  # fmt: skip
        assert dns, f"{namespace}: no DNS egress"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_a_disruption_budget_unless_a_job(overlay: str) -> None:
    budgets = objects(overlay, "PodDisruptionBudget")
    for kind in ("Deployment", "StatefulSet"):
        for workload in objects(overlay, kind):
            labels = workload["spec"]["template"]["metadata"]["labels"]
            covering = [b for b in budgets if selects(b["spec"]["selector"], labels)]
            assert len(covering) == 1, f"{kind}/{workload['metadata']['name']}"
