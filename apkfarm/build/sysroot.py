"""Build dependencies from the farm's own signed repository, installed into a per-build sysroot.

``DependencySource`` reads the repository store (the farm bucket's
``repo/`` prefix, or the embedded mode's output directory) through the
synchronous ``BlobStore`` API: ``<category>/<arch>/APKINDEX.tar.gz`` and
the packages beside it. Every index must carry a signature by a key of the
keyring; every package is verified (signature, datahash, per-file
checksums) and must be exactly the package its index record names (the
``C:`` identity and ``S:`` size) before a byte of it is installed.

``resolve`` turns dependency names (``libgreet-devel``, ``so:libz.so.1``,
``pc:zlib>=1.2``, ``cmd:foo``) into index records and follows their
runtime ``depend``s (``D:``), through the ``provides`` (``p:``) of other
records, until nothing is missing. A name that nothing provides is an
error listing every such name and who needed it. ``install`` downloads,
verifies and extracts the result into the sysroot (confined to it), with
setuid/setgid bits cleared: nothing in a sysroot runs privileged.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

from apkfarm import version
from apkfarm.apk.errors import ApkError
from apkfarm.apk.extract import extract_package
from apkfarm.apk.index import IndexRecord, read_index
from apkfarm.apk.keys import Keyring
from apkfarm.apk.reader import verify_package
from apkfarm.blobs.api import BlobNotFound, BlobStore, BlobStoreError
from apkfarm.blobs.keys import InvalidBlobKey
from apkfarm.blobs.layout import repository_index_key, repository_package_key
from apkfarm.build.errors import BuildError
from apkfarm.build.scan import provider_map
from apkfarm.errors import ApkfarmError

__all__ = ["DependencyError", "DependencySource", "ResolvedPackage", "Sysroot"]

MAX_INDEX_BYTES = 64 << 20


class DependencyError(BuildError):
    """A build dependency cannot be resolved, fetched, verified or installed."""


@dataclass(frozen=True)
class ResolvedPackage:
    """An index record and the repository (category) it was found in."""

    category: str
    record: IndexRecord

    @property
    def label(self) -> str:
        return f"{self.record.name}-{self.record.version}"


@dataclass(frozen=True)
class Sysroot:
    """A populated sysroot: where it is and which farm packages are in it."""

    path: Path
    packages: tuple[ResolvedPackage, ...]

    def provides(self) -> dict[str, str]:
        """``so:``/``pc:``/``cmd:`` names the sysroot's packages provide -> the package."""
        return provider_map((p.record.name, p.record.provides) for p in self.packages)

    @property
    def populated(self) -> bool:
        return bool(self.packages)


def _provided(entry: str) -> tuple[str, str | None]:
    name, _, provided_version = entry.partition("=")
    return name, provided_version or None


class _Candidates:
    """The records of the searched repositories, by name and by what they provide."""

    def __init__(self, repositories: Sequence[tuple[str, list[IndexRecord]]]) -> None:
        self.by_name: dict[str, list[ResolvedPackage]] = {}
        self.by_provide: dict[str, list[tuple[ResolvedPackage, str | None]]] = {}
        for category, records in repositories:
            for record in records:
                package = ResolvedPackage(category, record)
                self.by_name.setdefault(record.name, []).append(package)
                for entry in record.provides:
                    name, provided = _provided(entry)
                    self.by_provide.setdefault(name, []).append((package, provided))

    def choose(self, dependency: version.Dependency) -> ResolvedPackage | None:
        """The best package satisfying `dependency`: its own name first, then providers.

        Among several, a cports ``!provider`` wins, then the repository searched
        first, then the highest version.
        """
        named = [
            p for p in self.by_name.get(dependency.name, []) if dependency.matches(p.record.version)
        ]
        if named:
            return _best(named)
        providers = []
        for package, provided in self.by_provide.get(dependency.name, []):
            if dependency.op is None or (provided is not None and dependency.matches(provided)):
                providers.append(package)
        if dependency.provider:
            preferred = [p for p in providers if p.record.name == dependency.provider]
            if preferred:
                providers = preferred
        return _best(providers) if providers else None


def _best(packages: list[ResolvedPackage]) -> ResolvedPackage:
    first_category = packages[0].category  # repositories are listed in search order
    same = [p for p in packages if p.category == first_category]
    return max(same, key=lambda p: version.sort_key(p.record.version))


class DependencySource:
    """The farm's repositories as a source of build dependencies (see the module docstring).

    Thread-safe; indexes are cached and re-read only when their blob changes.
    """

    def __init__(self, store: BlobStore, keyring: Keyring) -> None:
        if not len(keyring):
            raise DependencyError("dependency source: the keyring is empty; nothing can verify")
        self.store = store
        self.keyring = keyring
        self._indexes: dict[tuple[str, str], tuple[str, list[IndexRecord]]] = {}
        self._lock = Lock()

    # --- indexes -------------------------------------------------------------------------

    def index(self, category: str, arch: str) -> list[IndexRecord]:
        """The verified records of ``<category>/<arch>``; empty if that repository has no index."""
        try:
            key = repository_index_key(category, arch)
        except InvalidBlobKey as error:
            raise DependencyError(str(error)) from error
        try:
            info = self.store.stat(key)
        except BlobNotFound:
            return []
        except BlobStoreError as error:
            raise DependencyError(f"cannot read repository {category}/{arch}: {error}") from error
        with self._lock:
            cached = self._indexes.get((category, arch))
        if cached is not None and cached[0] == info.etag:
            return cached[1]
        try:
            data = self.store.get_bytes(key, max_size=MAX_INDEX_BYTES)
            records = read_index(io.BytesIO(data), self.keyring, source=key).records
        except (BlobStoreError, ApkError) as error:
            raise DependencyError(f"repository {category}/{arch}: {error}") from error
        with self._lock:
            self._indexes[(category, arch)] = (info.etag, records)
        return records

    # --- resolution ----------------------------------------------------------------------

    def resolve(
        self, names: Iterable[str], *, categories: Sequence[str], arch: str
    ) -> list[ResolvedPackage]:
        """`names` and everything they depend on at runtime, from the first category that has it."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return []
        candidates = _Candidates([(c, self.index(c, arch)) for c in categories])
        chosen: dict[str, ResolvedPackage] = {}
        problems: list[str] = []
        pending: list[tuple[str, str]] = [(name, "the template") for name in wanted]
        seen: set[str] = set()
        while pending:
            text, needed_by = pending.pop(0)
            if text in seen:
                continue
            seen.add(text)
            try:
                dependency = version.parse_dependency(text)
            except ApkfarmError as error:
                problems.append(f"{text} (needed by {needed_by}): {error}")
                continue
            if dependency.conflict:
                continue  # a conflict installs nothing
            already = next((p for p in chosen.values() if _satisfies(p.record, dependency)), None)
            if already is not None:
                continue
            package = candidates.choose(dependency)
            if package is None:
                problems.append(f"{text} (needed by {needed_by})")
                continue
            chosen[package.record.name] = package
            pending += [(dep, package.label) for dep in package.record.depends]
        if problems:
            searched = ", ".join(f"{c}/{arch}" for c in categories)
            raise DependencyError(
                f"build dependencies not found in the farm's repositories ({searched}): "
                + "; ".join(problems)
            )
        return sorted(chosen.values(), key=lambda p: p.record.name)

    # --- installation --------------------------------------------------------------------

    def install(
        self,
        names: Iterable[str],
        *,
        categories: Sequence[str],
        arch: str,
        sysroot: Path,
        download_dir: Path,
        progress: Callable[[str], None] | None = None,
    ) -> Sysroot:
        """Resolve `names`, then download, verify and extract each package into `sysroot`."""
        packages = self.resolve(names, categories=categories, arch=arch)
        sysroot.mkdir(parents=True, exist_ok=True)
        download_dir.mkdir(parents=True, exist_ok=True)
        for package in packages:
            self._install_one(package, arch, sysroot, download_dir)
            if progress is not None:
                progress(f"installed {package.label} from {package.category}/{arch}")
        _clear_special_bits(sysroot)
        return Sysroot(sysroot, tuple(packages))

    def _install_one(
        self, package: ResolvedPackage, arch: str, sysroot: Path, download_dir: Path
    ) -> None:
        record = package.record
        where = f"{package.category}/{arch}/{record.filename}"
        try:
            key = repository_package_key(package.category, arch, record.filename)
            local = download_dir / record.filename
            digest = self.store.get_file(key, local)
        except (InvalidBlobKey, BlobStoreError) as error:
            raise DependencyError(f"cannot download {where}: {error}") from error
        if digest.size != record.size:
            raise DependencyError(
                f"{where}: {digest.size} bytes, but the signed index says {record.size}"
            )
        try:
            # The signature is checked on both passes; the identity before anything is written.
            with local.open("rb") as stream:
                contents = verify_package(stream, self.keyring, source=where, full_data=False)
            if contents.identity != record.checksum:
                raise DependencyError(
                    f"{where}: is not the package the signed index names "
                    f"(identity {contents.identity}, index {record.checksum})"
                )
            with local.open("rb") as stream:
                extract_package(stream, sysroot, self.keyring, source=where)
        except ApkError as error:
            raise DependencyError(f"{where}: refused: {error}") from error


def _satisfies(record: IndexRecord, dependency: version.Dependency) -> bool:
    if record.name == dependency.name:
        return dependency.matches(record.version)
    for entry in record.provides:
        name, provided = _provided(entry)
        if name == dependency.name:
            return dependency.op is None or (provided is not None and dependency.matches(provided))
    return False


def _clear_special_bits(root: Path) -> None:
    """Clear setuid/setgid on every regular file under `root`.

    os.walk does not follow symlinks, so a package's ``lib -> /usr/lib``
    can never lead this outside the sysroot.
    """
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)  # noqa: PTH118 - os.walk's strings
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))  # noqa: PTH101
