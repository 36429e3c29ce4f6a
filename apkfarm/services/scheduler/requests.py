"""Bounds on what an operator's request may contain, checked before anything uses it.

Names become database keys, bus queue names and blob keys further on; a
request that does not fit is refused here with INVALID_ARGUMENT and a message
naming the field, so no service trusts a name it did not check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from apkfarm.errors import ApkfarmError

MAX_NAMES = 10_000
MAX_PATH = 4096
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._-]{0,127}")
_ARCH = re.compile(r"[a-z0-9_]{1,32}")
_CATEGORY = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_TREE_ID = re.compile(r"[0-9a-f]{64}")


class InvalidRequest(ApkfarmError):
    """A request field out of bounds; the message names it."""


def _check(pattern: re.Pattern[str], value: str, field: str) -> None:
    if not pattern.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidRequest(f"{field}: {shown!r} is not a valid value")


def _check_all(pattern: re.Pattern[str], values: Sequence[str], field: str) -> None:
    if len(values) > MAX_NAMES:
        raise InvalidRequest(f"{field}: {len(values)} entries, at most {MAX_NAMES}")
    for value in values:
        _check(pattern, value, field)


def check_selector(pkgname: str, arch: str, tree_id: str) -> None:
    _check(_NAME, pkgname, "pkgname")
    if arch:
        _check(_ARCH, arch, "arch")
    if tree_id:
        _check(_TREE_ID, tree_id, "tree_id")


def check_listing(tree_id: str, arch: str) -> None:
    if tree_id:
        _check(_TREE_ID, tree_id, "tree_id")
    if arch:
        _check(_ARCH, arch, "arch")


def check_submission(
    *,
    local_path: str,
    archs: Sequence[str],
    categories: Sequence[str],
    packages: Sequence[str],
) -> None:
    if len(local_path) > MAX_PATH or "\x00" in local_path:
        raise InvalidRequest("local_path: too long or holds a NUL byte")
    _check_all(_ARCH, archs, "archs")
    _check_all(_CATEGORY, categories, "categories")
    _check_all(_NAME, packages, "packages")
