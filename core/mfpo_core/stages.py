"""The one table of stage kinds: what each stage of a run is and how it runs.

A run's stages, in order: datagen, score, align-1..N (one per curriculum stage), eval. Every
part that needs to know about stage kinds reads this table: the stage contract (valid stage
names), the API (a run's stages), the planner (their order), the Job builder (an Indexed Job for
a shardable kind, torchrun for a distributed one), the local runner (shards side by side) and
the runtime's stage runner (the module to import). A new stage kind is a row here and the
runtime module that implements it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A function of the run's MFPORunSpec. Typed Any: the API imports this table (for
# `MFPORunSpec.stage_names`), so the table does not import the API.
SpecFunction = Callable[[Any], int]


def _single(_: Any) -> int:
    return 1


@dataclass(frozen=True)
class StageKind:
    name: str
    module: str  # the runtime module whose `run(ctx) -> StageOutcome` implements it
    repeated: bool = False  # one stage per curriculum stage: <name>-1 .. <name>-N
    shards: SpecFunction = _single  # parallel shards (an Indexed Job), from the spec
    distributed: bool = False  # may span several GPUs / nodes under torchrun

    @property
    def shardable(self) -> bool:
        return self.shards is not _single


STAGE_KINDS = (
    StageKind("datagen", "mfpo_runtime.stages.datagen", shards=lambda spec: spec.image_preference.shards),
    StageKind("score", "mfpo_runtime.stages.score"),
    StageKind("align", "mfpo_runtime.stages.align", repeated=True, distributed=True),
    StageKind("eval", "mfpo_runtime.stages.evaluate"),
)
_BY_NAME = {kind.name: kind for kind in STAGE_KINDS}
STAGE_PATTERN = re.compile(
    "^(" + "|".join(f"{k.name}-[1-9][0-9]*" if k.repeated else k.name for k in STAGE_KINDS) + ")$"
)
STAGE_NAMES_TEXT = ", ".join(f"{k.name}-<k>" if k.repeated else k.name for k in STAGE_KINDS)


def stage_names(curriculum_stages: int) -> list[str]:
    """A run's stages in order, e.g. datagen, score, align-1, align-2, align-3, eval."""
    names: list[str] = []
    for kind in STAGE_KINDS:
        names += [f"{kind.name}-{k}" for k in range(1, curriculum_stages + 1)] if kind.repeated else [kind.name]
    return names


def kind_of(stage: str) -> StageKind:
    """The kind of a stage name (align-2 -> align); ValueError for a name no run has."""
    if not STAGE_PATTERN.match(stage):
        raise ValueError(f"stage {stage!r} is not one of {STAGE_NAMES_TEXT}")
    return _BY_NAME[stage.split("-", 1)[0]]
