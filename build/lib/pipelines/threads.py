"""Intra-op threads: one per core this process may really use, and a warning when others use them too.

Two processes with 2 intra-op threads each on 2 cores made training 8–20× slower than one thread
alone (``../shared/KNOWN_TRAPS.md``): a thread per *visible* CPU is wrong under CPU affinity or a
cgroup quota, and a number measured on a busy machine measures the contention.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


def cgroup_quota(v2: Path = CGROUP_V2, v1: tuple[Path, Path] = CGROUP_V1) -> float | None:
    """CPUs the cgroup quota allows (e.g. 1.5), or None when there is no quota."""
    try:
        if v2.exists():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if v1[0].exists():
            quota, period = int(v1[0].read_text()), int(v1[1].read_text())
            return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None
    return None


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by the cgroup quota (rounded down, at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when the environment sets it (an explicit choice), else :func:`available_cores`."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else available_cores()


def other_runnable(samples: int = 5, loadavg: Path = Path("/proc/loadavg")) -> float:
    """Runnable threads other than this one, the least of a few snapshots of ``/proc/loadavg`` 20 ms apart.

    The 1-minute load average lags and counts this process's own start-up, so a snapshot of what is
    runnable now is the better sign of another job (falls back to the load average elsewhere).
    """
    import time

    try:
        seen = []
        for _ in range(samples):
            seen.append(int(loadavg.read_text().split()[3].split("/")[0]) - 1)
            time.sleep(0.02)
        return float(max(min(seen), 0))
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def busy_message(threads: int, cores: int, load: float) -> str | None:
    """A warning when other runnable work plus our threads exceeds the cores, else None."""
    if load + threads <= cores:
        return None
    return (f"this machine is busy: {load:.0f} other runnable thread(s) on {cores} core(s) with {threads} torch thread(s); "
            "torch slows several-fold when threads share cores, so throughput figures from this run measure the "
            "contention (run one job at a time, or lower --threads)")


def set_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads (0 = :func:`default_threads`), warn if the machine is oversubscribed.

    Returns:
        The thread count set.
    """
    import torch

    threads = requested or default_threads()
    torch.set_num_threads(threads)
    message = busy_message(threads, available_cores(), other_runnable())
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return threads
