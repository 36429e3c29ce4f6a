"""The container images tools/images.py builds without a registry (needs a Docker engine)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from deploy_support import REPO_ROOT, require
from fixtures.tools import load_tool

pytestmark = pytest.mark.docker

DOCKER = "/usr/bin/docker"
SERVICES = ("scheduler", "fetcher", "signer", "indexer")
ARCH_COMPILERS = {
    "x86_64": "gcc",
    "aarch64": "aarch64-linux-gnu-gcc",
    "riscv64": "riscv64-linux-gnu-gcc",
}
# bwrap inside a container needs exactly these (k8s/README.md, "Builder privileges").
BWRAP_OPTIONS = (
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "systempaths=unconfined",
    "--security-opt", "no-new-privileges:true",
    "--cap-drop", "ALL",
    "--read-only",
    "--tmpfs", "/tmp",
)  # fmt: skip


def docker(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *argv], capture_output=True, text=True, check=False)


def image_id(tag: str) -> str:
    result = docker("image", "inspect", "--format", "{{.Id}}", tag)
    assert result.returncode == 0, f"{tag} missing: {result.stderr}"
    return result.stdout.strip()


def run_in(
    image: str, *command: str, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return docker("run", "--rm", *options, "--entrypoint", command[0], image, *command[1:])


@pytest.fixture(scope="module")
def images() -> ModuleType:
    """Every image, built (or found cached) once for this module."""
    engine = subprocess.run([DOCKER, "info"], capture_output=True, check=False)
    require(engine.returncode == 0, "no Docker engine answers (tools/devtool.py engine)")
    tool = load_tool("images")
    tool.build_all()
    return tool


def test_every_image_exists(images: ModuleType) -> None:
    for tag in images.built_tags():
        image_id(tag)


def wheel_sources(images: ModuleType) -> str:
    """The digest of the apkfarm sources the current wheel (and so the images) came from."""
    stamp: Path = images.WHEELHOUSE / "apkfarm.stamp"
    return stamp.read_text()


def test_a_second_build_is_a_cache_hit(images: ModuleType) -> None:
    # What the present images were built from, not the tree now: in a shared
    # work tree the code may have changed since the fixture built them.
    sources = wheel_sources(images)
    before = {tag: image_id(tag) for tag in images.built_tags()}
    images.build_all()
    after = {tag: image_id(tag) for tag in images.built_tags()}
    if wheel_sources(images) != sources:
        # apkfarm's code changed under the test (a shared work tree): only the
        # images that do not contain it must be the very same.
        independent = [images.BASE_IMAGE, *(f"apkfarm/{name}:dev" for name in images.LOCAL_INFRA)]
        before = {tag: before[tag] for tag in independent}
        after = {tag: after[tag] for tag in independent}
    assert after == before


def image_label(tag: str, key: str) -> str | None:
    result = docker("image", "inspect", "--format", "{{json .Config.Labels}}", tag)
    assert result.returncode == 0, f"{tag} missing: {result.stderr}"
    labels: dict[str, str] | None = json.loads(result.stdout)
    return (labels or {}).get(key)


def test_every_built_image_is_labelled_as_ours(images: ModuleType) -> None:
    """The label the prune selects by, with each image's own name (not its parent's)."""
    for image in images.plan(images.BUILDER_ARCHS, True):
        assert image_label(image.tag, images.IMAGE_LABEL) == images.image_name(image.tag), image.tag


PROBE_TAG = "apkfarm/prune-probe:test"
FOREIGN_TAG = "apkfarm-test/foreign-probe:test"
PROBE_LAYER_BYTES = 1_000_000


def build_probe(context: Path, tag: str, label: str | None) -> str:
    """A small two-layer image under ``tag``; building it again leaves this one dangling.

    Two layers: the second one's cache record builds on the first's, which the
    prune must then remove in order.
    """
    for name in ("first", "second"):
        (context / name).write_bytes(os.urandom(PROBE_LAYER_BYTES))
    (context / "Dockerfile").write_text(
        "FROM scratch\nCOPY first /first\nCOPY second /second\n"
        + (f"LABEL {label}\n" if label else "")
    )
    result = subprocess.run(
        [DOCKER, "build", "--quiet", "-t", tag, str(context)],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, DOCKER_BUILDKIT="1"),
    )
    assert result.returncode == 0, result.stderr
    return image_id(tag)


@pytest.fixture
def leftovers(tmp_path: Path, images: ModuleType) -> Iterator[tuple[str, str]]:
    """Two dangling images: an earlier version of one of ours, and someone else's."""
    ours, foreign = tmp_path / "ours", tmp_path / "foreign"
    ours.mkdir()
    foreign.mkdir()
    old_ours = build_probe(ours, PROBE_TAG, f"{images.IMAGE_LABEL}=prune-probe")
    build_probe(ours, PROBE_TAG, f"{images.IMAGE_LABEL}=prune-probe")
    old_foreign = build_probe(foreign, FOREIGN_TAG, None)
    build_probe(foreign, FOREIGN_TAG, None)
    yield old_ours, old_foreign
    # Leave the engine as found: the probes and the cache records only they used.
    shared = images.shared_cache_records()
    docker("image", "rm", "--force", PROBE_TAG, FOREIGN_TAG, old_ours, old_foreign)
    images.prune_cache_records(shared - images.shared_cache_records())


def test_a_rebuild_removes_our_dangling_images_and_no_others(
    images: ModuleType, leftovers: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    old_ours, old_foreign = leftovers
    assert old_ours in images.dangling_images()
    assert old_foreign not in images.dangling_images()
    images.build_all()
    assert docker("image", "inspect", old_ours).returncode != 0, "our old image is still there"
    # It says what it removed and how much that freed: at least the old probe's
    # two layers, which the build cache held too (both records pruned).
    report = re.search(
        r"removed (\d+) dangling apkfarm images and (\d+) build-cache records only they used: "
        r"freed ([0-9.]+) MB",
        capsys.readouterr().out,
    )
    assert report is not None
    assert int(report.group(1)) >= 1
    assert int(report.group(2)) >= 2
    assert float(report.group(3)) >= 2 * PROBE_LAYER_BYTES / 1e6
    assert docker("image", "inspect", old_foreign).returncode == 0, (
        "an unlabelled image was removed"
    )
    # After a rebuild no dangling image with the label remains, but for one a
    # container still uses (the engine keeps those; none exist in a quiet engine).
    assert set(images.dangling_images()) <= images_used_by_containers()


def images_used_by_containers() -> set[str]:
    ids = docker("ps", "--all", "--quiet", "--no-trunc").stdout.split()
    if not ids:
        return set()
    return set(docker("inspect", "--format", "{{.Image}}", *ids).stdout.split())


def test_apkfarm_images_run_as_the_non_root_service_user(images: ModuleType) -> None:
    tags = [images.RUNTIME_IMAGE, *(f"apkfarm/{name}:dev" for name in SERVICES)]
    tags += [f"apkfarm/builder-{arch}:dev" for arch in ARCH_COMPILERS]
    for tag in tags:
        assert docker("image", "inspect", "--format", "{{.Config.User}}", tag).stdout.strip() == (
            "10001:10001"
        ), tag
        assert run_in(tag, "id", "-u").stdout.strip() == "10001", tag


def test_local_stand_ins_run_as_non_root(images: ModuleType) -> None:
    for tag in ("apkfarm/rabbitmq:dev", "apkfarm/seaweedfs:dev", "apkfarm/prometheus:dev"):
        uid = run_in(tag, "id", "-u").stdout.strip()
        assert uid.isdigit() and uid != "0", tag


def test_runtime_image_has_no_build_tools(images: ModuleType) -> None:
    result = run_in(images.RUNTIME_IMAGE, "sh", "-c", "command -v gcc pip cc make || true")
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(("arch", "compiler"), sorted(ARCH_COMPILERS.items()))
def test_builder_compiles_for_its_arch_inside_bwrap(
    images: ModuleType, arch: str, compiler: str
) -> None:
    """The toolchain is there and works in the sandbox the builder will use."""
    script = (
        "printf 'int main(void){return 0;}' > /tmp/t.c && "
        "bwrap --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp "
        "--bind /var/tmp/apkfarm /var/tmp/apkfarm --chdir /var/tmp/apkfarm "
        "--unshare-all --die-with-parent --new-session --cap-drop ALL "
        f"sh -c 'cp /etc/hostname /dev/null; printf \"int main(void){{return 0;}}\" > t.c && {compiler} -o t t.c && file t'"
    )  # fmt: skip
    options = (*BWRAP_OPTIONS, "--tmpfs", "/var/tmp/apkfarm:uid=10001,gid=10001")
    result = run_in(f"apkfarm/builder-{arch}:dev", "sh", "-c", script, options=options)
    assert result.returncode == 0, result.stderr
    machine = {"x86_64": "x86-64", "aarch64": "ARM aarch64", "riscv64": "RISC-V"}[arch]
    assert machine in result.stdout


@pytest.mark.parametrize("arch", sorted(ARCH_COMPILERS))
def test_builder_carries_its_build_systems(images: ModuleType, arch: str) -> None:
    tools = "bwrap make cmake meson ninja pkg-config file patch gcc"
    result = run_in(
        f"apkfarm/builder-{arch}:dev", "sh", "-c", f"for t in {tools}; do command -v $t; done"
    )
    assert len(result.stdout.split()) == len(tools.split()), result.stdout


def declared_scripts() -> list[str]:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return sorted(pyproject["project"].get("scripts", {}))


@pytest.mark.parametrize("service", SERVICES)
def test_declared_console_scripts_answer_help(images: ModuleType, service: str) -> None:
    """Every console script the wheel declares, plus the deployment helpers, in each image."""
    for script in (*declared_scripts(), "apkfarm-healthcheck", "apkfarm-init-bucket"):
        result = run_in(f"apkfarm/{service}:dev", script, "--help")
        assert result.returncode == 0, f"{script} --help in {service}: {result.stderr}"


@pytest.mark.parametrize("image", [*SERVICES, *(f"builder-{a}" for a in ARCH_COMPILERS)])
def test_each_image_entrypoint_is_its_service(images: ModuleType, image: str) -> None:
    """The image's entrypoint is its own service, which lists its settings in --help."""
    script = "apkfarm-builder" if image.startswith("builder-") else f"apkfarm-{image}"
    assert script in declared_scripts()
    entrypoint = docker("image", "inspect", "--format", "{{json .Config.Entrypoint}}",
                        f"apkfarm/{image}:dev")  # fmt: skip
    assert json.loads(entrypoint.stdout) == [script]
    result = docker("run", "--rm", f"apkfarm/{image}:dev", "--help")
    assert result.returncode == 0, result.stderr
    assert "APKFARM_GRPC_LISTEN" in result.stdout  # --help lists the environment variables
    if image.startswith("builder-"):
        assert "APKFARM_ARCH" in result.stdout


def test_each_image_presets_its_identity(images: ModuleType) -> None:
    """Images carry the identity (and builders the arch) compose and Kubernetes also set."""
    for image in [*SERVICES, *(f"builder-{a}" for a in ARCH_COMPILERS)]:
        result = docker("run", "--rm", f"apkfarm/{image}:dev", "--print-config")
        assert result.returncode == 0, f"{image}: {result.stderr}"
        settings = result.stdout.splitlines()
        assert f"APKFARM_IDENTITY={image}" in settings, result.stdout
        assert "APKFARM_GRPC_LISTEN=0.0.0.0:50051" in settings, result.stdout
        if image.startswith("builder-"):
            assert f"APKFARM_ARCH={image.removeprefix('builder-')}" in settings
            assert "APKFARM_WORK_DIR=/var/tmp/apkfarm" in settings


def test_scheduler_evaluates_templates_in_its_sandbox(images: ModuleType) -> None:
    """The scheduler runs every template in bwrap: the image has it, and the options suffice."""
    options = (*BWRAP_OPTIONS, "-v", f"{REPO_ROOT / 'examples'}:/tree:ro")
    result = run_in(
        "apkfarm/scheduler:dev", "apkfarm", "plan", "/tree", "--arch", "aarch64", options=options
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "main/libgreet 1.0.0-r0: new" in result.stdout
    # Docker's defaults (seccomp profile, masked /proc) refuse the sandbox, as documented.
    refused = run_in(
        "apkfarm/scheduler:dev", "apkfarm", "plan", "/tree", "--arch", "aarch64",
        options=("--read-only", "--tmpfs", "/tmp", "-v", f"{REPO_ROOT / 'examples'}:/tree:ro"),
    )  # fmt: skip
    assert refused.returncode != 0
    assert "sandbox" in refused.stderr
