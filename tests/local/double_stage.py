"""`mfpo-stage` whose stage implementations are a test double: the real stage runner (config,
the storage prefix's ownership check, result documents, termination summary, exit codes)
without any training. Each stage run appends "<run>:<stage>:<attempt>" to $DOUBLE_STAGE_TRACE."""

import os
import sys
import types

from mfpo_runtime import stage
from mfpo_runtime.stage import StageContext, StageOutcome


def run(ctx: StageContext) -> StageOutcome:
    with open(os.environ["DOUBLE_STAGE_TRACE"], "a") as trace:
        trace.write(f"{ctx.config.run}:{ctx.config.stage}:{ctx.config.attempt}\n")
    return StageOutcome(metrics={"records": 1.0} if ctx.config.kind == "datagen" else {})


if __name__ == "__main__":
    double = types.ModuleType("mfpo_double_stage")
    double.run = run
    sys.modules[double.__name__] = double
    for kind in stage.STAGE_MODULES:
        stage.STAGE_MODULES[kind] = double.__name__
    stage.limit_threads = lambda: 1  # no torch for a double
    stage.deterministic_on_cpu = lambda: False
    stage.main()
