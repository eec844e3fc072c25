"""The eval stage maps each spec.evaluation.benchmarks[] entry onto the typed `eval.config`
the benchmark modules read: every API option arrives, with the API's defaults when unset."""

from __future__ import annotations

from dataclasses import fields

import pytest
from mfpo_core.api import BENCHMARK_OPTIONS, BenchmarkSpec, EvaluationSpec
from mfpo_runtime.eval.config import (
    OPTIONS_OF,
    AmberOptions,
    Benchmark,
    ObjectHalBenchOptions,
    PopeOptions,
    SyntheticOptions,
)
from mfpo_runtime.eval.generation import GenerationSettings
from mfpo_runtime.stages.evaluate import benchmark_config, generation_settings


@pytest.mark.parametrize("name", sorted(BENCHMARK_OPTIONS))
def test_every_api_option_has_its_typed_field(name):
    _, api_type = BENCHMARK_OPTIONS[name]
    assert [f.name for f in fields(OPTIONS_OF[name])] == list(api_type.model_fields)


def test_unset_options_take_the_api_defaults():
    assert benchmark_config(BenchmarkSpec(name="pope", uri="s3://bench/pope")) == Benchmark(
        name="pope", label="pope", uri="s3://bench/pope", max_samples=None,
        options=PopeOptions(splits=("random", "popular", "adversarial"), image_dir="images"),
    )
    assert benchmark_config(BenchmarkSpec(name="synthetic")).options == SyntheticOptions(
        splits=None, reliance=True, noise_seed=0, heavy_noise_step=900,
        region_noise_step=500,
    )


def test_given_options_label_and_limit_arrive_as_plain_values():
    entry = BenchmarkSpec.model_validate({
        "name": "object-halbench", "label": "coco-val", "uri": "s3://bkt/coco", "maxSamples": 7,
        "objectHalbench": {"judge": "llm", "judgeUrl": "http://judge:8000", "judgeModel": "j-1",
                           "judgeSecretRef": {"name": "judge", "key": "api-key"}, "questions": "q.jsonl",
                           "captions": "c.json"},
    })
    assert benchmark_config(entry) == Benchmark(
        name="object-halbench", label="coco-val", uri="s3://bkt/coco", max_samples=7,
        options=ObjectHalBenchOptions(
            judge="llm", judge_url="http://judge:8000", judge_model="j-1", judge_secret_ref="judge/api-key",
            questions="q.jsonl", instances="instances.json", captions="c.json", image_dir="images",
        ),
    )
    amber = benchmark_config(BenchmarkSpec.model_validate({"name": "amber", "uri": "s3://bkt/amber", "amber": {"queries": "query_all.json"}}))
    assert amber.options == AmberOptions(
        queries="query_all.json", annotations="annotations.json", relation="relation.json",
        safe_words="safe_words.txt", image_dir="images",
    )
    pope = benchmark_config(BenchmarkSpec.model_validate({"name": "pope", "uri": "s3://bkt/pope", "pope": {"splits": ["adversarial"]}}))
    assert pope.options.splits == ("adversarial",) and type(pope.options.splits[0]) is str


def test_generation_settings_come_from_spec_evaluation():
    evaluation = EvaluationSpec.model_validate(
        {"maxNewTokens": 12, "doSample": True, "temperature": 0.7, "batchSize": 3}
    )
    assert generation_settings(evaluation, seed=5) == GenerationSettings(
        max_new_tokens=12, do_sample=True, temperature=0.7, batch_size=3, seed=5
    )
