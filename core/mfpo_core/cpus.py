"""How many CPUs this process may really use, and how many threads each stage process takes.

`os.cpu_count()` counts the machine's cores. A process pinned by affinity (taskset, a cpuset)
or in a cgroup with a CPU quota (a container's CPU limit: a pod's `resources.limits.cpu`) gets
fewer, and OpenMP threads beyond them wait on each other. Both planes use this module: the local
runner divides the CPUs among the stage processes it runs side by side; a stage sets torch's
threads from `threads_per_process`.

Written by hand: the standard library has the affinity only (`os.sched_getaffinity`), and
joblib/loky read the quota of the root cgroup only, at fixed paths, missing the quota of a
nested cgroup (a systemd slice, a non-namespaced container).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

# Per-process thread count overrides, most specific first. OMP_NUM_THREADS is OpenMP's own
# (a comma-separated list, one count per nesting level: the first is the outer level's).
THREAD_OVERRIDES = ("MFPO_THREADS", "OMP_NUM_THREADS")
_CGROUP_ROOT = "sys/fs/cgroup"  # where cgroup v2 (and v1 controllers, below it) are mounted
_V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def available_cpus(root: Path = Path("/")) -> int:
    """CPUs this process may use: its affinity, capped by the cgroup quota rounded down (at least 1).

    Rounded down as Uber's automaxprocs does for Go: threads beyond the quota are throttled.
    """
    cpus = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(root)
    return max(1, min(cpus, math.floor(quota))) if quota is not None else cpus


def idle_cpus(sample_seconds: float = 0.25, root: Path = Path("/")) -> float:
    """CPUs of this machine left idle by every other process over a short sample (/proc/stat's
    idle and iowait time), capped by `available_cpus`. Only meaningful outside a container:
    /proc/stat there shows the whole node, not the container's quota."""
    first = _cpu_times(root)
    time.sleep(sample_seconds)
    second = _cpu_times(root)
    if first is None or second is None or second[1] <= first[1]:
        return float(available_cpus(root))
    idle_share = (second[0] - first[0]) / (second[1] - first[1])
    cores = len(_cpu_lines(root)) or os.cpu_count() or 1
    return min(float(available_cpus(root)), idle_share * cores)


def _cpu_lines(root: Path) -> list[str]:
    text = _read(root / "proc/stat") or ""
    return [line for line in text.splitlines() if line.startswith("cpu") and line[3:4].isdigit()]


def _cpu_times(root: Path) -> tuple[int, int] | None:
    """(idle + iowait, total) jiffies of all CPUs from /proc/stat's first line."""
    text = _read(root / "proc/stat")
    if not text or not text.startswith("cpu "):
        return None
    fields = [int(value) for value in text.splitlines()[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])  # user nice system idle iowait irq softirq steal


def local_threads_per_process(concurrent: int = 1, environ: Mapping[str, str] = os.environ) -> int:
    """Threads for one of `concurrent` stage processes started now on this machine (the local
    runner): the overrides as `threads_per_process`, else the CPUs idle right now divided among
    them. Beside a busy process, OpenMP threads that wait on a descheduled peer make a stage
    many times slower (benchmarks/bench_contention.py: 5x idle with 2 threads beside a
    2-thread competitor on 2 CPUs, 1.2x with 1 thread)."""
    if any(environ.get(name, "").strip() for name in THREAD_OVERRIDES):
        return threads_per_process(concurrent, environ)
    return max(1, math.floor(idle_cpus() + 0.5) // max(1, concurrent))


def threads_per_process(concurrent: int = 1, environ: Mapping[str, str] = os.environ) -> int:
    """Threads for one of `concurrent` stage processes sharing this machine's CPUs.

    MFPO_THREADS, else OMP_NUM_THREADS when set; else the available CPUs divided among the
    processes. Raises ValueError naming the variable when an override is not a positive integer.
    """
    for name in THREAD_OVERRIDES:
        value = environ.get(name, "").strip()
        if value:
            return _positive_int(name, value.split(",")[0] if name == "OMP_NUM_THREADS" else value)
    return max(1, available_cpus() // max(1, concurrent))


def _positive_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"{name}={value!r}: expected a positive number of threads")
    return number


def cgroup_cpu_quota(root: Path = Path("/")) -> float | None:
    """The tightest CPU quota (in CPUs) of this process's cgroup and its ancestors; None if none.

    Reads `<root>/proc/self/cgroup`: cgroup v2 `cpu.max` ("max 100000" or "<quota> <period>") and
    cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: no quota).
    """
    quotas = [quota for directory in _cgroup_dirs(root) if (quota := _quota_in(directory)) is not None]
    return min(quotas, default=None)


def _cgroup_dirs(root: Path) -> Iterator[Path]:
    """Each directory from this process's cgroup up to its hierarchy's mount point.

    Inside a container the path in /proc/self/cgroup may be the host's while the mount shows the
    container's own cgroup at its root: walking up from a missing directory reaches it.
    """
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: "0::/path"
            mounts = [root / _CGROUP_ROOT]
        elif "cpu" in controllers.split(","):
            mounts = [root / _CGROUP_ROOT / name for name in _V1_CPU_MOUNTS]
        else:
            continue
        for mount in mounts:
            directory = mount / path.lstrip("/")
            while True:
                yield directory
                if directory == mount:
                    break
                directory = directory.parent


def _quota_in(directory: Path) -> float | None:
    v2 = _read(directory / "cpu.max")
    if v2 is not None:
        quota, period = v2.split()
        return None if quota == "max" else int(quota) / int(period)
    v1_quota, v1_period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    if v1_quota is None or v1_period is None or int(v1_quota) < 0:
        return None
    return int(v1_quota) / int(v1_period)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
