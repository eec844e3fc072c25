"""The eval stage: hallucination scores of the base model and the aligned policies.

Evaluates the base model (spec.evaluation.evaluateBase) and the last align stage's policy (or
every stage's, with everyStage) on each benchmark of spec.evaluation, and writes

    <run_uri>/eval/results/<policy>/<label>.json       one result document per evaluation
    <run_uri>/eval/report.md                           the readable report
    <run_uri>/eval/report.png                          scores per stage (several policies)

Resumable: an evaluation whose result document exists is read back, not redone, so a preempted
or failed attempt loses at most the benchmark it was on. An entry's label (its benchmark's name
unless set) is unique in the spec, so two entries never share a result document. Metrics:
`eval.<policy>.<label>.<metric>` (headline metrics, most important first: see `summary_metrics`;
all of them are in the result documents and `details`), and the gauge
mfpo_eval_score{stage=<policy>, benchmark=<label>, metric} for every metric.
The only reader of spec.evaluation: `benchmark_config` and `generation_settings` map it onto
`eval.config`, which the benchmark modules read. Called by the stage runner
(mfpo_runtime.stage) as `run(ctx)`.
"""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import fields
from datetime import datetime, timezone
from typing import Any

from mfpo_core import storage
from mfpo_core.api import (
    JUDGE_KEY_VARIABLE,
    BenchmarkSpec,
    DataFormat,
    EvaluationSpec,
    SecretKeyRef,
)
from mfpo_core.contract import (
    BadInput,
    StageConfig,
    StageInterrupted,
    eval_metric_key,
    eval_result_uri,
    policy_uri,
)

from mfpo_runtime.eval import report, synthetic
from mfpo_runtime.eval.benchmarks import run_benchmark
from mfpo_runtime.eval.common import BenchmarkEnv, BenchmarkResult
from mfpo_runtime.eval.config import OPTIONS_OF, Benchmark
from mfpo_runtime.eval.generation import GenerationSettings, VLMPolicy
from mfpo_runtime.stage import StageContext, StageOutcome
from mfpo_runtime.stages import plain
from mfpo_runtime.train.trainer import device_for

log = logging.getLogger("mfpo.eval")

# Besides report.KEY_METRICS, kept in the stage's metrics (hence the termination summary).
EXTRA_HEADLINE = {"synthetic": ["object_reliance_contrast", "logp_drop_excess", "answer_change_rate"]}


def policies(config: StageConfig) -> list[tuple[str, str]]:
    """(name, URI) of the policies to evaluate, in run order."""
    spec = config.spec
    chosen = [("base", spec.model.uri)] if spec.evaluation.evaluate_base else []
    last = spec.curriculum.stages
    ks = range(1, last + 1) if spec.evaluation.every_stage else [last]
    return chosen + [(f"align-{k}", policy_uri(config.run_uri, f"align-{k}")) for k in ks]


def benchmark_config(bench: BenchmarkSpec) -> Benchmark:
    """One spec.evaluation.benchmarks[] entry with its options (the given ones, else the API's
    defaults) as the benchmark modules read it."""
    name = plain(bench.name)
    kind = OPTIONS_OF[name]
    options = bench.options
    values = {field.name: _option(getattr(options, field.name)) for field in fields(kind)}
    return Benchmark(name, bench.label or name, bench.uri, bench.max_samples, kind(**values))


def _option(value: Any) -> Any:
    """An option as the benchmark modules read it: plain values; a Secret reference as its
    "<secret>/<key>" (the key's value travels in BenchmarkEnv.judge_api_key)."""
    if isinstance(value, SecretKeyRef):
        return f"{value.name}/{value.key}"
    return plain(value)


def generation_settings(evaluation: EvaluationSpec, seed: int) -> GenerationSettings:
    return GenerationSettings(
        max_new_tokens=evaluation.max_new_tokens, do_sample=evaluation.do_sample,
        temperature=evaluation.temperature, batch_size=evaluation.batch_size, seed=seed,
    )


def headline(benchmark: str) -> list[str]:
    """The benchmark's headline metrics, most important first."""
    return report.KEY_METRICS.get(benchmark, []) + EXTRA_HEADLINE.get(benchmark, [])


def summary_metrics(scores: report.Scores, benchmark_of: dict[str, str] | None = None) -> dict[str, float]:
    """Headline metrics, most important first: a termination summary that must be shortened
    keeps a head of this order. The final policy, then the base model, then the earlier
    stages from the latest; within a policy entries in spec order, metrics in headline order.
    `benchmark_of` maps an entry's label to its benchmark (a label is its benchmark by default)."""
    benchmark_of = benchmark_of or {}
    names = list(scores)
    final, earlier = names[-1:], [n for n in reversed(names[:-1]) if n != "base"]
    ranked = final + (["base"] if "base" in names[:-1] else []) + earlier
    return {
        eval_metric_key(name, bench, metric): result["metrics"][metric]
        for name in ranked
        for bench, result in scores[name].items()
        for metric in headline(benchmark_of.get(bench, bench))
        if metric in result["metrics"]
    }


def _env(ctx: StageContext) -> BenchmarkEnv:
    spec = ctx.config.spec
    default = synthetic.default_uri(spec.data.uri) if spec.data.format == DataFormat.synthetic.value else None
    settings = generation_settings(spec.evaluation, seed=spec.training.seed)
    return BenchmarkEnv(work_dir=ctx.work_dir, settings=settings, default_uri=default, progress=ctx.progress,
                        judge_api_key=judge_api_key(spec.evaluation))  # fmt: skip


def judge_api_key(evaluation: EvaluationSpec) -> str | None:
    """The LLM judge's key, from MFPO_JUDGE_API_KEY (the Job builder fills it from
    objectHalbench.judgeSecretRef; `mfpo run` passes its shell's). A judgeSecretRef whose key is
    not there is bad input now, at the stage's start, not a retried failure after the policies
    have been evaluated."""
    key = os.environ.get(JUDGE_KEY_VARIABLE) or None
    secrets = evaluation.judge_secrets()
    if secrets and key is None:
        field, ref = secrets[0]
        raise BadInput(
            f"{field}: the judge's key is not in this stage's environment as {JUDGE_KEY_VARIABLE}: the Secret "
            f"{ref.name!r} has no key {ref.key!r}, or it is empty (in a local run: export {JUDGE_KEY_VARIABLE})"
        )
    return key if secrets else None  # without judgeSecretRef the judge is called without a key


def _check_policy(name: str, uri: str) -> None:
    if name != "base" and not storage.is_complete(uri):
        raise BadInput(f"policy of {name} is not published at {uri}: has {name} succeeded?")


def _document(name: str, uri: str, bench: str, result: BenchmarkResult, env: BenchmarkEnv) -> dict[str, Any]:
    return {
        "policy": name, "policy_uri": uri, "benchmark": bench, "metrics": result.metrics,
        "flags": result.flags, "details": result.details, "samples": result.samples,
        "settings": env.settings.__dict__, "finished_at": datetime.now(timezone.utc).isoformat(),
    }  # fmt: skip


def evaluate_policy(ctx: StageContext, name: str, uri: str, env: BenchmarkEnv) -> dict[str, dict[str, Any]]:
    """Scores of one policy on every benchmark, from result documents where they exist."""
    out: dict[str, dict[str, Any]] = {}
    loaded: VLMPolicy | None = None
    for bench in map(benchmark_config, ctx.config.spec.evaluation.benchmarks):
        label = bench.label
        doc_uri = eval_result_uri(ctx.config.run_uri, name, label)
        if storage.exists(doc_uri):
            log.info("%s on %s already evaluated (%s)", name, label, doc_uri)
            doc = storage.read_json(doc_uri)
        else:
            if ctx.stop_requested:
                raise StageInterrupted(f"stopped before {name} on {label}; earlier results kept")
            _check_policy(name, uri)
            device = device_for(ctx.config.spec.resources.gpus_per_node)
            loaded = loaded or VLMPolicy.load(name, uri, env.settings, device=str(device), progress=env.progress)
            log.info("evaluating %s on %s", name, label)
            doc = _document(name, uri, bench.name, run_benchmark(loaded, bench, env), env)
            storage.write_json(doc, doc_uri)
        out[label] = {"metrics": doc["metrics"], "flags": doc.get("flags", [])}
    del loaded
    gc.collect()
    return out


def write_report(ctx: StageContext, scores: report.Scores, benchmark_of: dict[str, str]) -> dict[str, str]:
    """report.md (and report.png with several policies) into <work_dir>/report and storage."""
    stage = ctx.config.stage_uri
    local = ctx.work_dir / "report"
    local.mkdir(exist_ok=True)
    outputs = {"report": storage.join(stage, "report.md"), "results": storage.join(stage, "results")}
    plot_file = None
    if len(scores) > 1:
        report.plot(scores, local / "report.png", benchmark_of)
        outputs["plot"] = storage.join(stage, "report.png")
        storage.put_file(local / "report.png", outputs["plot"])
        plot_file = "report.png"
    (local / "report.md").write_text(report.markdown(ctx.config.run, scores, plot_file=plot_file))
    storage.put_file(local / "report.md", outputs["report"])
    return outputs


def run(ctx: StageContext) -> StageOutcome:
    if not ctx.config.spec.evaluation.benchmarks:
        raise BadInput("spec.evaluation.benchmarks is empty: nothing to evaluate")
    env = _env(ctx)  # first: a missing judge key fails before anything is evaluated
    scores: report.Scores = {}
    for name, uri in policies(ctx.config):
        scores[name] = evaluate_policy(ctx, name, uri, env)
    benchmark_of = {b.label: b.name for b in map(benchmark_config, ctx.config.spec.evaluation.benchmarks)}
    for name, per_bench in scores.items():
        for bench, result in per_bench.items():
            for metric, value in result["metrics"].items():
                ctx.metrics.set("mfpo_eval_score", value, stage=name, benchmark=bench, metric=metric)
    metrics = summary_metrics(scores, benchmark_of)
    flags = {f"{n}/{b}": r["flags"] for n, per in scores.items() for b, r in per.items() if r["flags"]}
    outputs = write_report(ctx, scores, benchmark_of)
    if ctx.tracker is not None:
        track_evaluation(ctx, scores)
    return StageOutcome(metrics=metrics, outputs=outputs, details={"scores": scores, "flags": flags})


def track_evaluation(ctx: StageContext, scores: report.Scores) -> None:
    """Every metric of every evaluation (eval.<policy>.<label>.<metric>, splits within the
    metric's name) and the report with its plot as artifacts under eval/."""
    ctx.tracker.log_metrics({
        eval_metric_key(name, bench, metric): value
        for name, per_bench in scores.items() for bench, result in per_bench.items()
        for metric, value in result["metrics"].items()
    })  # fmt: skip
    ctx.tracker.log_artifact(ctx.work_dir / "report", "eval")  # written by write_report
