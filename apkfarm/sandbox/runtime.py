"""What a sandbox must bind to run a host program: the program and its shared libraries.

Nothing else of the host is bound. For the Python interpreter that is its
installation prefix (``sys.base_prefix``: the binary, the stdlib, libpython)
and the directories of the shared libraries the dynamic loader resolves for
it (found with ``ldd`` once per process). Any host interpreter of Python
3.10 or later can run the template worker; the farm's default is its own.
Host top-level symlinks such as ``/lib -> usr/lib`` on merged-/usr systems
are recreated so that the loader path written into binaries
(``/lib64/ld-linux-x86-64.so.2``) resolves.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from apkfarm.sandbox.spec import Bind, SandboxError, Symlink

__all__ = ["PythonRuntime", "library_binds", "python_runtime"]

# Top-level host paths that merged-/usr systems make symlinks into /usr.
_TOP_LEVEL_LINKS = ("/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin")


@dataclass(frozen=True)
class PythonRuntime:
    """The interpreter to run inside a sandbox and what must be bound for it."""

    executable: Path
    binds: tuple[Bind, ...]
    symlinks: tuple[Symlink, ...]


def _ldd_paths(binary: Path) -> list[Path]:
    """Absolute paths of the shared objects the dynamic loader picks for `binary`."""
    try:
        result = subprocess.run(
            ["ldd", str(binary)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SandboxError(f"cannot list the shared libraries of {binary}: {error}") from error
    if result.returncode != 0:
        if "not a dynamic executable" in result.stdout + result.stderr:
            return []
        raise SandboxError(
            f"cannot list the shared libraries of {binary}: ldd says {result.stderr.strip()!r}"
        )
    paths: list[Path] = []
    for line in result.stdout.splitlines():
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        words = line.split()
        if "=>" in words:
            index = words.index("=>")
            if index + 1 < len(words) and words[index + 1].startswith("/"):
                paths.append(Path(words[index + 1]))
        elif words and words[0].startswith("/"):
            paths.append(Path(words[0]))
    return paths


def _host_top_level_links() -> list[Symlink]:
    links = []
    for top in _TOP_LEVEL_LINKS:
        path = Path(top)
        if path.is_symlink():
            links.append(Symlink(str(path.readlink()), PurePosixPath(top)))
    return links


@functools.cache
def library_binds(binaries: tuple[Path, ...]) -> tuple[tuple[Bind, ...], tuple[Symlink, ...]]:
    """Read-only binds of the directories holding the shared libraries of `binaries`.

    Both the directory a library is named in (``/usr/lib64`` for
    ``/lib64/ld-linux-x86-64.so.2``) and the one its symlinks resolve to are
    bound, so the loader finds it under either name.
    """
    directories: set[Path] = set()
    for binary in binaries:
        for library in _ldd_paths(binary):
            directories.add(Path(os.path.realpath(library.parent)))
            directories.add(Path(os.path.realpath(library)).parent)
    links = _host_top_level_links()
    linked = {str(link.path) for link in links}
    binds = tuple(
        Bind(directory)
        for directory in sorted(directories)
        if str(directory) not in linked and directory != Path("/")
    )
    return binds, tuple(links)


def _covered(path: Path, binds: Iterable[Bind]) -> bool:
    return any(path == b.source or path.is_relative_to(b.source) for b in binds)


_PATHS_PROBE = (
    "import json, os, sys, sysconfig; "
    "print(json.dumps([os.path.realpath(sys.executable), sys.version_info[:2], "
    "sysconfig.get_path('stdlib'), sysconfig.get_path('platstdlib')]))"
)

MINIMUM_PYTHON = (3, 10)


def _interpreter_paths(executable: Path | None) -> tuple[Path, tuple[int, int], list[Path]]:
    """The real interpreter binary, its version, and its standard library directories."""
    if executable is None:
        # The base interpreter, asked directly: from inside a virtualenv,
        # sysconfig would answer with the virtualenv's paths.
        executable = Path(getattr(sys, "_base_executable", None) or sys.executable)
    try:
        done = subprocess.run(
            [str(executable), "-I", "-S", "-c", _PATHS_PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        )
        real_text, version, stdlib, platstdlib = json.loads(done.stdout)
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        raise SandboxError(f"{executable} is not a usable Python interpreter: {error}") from error
    return Path(real_text), (int(version[0]), int(version[1])), [Path(stdlib), Path(platstdlib)]


@functools.cache
def python_runtime(executable: Path | None = None) -> PythonRuntime:
    """An interpreter to run inside a sandbox (default: this process's base one) and its binds.

    Worker scripts run with ``-I -S``, so nothing from a virtualenv or
    ``site-packages`` is needed: the binary, its standard library (which
    holds ``lib-dynload``) and its shared libraries.
    """
    real, version, stdlib = _interpreter_paths(executable)
    if not real.is_file():
        raise SandboxError(f"cannot find the Python interpreter (looked at {real})")
    if version < MINIMUM_PYTHON:
        wanted = ".".join(map(str, MINIMUM_PYTHON))
        raise SandboxError(
            f"{real} is Python {version[0]}.{version[1]}; {wanted} or later is needed"
        )
    binds: list[Bind] = [Bind(real)]
    for directory in stdlib:
        real_directory = Path(os.path.realpath(directory))
        if not _covered(real_directory, binds):
            binds.append(Bind(real_directory))
    library_dirs, links = library_binds((real,))
    binds += [b for b in library_dirs if not _covered(b.source, binds)]
    return PythonRuntime(executable=real, binds=tuple(binds), symlinks=links)
