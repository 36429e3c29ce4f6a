"""Process hardening for the key holder: no core dumps, not ptrace-able by peers."""

from __future__ import annotations

import ctypes
import ctypes.util
import resource

from apkfarm.services.common.logs import get_logger

log = get_logger(__name__)

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


def disable_core_dumps() -> bool:
    """Keep key material out of core files; True when the kernel agreed to both steps."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        log.warning("cannot find libc to clear the dumpable flag")
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    # Not dumpable also means other processes of the same user cannot ptrace us.
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_DUMPABLE, 0) failed", errno=ctypes.get_errno())
        return False
    return True


def is_dumpable() -> bool:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return True
    libc = ctypes.CDLL(libc_name, use_errno=True)
    return bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))
