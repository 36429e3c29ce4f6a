"""A bwrap sandbox described as data, turned into one argv.

The command line has three stages, each exec'ing the next:

1. ``bwrap`` builds a fresh root from explicit read-only binds only (never
   ``/``), unshares every namespace but the user namespace, and drops every
   capability except the two needed for stage 2;
2. ``setpriv`` switches to an unprivileged *host* uid/gid with no groups and
   no inheritable capabilities (so ``setresuid`` clears the rest);
3. ``prlimit`` lowers the resource limits, then runs the command.

Why not a user namespace when we run as root: bwrap would map the sandbox uid
to host root, and a process that is host uid 0 — even without capabilities —
owns every root-owned file and is exempt from ``RLIMIT_NPROC``. A real
unprivileged host uid is denied root's files by plain permissions and is
held to the process limit. When the caller is not root there is nothing to
drop: bwrap then uses a user namespace (``--unshare-all``) and stage 2 is
skipped.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from apkfarm.errors import ApkfarmError

__all__ = [
    "DEFAULT_HELPER_DIR",
    "MIB",
    "Bind",
    "ResourceLimits",
    "SandboxError",
    "SandboxSpec",
    "Symlink",
    "Tmpfs",
    "require_bwrap",
]

# Where the sandbox's own helpers (setpriv, prlimit) are bound inside.
DEFAULT_HELPER_DIR = PurePosixPath("/run/apkfarm-sandbox")

MIB = 1 << 20


class SandboxError(ApkfarmError):
    """The sandbox cannot be set up (missing tool, bad spec) or its process failed."""


def require_bwrap(bwrap: str = "bwrap") -> str:
    """The path of bwrap, or a SandboxError saying that it is needed."""
    found = shutil.which(bwrap)
    if found is None:
        raise SandboxError(
            f"bubblewrap ({bwrap!r}) is not installed; it is required to evaluate "
            "templates and to build (apt-get install bubblewrap)"
        )
    return found


@dataclass(frozen=True)
class Bind:
    """A host path made visible inside the sandbox (read-only unless `writable`)."""

    source: Path
    dest: PurePosixPath | None = None  # None: the same path as on the host
    writable: bool = False

    @property
    def target(self) -> PurePosixPath:
        return self.dest if self.dest is not None else PurePosixPath(self.source)


@dataclass(frozen=True)
class Symlink:
    """A symlink created inside the sandbox: `path` -> `target`."""

    target: str
    path: PurePosixPath


@dataclass(frozen=True)
class Tmpfs:
    """A private tmpfs; `size` in bytes bounds what can be written.

    bwrap makes it 0755 and owned by root; ``mode=0o1777`` lets the
    sandbox's unprivileged uid write to it, as to a /tmp.
    """

    path: PurePosixPath
    size: int | None = None
    mode: int | None = None


@dataclass(frozen=True)
class ResourceLimits:
    """Per-process limits for the sandboxed command (soft = hard; None = inherit).

    ``processes`` is RLIMIT_NPROC, which counts every process *and thread* of
    the sandbox's uid; give each sandbox its own uid so that the count is the
    sandbox's own (1 means: this process and no other, so fork always fails).
    ``cpu_seconds`` is cumulative over the process's life.
    """

    address_space: int | None = 512 * MIB
    cpu_seconds: int | None = 600
    file_size: int | None = 1 * MIB
    processes: int | None = 1
    open_files: int | None = 64
    core_size: int | None = 0

    def prlimit_args(self) -> list[str]:
        """prlimit(1) options setting these limits."""
        pairs = (
            ("--as", self.address_space),
            ("--cpu", self.cpu_seconds),
            ("--fsize", self.file_size),
            ("--nproc", self.processes),
            ("--nofile", self.open_files),
            ("--core", self.core_size),
        )
        return [f"{option}={value}" for option, value in pairs if value is not None]


@dataclass(frozen=True)
class SandboxSpec:
    """Everything that defines one sandbox; ``argv(command)`` renders it.

    Only what is listed is visible: binds (read-only by default), symlinks,
    tmpfs mounts, a minimal /dev when `dev`, /proc when `proc`. There is no
    network unless `network`. The environment is exactly `env`.
    """

    binds: tuple[Bind, ...] = ()
    symlinks: tuple[Symlink, ...] = ()
    tmpfs: tuple[Tmpfs, ...] = ()
    dev: bool = True
    proc: bool = False
    network: bool = False
    # Host uid/gid the command runs as when the caller is root.
    uid: int = 65534
    gid: int = 65534
    env: Mapping[str, str] = field(default_factory=lambda: {"PATH": "/usr/bin:/bin"})
    workdir: PurePosixPath = field(default_factory=lambda: PurePosixPath("/"))
    hostname: str = "sandbox"
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    bwrap: str = "bwrap"
    setpriv: Path = Path("/usr/bin/setpriv")
    prlimit: Path = Path("/usr/bin/prlimit")
    helper_dir: PurePosixPath = DEFAULT_HELPER_DIR
    # Extra binds the helpers need (their shared libraries) when the binds
    # above do not already provide them.
    helper_binds: tuple[Bind, ...] = ()
    as_root: bool | None = None  # None: decided from os.geteuid()
    # Remount the sandbox's own root (the tmpfs holding the mount points)
    # read-only once everything is mounted, so nothing new appears at the top.
    read_only_root: bool = False

    def _privileged(self) -> bool:
        return os.geteuid() == 0 if self.as_root is None else self.as_root

    def _helper(self, host: Path) -> PurePosixPath:
        return self.helper_dir / host.name

    def argv(self, command: Sequence[str], *, info_fd: int | None = None) -> list[str]:
        """The full command line: bwrap, then setpriv (as root), then prlimit, then `command`.

        With `info_fd`, bwrap writes ``{"child-pid": N}`` to that descriptor
        (pass it to the child): killing N, the sandbox's PID 1, kills every
        process inside at once.
        """
        if not command:
            raise SandboxError("sandbox command is empty")
        privileged = self._privileged()
        argv: list[str] = [self.bwrap]
        if info_fd is not None:
            argv += ["--info-fd", str(info_fd)]
        if privileged:
            # Everything --unshare-all does except the user namespace (see the
            # module docstring); setpriv needs exactly SETUID and SETGID.
            argv += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
            if not self.network:
                argv.append("--unshare-net")
            argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            argv.append("--unshare-all")
            if self.network:
                argv.append("--share-net")
            argv += ["--cap-drop", "ALL"]
        argv += ["--die-with-parent", "--new-session", "--hostname", self.hostname, "--clearenv"]
        for name, value in sorted(self.env.items()):
            argv += ["--setenv", name, value]

        helpers: list[Bind] = []
        if privileged:
            helpers.append(Bind(self.setpriv, self._helper(self.setpriv)))
        if self.limits.prlimit_args():
            helpers.append(Bind(self.prlimit, self._helper(self.prlimit)))
        # Parents before children, so that a bind inside another bind lands on top.
        binds = sorted(
            [*self.binds, *helpers, *self.helper_binds], key=lambda b: len(b.target.parts)
        )
        argv += self._directories(binds)
        seen: set[PurePosixPath] = set()
        for bind in binds:
            if bind.target in seen:
                continue
            seen.add(bind.target)
            option = "--bind" if bind.writable else "--ro-bind"
            argv += [option, str(bind.source), str(bind.target)]
        for link in self.symlinks:
            argv += ["--symlink", link.target, str(link.path)]
        for mount in self.tmpfs:
            if mount.mode is not None:
                argv += ["--perms", f"{mount.mode:04o}"]
            if mount.size is not None:
                argv += ["--size", str(mount.size)]
            argv += ["--tmpfs", str(mount.path)]
        if self.dev:
            argv += ["--dev", "/dev"]
        if self.proc:
            argv += ["--proc", "/proc"]
        if self.read_only_root:
            argv += ["--remount-ro", "/"]
        argv += ["--chdir", str(self.workdir), "--"]

        if privileged:
            argv += [
                str(self._helper(self.setpriv)),
                f"--reuid={self.uid}",
                f"--regid={self.gid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--nnp",
                "--",
            ]
        limit_args = self.limits.prlimit_args()
        if limit_args:
            argv += [str(self._helper(self.prlimit)), *limit_args, "--"]
        argv += list(command)
        return argv

    def _directories(self, binds: Sequence[Bind]) -> list[str]:
        """Create every parent of every mount point world-traversable.

        bwrap would otherwise create missing parents with mode 0700, and an
        unprivileged uid could not reach what is bound below them.
        """
        wanted: set[PurePosixPath] = set()
        for target in [bind.target for bind in binds] + [t.path for t in self.tmpfs]:
            wanted.update(p for p in target.parents if str(p) != "/")
        link_paths = {link.path for link in self.symlinks}
        bound = {bind.target for bind in binds}
        args: list[str] = []
        for directory in sorted(wanted, key=lambda p: (len(p.parts), str(p))):
            # A directory that a bind provides (or lies inside one) already exists.
            if directory in link_paths or any(
                directory == b or directory.is_relative_to(b) for b in bound
            ):
                continue
            args += ["--perms", "0755", "--dir", str(directory)]
        return args

    def popen_env(self) -> dict[str, str]:
        """The environment to start bwrap with: nothing of the caller's, PATH only."""
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
