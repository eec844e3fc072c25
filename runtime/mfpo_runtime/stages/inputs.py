"""What a run reads, checked to exist before any training: the model, the data, the segmenters
and every benchmark's files (each benchmark module's `required_inputs`: its files, and its
question files read as the eval stage reads them, each question's fields, yes/no labels and
image checked to exist, not decoded).

The run's first stage calls `check_inputs` (datagen, shard 0: it runs first and has the storage
credentials), so a wrong benchmark URI or a split the data lacks fails in minutes, as bad input
naming the URI, and not in the eval stage after every alignment stage has trained.
"""

from __future__ import annotations

from mfpo_core import storage
from mfpo_core.api import DataFormat, MFPORunSpec
from mfpo_core.contract import BadInput

from mfpo_runtime.eval import benchmarks, synthetic
from mfpo_runtime.stages.evaluate import benchmark_config


def missing_inputs(spec: MFPORunSpec) -> list[str]:
    """One line per input the run would fail to read, naming its field and URI."""
    problems = [
        f"spec.{field}: {uri} does not exist"
        for field, uri in spec.input_uris()
        if not field.startswith("evaluation.") and not storage.exists(uri)
    ]
    world = synthetic.default_uri(spec.data.uri) if spec.data.format == DataFormat.synthetic.value else None
    for index, entry in enumerate(spec.evaluation.benchmarks):
        bench = benchmark_config(entry)
        base = bench.uri or world  # api.py refuses a benchmark with neither
        if base is not None:
            problems += [f"spec.evaluation.benchmarks[{index}]: {p}" for p in benchmarks.missing_inputs(bench, base)]
    return problems


SHOWN_PROBLEMS = 20  # a benchmark of 3,000 questions naming a wrong image directory: 3,000 lines


def check_inputs(spec: MFPORunSpec) -> None:
    """Raise BadInput listing the missing inputs (the first SHOWN_PROBLEMS, and how many more)."""
    problems = missing_inputs(spec)
    if problems:
        more = len(problems) - SHOWN_PROBLEMS
        shown = problems[:SHOWN_PROBLEMS] + ([f"and {more:,} more"] if more > 0 else [])
        raise BadInput("inputs the run would fail to read (checked before any training): " + "; ".join(shown))
