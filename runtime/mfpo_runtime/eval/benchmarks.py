"""The benchmarks by name (spec.evaluation.benchmarks[].name) -> `evaluate(policy, bench, env)`.

Called by the eval stage; each module documents its data layout and metrics.
"""

from __future__ import annotations

from collections.abc import Callable

from mfpo_core.api import BenchmarkName, BenchmarkSpec

from mfpo_runtime.eval import amber, object_halbench, pope, synthetic
from mfpo_runtime.eval.common import BenchmarkEnv, BenchmarkResult
from mfpo_runtime.eval.generation import Policy

Evaluate = Callable[[Policy, BenchmarkSpec, BenchmarkEnv], BenchmarkResult]

BENCHMARKS: dict[str, Evaluate] = {
    BenchmarkName.synthetic.value: synthetic.evaluate,
    BenchmarkName.object_halbench.value: object_halbench.evaluate,
    BenchmarkName.amber.value: amber.evaluate,
    BenchmarkName.pope.value: pope.evaluate,
}


def run_benchmark(policy: Policy, bench: BenchmarkSpec, env: BenchmarkEnv) -> BenchmarkResult:
    name = bench.name if isinstance(bench.name, str) else bench.name.value
    return BENCHMARKS[name](policy, bench, env)
