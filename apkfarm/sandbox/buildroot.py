"""The read-only root a build sees: a build root's /usr and the few /etc files toolchains read.

A build needs compilers, make, a shell and their libraries, all of which
live under ``/usr`` on a merged-/usr system (``/bin``, ``/lib``, ``/lib64``
are symlinks into it, and are recreated as such). From ``/etc`` only what
programs need to start and find each other is bound: the dynamic loader's
cache and configuration, and Debian's ``alternatives`` links (``cc``,
``awk`` point through them). Everything else of ``/etc`` — ``shadow``,
``ssl/private``, service configuration — and ``/root``, ``/home``, ``/run``,
``/var`` and ``/srv`` is simply absent.

Identity files (``passwd``, ``group``, ``hosts``, ``nsswitch.conf``) are
written fresh per build (``write_identity_files``): the build user exists
and ``localhost`` resolves, and no host account is named.

``BuildRoot.root`` is ``/`` when the builder's own filesystem is the build
root (the builder image holds only toolchains), or a directory holding an
unpacked build-root image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from apkfarm.sandbox.spec import Bind, SandboxError, Symlink

__all__ = ["DEFAULT_ETC_FILES", "BuildRoot", "write_identity_files"]

# /etc entries a toolchain reads; nothing that holds a secret.
DEFAULT_ETC_FILES: tuple[str, ...] = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d")

# Top-level directories that merged-/usr systems make symlinks into /usr.
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")

_IDENTITY_FILES = ("passwd", "group", "hosts", "nsswitch.conf")


@dataclass(frozen=True)
class BuildRoot:
    """Where a build's programs come from: ``root``'s /usr and selected /etc entries."""

    root: Path = Path("/")
    etc_files: tuple[str, ...] = DEFAULT_ETC_FILES

    def mounts(self) -> tuple[tuple[Bind, ...], tuple[Symlink, ...]]:
        """Read-only binds and top-level symlinks that make up the build root."""
        usr = self.root / "usr"
        if not usr.is_dir():
            raise SandboxError(f"build root {self.root} has no usr directory")
        binds: list[Bind] = [Bind(usr.resolve(), PurePosixPath("/usr"))]
        links: list[Symlink] = []
        for name in _TOP_LEVEL:
            path = self.root / name
            target = PurePosixPath("/") / name
            if path.is_symlink():
                links.append(Symlink(str(path.readlink()), target))
            elif path.is_dir():
                binds.append(Bind(path.resolve(), target))
        for name in self.etc_files:
            if "/" in name or name in ("", ".", "..") or name in _IDENTITY_FILES:
                raise SandboxError(f"build root: {name!r} is not an /etc entry that may be bound")
            path = self.root / "etc" / name
            if path.exists():
                binds.append(Bind(path, PurePosixPath("/etc") / name))
        return tuple(binds), tuple(links)

    def program(self, name: str) -> Path | None:
        """The build root's ``usr/bin/<name>`` (or ``usr/sbin``), if it is there."""
        for directory in ("usr/bin", "usr/sbin"):
            path = self.root / directory / name
            if path.exists() and not path.is_dir():
                return path
        return None


def write_identity_files(
    directory: Path, *, uid: int, gid: int, user: str = "build"
) -> tuple[Bind, ...]:
    """Write /etc identity files for a build user into `directory`; their read-only binds.

    The build's processes run as `uid`; naming it lets tools that look the
    user up (``id``, Python's ``getpass``, test suites) work.
    """
    directory.mkdir(parents=True, exist_ok=True)
    contents = {
        "passwd": (
            "root:x:0:0:root:/nonexistent:/bin/false\n"
            f"{user}:x:{uid}:{gid}:build user:/tmp:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        ),
        "group": f"root:x:0:\n{user}:x:{gid}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
    }
    binds = []
    for name, text in contents.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
        binds.append(Bind(path, PurePosixPath("/etc") / name))
    return tuple(binds)
