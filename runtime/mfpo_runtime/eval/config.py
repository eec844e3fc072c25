"""What a benchmark reads: one `Benchmark` with its typed options, not the run spec.

`stages.evaluate` maps each `spec.evaluation.benchmarks[]` entry onto a `Benchmark` (the
options given, else the API's defaults) and `spec.evaluation` onto `GenerationSettings`; the
benchmark modules read only these. No field has a default: the API types hold them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SyntheticOptions:
    """The synthetic world's splits and the reliance measures' noise (`eval.synthetic`)."""

    splits: tuple[str, ...] | None  # None: eval and eval-counterprior of a world, or the one dataset's split
    reliance: bool
    noise_seed: int
    heavy_noise_step: int
    region_noise_step: int


@dataclass(frozen=True)
class ObjectHalBenchOptions:
    """Object HalBench's files (relative to the benchmark's uri, or URIs) and its judge."""

    judge: Literal["rules", "llm"]
    judge_url: str | None
    judge_model: str | None
    judge_secret_ref: str | None  # "<secret>/<key>" the key comes from; the key itself: BenchmarkEnv.judge_api_key
    questions: str
    instances: str
    captions: str | None
    image_dir: str


@dataclass(frozen=True)
class AmberOptions:
    """AMBER's files (relative to the benchmark's uri, or URIs)."""

    queries: str | None
    annotations: str
    relation: str
    safe_words: str
    image_dir: str


@dataclass(frozen=True)
class PopeOptions:
    """POPE's splits (random, popular, adversarial) and its images."""

    splits: tuple[str, ...]
    image_dir: str


BenchmarkOptions = SyntheticOptions | ObjectHalBenchOptions | AmberOptions | PopeOptions
OPTIONS_OF: dict[str, type[BenchmarkOptions]] = {
    "synthetic": SyntheticOptions,
    "object-halbench": ObjectHalBenchOptions,
    "amber": AmberOptions,
    "pope": PopeOptions,
}


@dataclass(frozen=True)
class Benchmark:
    """One entry of the evaluation: which benchmark, on what data, with which options."""

    name: str  # a key of OPTIONS_OF
    label: str  # names its results; unique among a run's benchmarks
    uri: str | None  # where its data lies; the run's own world (synthetic) when None
    max_samples: int | None  # questions evaluated per split; all when None
    options: BenchmarkOptions
