"""mfpo_core.cpus: the CPUs a process may use (affinity, cgroup quota) and threads per process.

The cgroup files are written by the tests under a fake root, in the formats the kernel
documents: cgroup v2 `cpu.max` is "$MAX $PERIOD" with "max" for no limit
(Documentation/admin-guide/cgroup-v2.rst, "CPU Interface Files"); cgroup v1
`cpu.cfs_quota_us` is -1 for no limit, else the run time per `cpu.cfs_period_us`
(Documentation/scheduler/sched-bwc.rst); /proc/self/cgroup lines are
"hierarchy-ID:controller-list:cgroup-path", "0::<path>" for v2 (man 7 cgroups).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mfpo_core import cpus


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_quota_of_the_process_cgroup(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/kubepods.slice/pod1/ctr\n")
    write(tmp_path, "sys/fs/cgroup/kubepods.slice/pod1/ctr/cpu.max", "150000 100000\n")
    write(tmp_path, "sys/fs/cgroup/kubepods.slice/cpu.max", "max 100000\n")
    assert cpus.cgroup_cpu_quota(tmp_path) == 1.5


def test_v2_the_tightest_ancestor_quota_wins(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/user.slice/job\n")
    write(tmp_path, "sys/fs/cgroup/user.slice/job/cpu.max", "max 100000\n")
    write(tmp_path, "sys/fs/cgroup/user.slice/cpu.max", "50000 50000\n")
    assert cpus.cgroup_cpu_quota(tmp_path) == 1.0


def test_v2_no_limit(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", "max 100000\n")
    assert cpus.cgroup_cpu_quota(tmp_path) is None


def test_v1_quota_seen_from_inside_a_container(tmp_path: Path) -> None:
    """The line names the host's path; the container's mount shows its own cgroup at the root."""
    write(tmp_path, "proc/self/cgroup", "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "250000\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert cpus.cgroup_cpu_quota(tmp_path) == 2.5


def test_v1_no_limit_and_no_cgroup_files(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "2:cpu:/\n")
    write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n")
    write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n")
    assert cpus.cgroup_cpu_quota(tmp_path) is None
    assert cpus.cgroup_cpu_quota(tmp_path / "nothing") is None


@pytest.mark.parametrize(("quota", "expected"), [("150000 100000", 1), ("50000 100000", 1), ("max 100000", 2)])
def test_available_cpus_is_the_affinity_capped_by_the_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quota: str, expected: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # a test double: two CPUs
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", quota)
    assert cpus.available_cpus(tmp_path) == expected


def test_threads_are_the_available_cpus_divided_among_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "available_cpus", lambda root=None: 7)  # a test double
    assert [cpus.threads_per_process(n, environ={}) for n in (1, 2, 3, 8)] == [7, 3, 2, 1]


def test_threads_overridden_by_env() -> None:
    assert cpus.threads_per_process(4, environ={"MFPO_THREADS": "6", "OMP_NUM_THREADS": "1"}) == 6
    assert cpus.threads_per_process(4, environ={"OMP_NUM_THREADS": "3,2"}) == 3  # OpenMP's nested list
    with pytest.raises(ValueError, match=r"MFPO_THREADS='0': expected a positive number of threads"):
        cpus.threads_per_process(environ={"MFPO_THREADS": "0"})
    with pytest.raises(ValueError, match=r"OMP_NUM_THREADS='many'"):
        cpus.threads_per_process(environ={"OMP_NUM_THREADS": "many"})


def test_idle_cpus_are_read_from_proc_stat_over_a_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stat = tmp_path / "proc" / "stat"
    stat.parent.mkdir()

    def write(user: int, idle: int) -> None:  # the kernel's line: user nice system idle iowait ...
        stat.write_text(f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\ncpu1 1 0 0 1 0 0 0 0 0 0\n")

    write(100, 100)
    monkeypatch.setattr(cpus.time, "sleep", lambda _: write(250, 150))
    # 150 busy and 50 idle jiffies of 200 over the sample: a quarter of the 2 CPUs was idle
    assert cpus.idle_cpus(root=tmp_path) == pytest.approx(0.5)


@pytest.mark.parametrize(("idle", "concurrent", "threads"), [(0.3, 1, 1), (1.9, 1, 2), (1.9, 2, 1), (4.0, 2, 2)])
def test_local_threads_follow_the_idle_cpus(
    idle: float, concurrent: int, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpus, "idle_cpus", lambda: idle)
    assert cpus.local_threads_per_process(concurrent, environ={}) == threads
    assert cpus.local_threads_per_process(concurrent, environ={"MFPO_THREADS": "3"}) == 3
