"""Reproducible CPU numbers: a fixed thread count and deterministic kernels, and the record of
the environment that every measured result carries.

Floating-point sums depend on how work is split across threads, so the same seed gives the
same weights only at the same thread count (and the same torch build): `deterministic(threads)`
fixes both knobs torch offers (`torch.set_num_threads`, `torch.use_deterministic_algorithms`)
for a block and restores them after; `environment()` says what a result was measured with.

Called by the bootstrap; benchmarks/bench_ablations.py records `environment()` in its results.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata

import torch


@contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Run the block on `threads` intra-op threads with deterministic algorithms only."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous_threads = torch.get_num_threads()
    previous_mode = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_mode)


def environment() -> dict[str, object]:
    """Thread count, deterministic mode, library versions and the CPU of this process."""
    return {
        "threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "transformers": metadata.version("transformers"),
        "numpy": metadata.version("numpy"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(
                (ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), ""
            )
    except OSError:
        return platform.processor()
