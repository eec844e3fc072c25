"""The benchmarks by name (`config.Benchmark.name`) -> `evaluate(policy, bench, env)`, and what
each needs to exist (`missing_inputs`, checked by the run's first stage).

Called by the eval stage; each module documents its data layout and metrics.
"""

from __future__ import annotations

from collections.abc import Callable

from mfpo_core import storage

from mfpo_runtime.eval import amber, object_halbench, pope, synthetic
from mfpo_runtime.eval.common import BenchmarkEnv, BenchmarkResult
from mfpo_runtime.eval.config import Benchmark
from mfpo_runtime.eval.generation import Policy

Evaluate = Callable[[Policy, Benchmark, BenchmarkEnv], BenchmarkResult]
# (bench, data URI) -> what reading it would miss, each a line naming the URI and its option.
RequiredInputs = Callable[[Benchmark, str], list[str]]

BENCHMARKS: dict[str, Evaluate] = {  # the names of `config.OPTIONS_OF`
    "synthetic": synthetic.evaluate,
    "object-halbench": object_halbench.evaluate,
    "amber": amber.evaluate,
    "pope": pope.evaluate,
}

REQUIRED_INPUTS: dict[str, RequiredInputs] = {
    "synthetic": synthetic.required_inputs,
    "object-halbench": object_halbench.required_inputs,
    "amber": amber.required_inputs,
    "pope": pope.required_inputs,
}


def run_benchmark(policy: Policy, bench: Benchmark, env: BenchmarkEnv) -> BenchmarkResult:
    return BENCHMARKS[bench.name](policy, bench, env)


def missing_inputs(bench: Benchmark, base: str) -> list[str]:
    """Problems with a benchmark's data at `base` found without evaluating anything (the run's
    first stage checks them, so that a wrong benchmark URI fails before any training)."""
    if not storage.exists(base):
        return [f"evaluation benchmark {bench.label}: {base} does not exist"]
    return REQUIRED_INPUTS[bench.name](bench, base)
