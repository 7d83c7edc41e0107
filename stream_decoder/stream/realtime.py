"""Real-time scheduling: what keeps the daemon's latency tail short on a busy rig PC.

A normally scheduled daemon waits behind whatever else the PC runs (acquisition software, a
browser, the kernel's housekeeping) for milliseconds at a time. SCHED_FIFO puts it first whenever
a message is waiting; pinning keeps its caches warm; locked memory means no page fault mid-session.
Applied once at start-up, before the backend and the sockets start their threads, which inherit it.
"""

import ctypes
import ctypes.util
import os

from stream_decoder.errors import UserError
from stream_decoder.stream.config import RealtimeConfig

MCL_CURRENT, MCL_FUTURE = 1, 2  # <sys/mman.h>


def apply_realtime(cfg: RealtimeConfig) -> dict:
    """Pin, lock and raise this process as configured; returns what now holds (for the log)."""
    if cfg.cpus:
        os.sched_setaffinity(0, cfg.cpus)
    if cfg.lock_memory:
        lock_memory()
    if cfg.priority:
        set_fifo(cfg.priority)
    return {
        "policy": "fifo" if cfg.priority else "normal",
        "priority": cfg.priority,
        "cpus": ",".join(map(str, sorted(os.sched_getaffinity(0)))),
        "memory_locked": cfg.lock_memory,
    }


def set_fifo(priority: int) -> None:
    """SCHED_FIFO at `priority` for the calling thread and every thread it starts later."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        raise UserError(
            f"[realtime] priority {priority}: this user may not use SCHED_FIFO; run as root, or give "
            f"the service AmbientCapabilities=CAP_SYS_NICE or LimitRTPRIO={priority} (deploy/README.md), "
            "or set priority = 0"
        ) from None


def lock_memory() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
        raise UserError(
            f"[realtime] lock_memory: mlockall failed ({os.strerror(ctypes.get_errno())}); "
            "raise the limit (LimitMEMLOCK=infinity in the service unit, ulimit -l) or set "
            "lock_memory = false"
        )
