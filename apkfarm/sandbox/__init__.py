"""bwrap sandboxes for running code we do not trust: template evaluation, builds.

Threat model. The code inside (a cports template, a package's build system)
may be hostile. It must not:

* read anything of the host it was not given — only explicit read-only binds
  exist inside (the program's runtime, the ports tree), never ``/``, so
  keys, credentials and other services' files are simply absent; and it runs
  as an unprivileged host uid with no capabilities, so even a root-owned file
  that were bound by mistake stays unreadable;
* write to the host — binds are read-only unless a caller asks otherwise;
* reach the network — a new network namespace has only its own loopback;
* see or signal host processes — new PID, IPC and UTS namespaces, a new
  session (no terminal injection), and bwrap dies with its parent;
* exhaust the host — rlimits on address space, CPU seconds, file size,
  processes and open files; callers add a wall-clock timeout and kill.

What it may do is compute, and print to the pipes its caller reads; callers
must treat that output as untrusted data (bounded size, strict parsing).

``SandboxSpec`` renders one sandbox as an argv; ``python_runtime()`` lists the
binds needed to run the host's Python interpreter inside one; ``BuildRoot``
those of a build root (its /usr and the few /etc files toolchains read).
"""

from apkfarm.sandbox.buildroot import DEFAULT_ETC_FILES, BuildRoot, write_identity_files
from apkfarm.sandbox.runtime import PythonRuntime, library_binds, python_runtime
from apkfarm.sandbox.spec import (
    DEFAULT_HELPER_DIR,
    MIB,
    Bind,
    ResourceLimits,
    SandboxError,
    SandboxSpec,
    Symlink,
    Tmpfs,
    require_bwrap,
)

__all__ = [
    "DEFAULT_ETC_FILES",
    "DEFAULT_HELPER_DIR",
    "MIB",
    "Bind",
    "BuildRoot",
    "PythonRuntime",
    "ResourceLimits",
    "SandboxError",
    "SandboxSpec",
    "Symlink",
    "Tmpfs",
    "library_binds",
    "python_runtime",
    "require_bwrap",
    "write_identity_files",
]
