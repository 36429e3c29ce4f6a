"""What the indexer checks before a staged package may enter a repository (pure).

A ``package.staged`` event is a claim made by a builder, and a builder may be
compromised: every name, key, size and digest in it is checked, and then
checked again against the package's own signed ``.PKGINFO``. Nothing here
downloads or publishes; a failed check raises :class:`Rejected`, whose
``reason`` is the metric label and whose message names the job, the package
and what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from apkfarm.apk.reader import PackageContents
from apkfarm.blobs import InvalidBlobKey, layout, validate_key
from apkfarm.errors import ApkfarmError
from apkfarm.v1 import bus_pb2, common_pb2

# A package larger than this is refused before a byte is downloaded.
MAX_PACKAGE_BYTES = 16 * 1024**3
# A job with more packages than this is not a real template's.
MAX_PACKAGES_PER_JOB = 1000

REJECTION_REASONS = (
    "malformed_event",
    "blob_key",
    "missing_blob",
    "size_mismatch",
    "sha256_mismatch",
    "malformed_package",
    "signature",
    "name_mismatch",
    "version_mismatch",
    "arch_mismatch",
    "origin_mismatch",
    "superseded",
)

_SHA256 = re.compile(r"[0-9a-f]{64}")


class Rejected(ApkfarmError):
    """A staged package (and so its whole job) that must not be published."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        assert reason in REJECTION_REASONS, reason
        self.reason = reason


@dataclass(frozen=True)
class StagedFile:
    """One package of a checked event: where it is staged and what it must be."""

    name: str
    version: str
    arch: str
    file_name: str
    blob_key: str
    size: int
    sha256: str

    @property
    def label(self) -> str:
        return f"{self.name}-{self.version}"


@dataclass(frozen=True)
class StagedJob:
    """A ``package.staged`` event whose fields passed every check that needs no download."""

    job_id: str
    category: str
    arch: str
    template: common_pb2.TemplateRef
    files: tuple[StagedFile, ...]

    @property
    def repository(self) -> tuple[str, str]:
        return (self.category, self.arch)

    @property
    def label(self) -> str:
        return f"job {self.job_id} ({self.template.pkgname}-{self.template.version})"


def staged_blob_key(job_id: str, blob_key: str, where: str) -> str:
    """``blob_key`` if it is one object directly under ``staging/<job_id>/``."""
    prefix = layout.staging_prefix(job_id)
    try:
        validate_key(blob_key)
    except InvalidBlobKey as error:
        raise Rejected("blob_key", f"{where}: {error}") from None
    rest = blob_key.removeprefix(prefix)
    if rest == blob_key or "/" in rest:
        raise Rejected(
            "blob_key", f"{where}: blob key {blob_key!r} is not an object under {prefix!r}"
        )
    try:
        layout.apk_file(rest)
    except InvalidBlobKey as error:
        raise Rejected("blob_key", f"{where}: {error}") from None
    return blob_key


def check_event(event: bus_pb2.PackageStaged) -> StagedJob:
    """Every field of the event that can be checked without the package itself."""
    try:
        job_id = layout.job_id(event.job_id)
    except InvalidBlobKey as error:
        raise Rejected("malformed_event", f"package.staged: {error}") from None
    template = event.template
    where = f"job {job_id}"
    try:
        category = layout.category(template.category)
        arch = layout.arch(template.arch)
    except InvalidBlobKey as error:
        raise Rejected("malformed_event", f"{where}: template: {error}") from None
    if not template.pkgname or not template.version:
        raise Rejected("malformed_event", f"{where}: the template has no name or version")
    where = f"job {job_id} ({template.pkgname}-{template.version})"
    if not event.packages:
        raise Rejected("malformed_event", f"{where}: no packages staged")
    if len(event.packages) > MAX_PACKAGES_PER_JOB:
        raise Rejected("malformed_event", f"{where}: {len(event.packages)} packages is too many")
    files = tuple(_check_staged(job_id, template, staged, where) for staged in event.packages)
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise Rejected("malformed_event", f"{where}: a package is staged twice")
    return StagedJob(job_id, category, arch, template, files)


def _check_staged(
    job_id: str, template: common_pb2.TemplateRef, staged: common_pb2.StagedPackage, job: str
) -> StagedFile:
    where = f"{job}: {staged.name or '?'}"
    if staged.category != template.category:
        raise Rejected(
            "malformed_event",
            f"{where}: category {staged.category!r} is not the template's {template.category!r}",
        )
    if staged.version != template.version:
        raise Rejected(
            "version_mismatch",
            f"{where}: version {staged.version!r} is not the template's {template.version!r}",
        )
    if staged.arch != template.arch:
        raise Rejected(
            "arch_mismatch",
            f"{where}: arch {staged.arch!r} is not the template's {template.arch!r}",
        )
    expected_name = f"{staged.name}-{staged.version}.apk"
    if not staged.name or staged.filename != expected_name:
        raise Rejected(
            "malformed_event",
            f"{where}: file name {staged.filename!r} is not {expected_name!r}",
        )
    try:
        layout.apk_file(staged.filename)
    except InvalidBlobKey as error:
        raise Rejected("malformed_event", f"{where}: {error}") from None
    if not 0 < staged.size <= MAX_PACKAGE_BYTES:
        raise Rejected("malformed_event", f"{where}: size {staged.size} is out of range")
    if not _SHA256.fullmatch(staged.sha256):
        raise Rejected("malformed_event", f"{where}: sha256 is not 64 lowercase hex digits")
    return StagedFile(
        name=staged.name,
        version=staged.version,
        arch=staged.arch,
        file_name=staged.filename,
        blob_key=staged_blob_key(job_id, staged.blob_key, where),
        size=staged.size,
        sha256=staged.sha256,
    )


def check_download(staged: StagedFile, size: int, sha256: str, where: str) -> None:
    """The bytes downloaded are the bytes the event announced."""
    if size != staged.size:
        raise Rejected(
            "size_mismatch", f"{where}: {size} bytes in the store, the event says {staged.size}"
        )
    if sha256 != staged.sha256:
        raise Rejected(
            "sha256_mismatch",
            f"{where}: SHA-256 in the store is {sha256}, the event says {staged.sha256}",
        )


def check_contents(job: StagedJob, staged: StagedFile, contents: PackageContents) -> None:
    """The package's own signed ``.PKGINFO`` says what the event and the template say."""
    info = contents.info
    where = f"{job.label}: {staged.file_name}"
    if info.pkgname != staged.name:
        raise Rejected(
            "name_mismatch", f"{where}: the package inside is {info.pkgname!r}, not {staged.name!r}"
        )
    if info.pkgver != staged.version:
        raise Rejected(
            "version_mismatch",
            f"{where}: the package inside has version {info.pkgver!r}, not {staged.version!r}",
        )
    if info.arch != staged.arch:
        raise Rejected(
            "arch_mismatch",
            f"{where}: the package inside is for {info.arch!r}, not {staged.arch!r}",
        )
    if info.origin not in (None, job.template.pkgname):
        raise Rejected(
            "origin_mismatch",
            f"{where}: origin {info.origin!r} is not the template {job.template.pkgname!r}",
        )
