"""The farm's key scheme: where each kind of artifact lives in the blob store.

Every function validates what it is given (job ids, file names, archs come
from jobs and builds), so a key built here never escapes its prefix.

Numbers that order things (index generations, audit records) are zero-padded
so that a prefix listing, which is lexicographic, returns them in order.
"""

from __future__ import annotations

import re

from apkfarm.blobs.keys import InvalidBlobKey, validate_key

SOURCES_PREFIX = "sources/sha256/"
STAGING_PREFIX = "staging/"
LOGS_PREFIX = "logs/"
REPO_PREFIX = "repo/"
AUDIT_PREFIX = "audit/"
TREES_PREFIX = "trees/"
INDEX_NAME = "APKINDEX.tar.gz"
GENERATIONS_DIR = ".generations"
GENERATION_DIGITS = 10
AUDIT_DIGITS = 12

_SHA256 = re.compile(r"[0-9a-f]{64}")
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ARCH = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")
_CATEGORY_WORD = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# apk package file names: name-version-rN.apk; cports names may hold '+'.
_APK_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._~-]{0,250}\.apk")


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidBlobKey(f"invalid {what} {value!r} for a blob key")
    return value


def _number(value: int, what: str, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**digits:
        raise InvalidBlobKey(f"invalid {what} {value!r}: a whole number below 10**{digits}")
    return f"{value:0{digits}d}"


def sha256_hex(value: str) -> str:
    return _check(_SHA256, value, "sha256 (64 lowercase hex digits)")


def job_id(value: str) -> str:
    return _check(_JOB_ID, value, "job id")


def arch(value: str) -> str:
    return _check(_ARCH, value, "arch")


def category(value: str) -> str:
    """A repository category: ``main``, ``user``, or nested like ``main/debug``."""
    if not isinstance(value, str) or not all(
        _CATEGORY_WORD.fullmatch(word) for word in value.split("/")
    ):
        raise InvalidBlobKey(f"invalid repository category {value!r} for a blob key")
    return value


def apk_file(value: str) -> str:
    return _check(_APK_FILE, value, "package file name (NAME-VERSION.apk)")


def source_key(sha256: str) -> str:
    """``sources/sha256/<hex>``: a source file, content-addressed."""
    return validate_key(SOURCES_PREFIX + sha256_hex(sha256))


def staging_prefix(job: str) -> str:
    return f"{STAGING_PREFIX}{job_id(job)}/"


def staging_key(job: str, file_name: str) -> str:
    """``staging/<job-id>/<file>.apk``: an unsigned package a build produced."""
    return validate_key(staging_prefix(job) + apk_file(file_name))


def log_key(job: str) -> str:
    """``logs/<job-id>.log``: the full log of one build job."""
    return validate_key(f"{LOGS_PREFIX}{job_id(job)}.log")


# The farm-wide keys of the repository are the repository store's keys (below)
# under ``repo/``.


def repo_prefix(repo_category: str, repo_arch: str) -> str:
    return REPO_PREFIX + repository_dir(repo_category, repo_arch)


def repo_package_key(repo_category: str, repo_arch: str, file_name: str) -> str:
    """``repo/<category>/<arch>/<file>.apk``: a signed, published package."""
    return validate_key(REPO_PREFIX + repository_package_key(repo_category, repo_arch, file_name))


def repo_index_key(repo_category: str, repo_arch: str) -> str:
    """``repo/<category>/<arch>/APKINDEX.tar.gz``: the current signed index."""
    return validate_key(REPO_PREFIX + repository_index_key(repo_category, repo_arch))


def generations_prefix(repo_category: str, repo_arch: str) -> str:
    return REPO_PREFIX + repository_generations_prefix(repo_category, repo_arch)


def index_generation_key(repo_category: str, repo_arch: str, generation: int) -> str:
    """``repo/<category>/<arch>/.generations/<n>/APKINDEX.tar.gz``: a kept index generation."""
    return validate_key(
        REPO_PREFIX + repository_generation_key(repo_category, repo_arch, generation)
    )


def parse_generation(key: str) -> int | None:
    """The generation number of an index-generation key, or None for other keys."""
    if not key.startswith(REPO_PREFIX):
        return None
    return parse_repository_generation(key.removeprefix(REPO_PREFIX))


def audit_key(seq: int) -> str:
    """``audit/<seq>.json``: one immutable signature audit record."""
    return validate_key(f"{AUDIT_PREFIX}{_number(seq, 'audit sequence number', AUDIT_DIGITS)}.json")


def tree_key(sha256: str) -> str:
    """``trees/<sha256>.tar``: a submitted ports-tree snapshot, content-addressed."""
    return validate_key(f"{TREES_PREFIX}{sha256_hex(sha256)}.tar")


# --- keys within the repository store -----------------------------------------
#
# Services that publish or read the repository open it as its own store (the
# bucket's ``repo/`` prefix in the farm, the output directory in the embedded
# mode), so these keys have the shapes above without ``repo/``.

REPOSITORY_STATE_DIR = ".apkfarm"
REPOSITORY_STATE_NAME = "index.state"
_REPOSITORY_GENERATION_KEY = re.compile(
    rf"(?P<repo>.+)/{re.escape(GENERATIONS_DIR)}/(?P<n>[0-9]{{{GENERATION_DIGITS}}})/"
    rf"{re.escape(INDEX_NAME)}"
)
_REPOSITORY_STATE_KEY = re.compile(
    rf"(?P<category>.+)/(?P<arch>[^/]+)/{re.escape(REPOSITORY_STATE_DIR)}/"
    rf"{re.escape(REPOSITORY_STATE_NAME)}"
)


def repository_dir(repo_category: str, repo_arch: str) -> str:
    """``<category>/<arch>/``: one repository within the repository store."""
    return f"{category(repo_category)}/{arch(repo_arch)}/"


def repository_package_key(repo_category: str, repo_arch: str, file_name: str) -> str:
    """``<category>/<arch>/<file>.apk`` in the repository store."""
    return validate_key(repository_dir(repo_category, repo_arch) + apk_file(file_name))


def repository_index_key(repo_category: str, repo_arch: str) -> str:
    """``<category>/<arch>/APKINDEX.tar.gz`` in the repository store."""
    return validate_key(repository_dir(repo_category, repo_arch) + INDEX_NAME)


def repository_generations_prefix(repo_category: str, repo_arch: str) -> str:
    return f"{repository_dir(repo_category, repo_arch)}{GENERATIONS_DIR}/"


def repository_generation_key(repo_category: str, repo_arch: str, generation: int) -> str:
    """``<category>/<arch>/.generations/<n>/APKINDEX.tar.gz`` in the repository store."""
    number = _number(generation, "index generation", GENERATION_DIGITS)
    prefix = repository_generations_prefix(repo_category, repo_arch)
    return validate_key(f"{prefix}{number}/{INDEX_NAME}")


def parse_repository_generation(key: str) -> int | None:
    """The generation number of a repository-store generation key, or None for other keys."""
    match = _REPOSITORY_GENERATION_KEY.fullmatch(key)
    return int(match["n"]) if match else None


def repository_state_key(repo_category: str, repo_arch: str) -> str:
    """``<category>/<arch>/.apkfarm/index.state``: the indexer's record of one repository."""
    directory = repository_dir(repo_category, repo_arch)
    return validate_key(f"{directory}{REPOSITORY_STATE_DIR}/{REPOSITORY_STATE_NAME}")


def parse_repository_state_key(key: str) -> tuple[str, str] | None:
    """``(category, arch)`` of a repository state key, or None for any other (or invalid) key."""
    match = _REPOSITORY_STATE_KEY.fullmatch(key)
    if match is None:
        return None
    try:
        return category(match["category"]), arch(match["arch"])
    except InvalidBlobKey:
        return None
