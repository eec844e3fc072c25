"""The benchmarks by name (`config.Benchmark.name`) -> `evaluate(policy, bench, env)`.

Called by the eval stage; each module documents its data layout and metrics.
"""

from __future__ import annotations

from collections.abc import Callable

from mfpo_runtime.eval import amber, object_halbench, pope, synthetic
from mfpo_runtime.eval.common import BenchmarkEnv, BenchmarkResult
from mfpo_runtime.eval.config import Benchmark
from mfpo_runtime.eval.generation import Policy

Evaluate = Callable[[Policy, Benchmark, BenchmarkEnv], BenchmarkResult]

BENCHMARKS: dict[str, Evaluate] = {  # the names of `config.OPTIONS_OF`
    "synthetic": synthetic.evaluate,
    "object-halbench": object_halbench.evaluate,
    "amber": amber.evaluate,
    "pope": pope.evaluate,
}


def run_benchmark(policy: Policy, bench: Benchmark, env: BenchmarkEnv) -> BenchmarkResult:
    return BENCHMARKS[bench.name](policy, bench, env)
