"""Prometheus metrics of a running stage: the one place their names are defined.

Names follow ../shared/ARCHITECTURE.md: `mfpo_` prefix, units in the name, labels from
{namespace, run, stage, attempt, modality, term, benchmark, metric, phase}. The chart's
dashboard and alert rules query these names and a test holds them to it.

A stage process serves them on MFPO_METRICS_PORT at MFPO_METRICS_ADDRESS (default 0.0.0.0, all
interfaces: the chart's PodMonitor scrapes the pod's IP) and, when MFPO_PUSHGATEWAY is set, pushes
them when the stage ends (short stages end before a scrape). Under torchrun the stage runner serves
from local rank 0 only: one port per pod. Each stage gets its own registry, so tests and in-process
runs never collide.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway, start_http_server

log = logging.getLogger("mfpo.metrics")

STAGE_LABELS = ("namespace", "run", "stage", "attempt")
DEFAULT_ADDRESS = "0.0.0.0"  # every interface: Prometheus scrapes the pod's IP

# name -> (type, help, extra labels). The single table the dashboard test reads.
RUNTIME_METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # training (align stages)
    "mfpo_train_loss": ("gauge", "MFPO loss term at the last logging step", ("term",)),
    "mfpo_train_objective": ("gauge", "Weighted MFPO objective at the last logging step", ()),
    "mfpo_train_reward_chosen": ("gauge", "Mean implicit reward of chosen answers on the original image", ()),
    "mfpo_train_reward_rejected": ("gauge", "Mean implicit reward of rejected answers on the original image", ()),
    "mfpo_train_reward_perturbed": ("gauge", "Mean implicit reward of chosen answers on the perturbed image", ()),
    "mfpo_train_reward_margin": ("gauge", "Mean reward margin per modality (text: chosen-rejected; image: original-perturbed)", ("modality",)),
    "mfpo_train_reward_accuracy_ratio": ("gauge", "Fraction of samples whose margin is positive, per modality", ("modality",)),
    "mfpo_train_modality_balance_ratio": ("gauge", "Image reward margin over text reward margin", ()),
    "mfpo_train_samples_per_second": ("gauge", "Training throughput in preference samples per second", ()),
    "mfpo_train_tokens_per_second": ("gauge", "Training throughput in tokens per second (all sequences)", ()),
    "mfpo_train_learning_rate": ("gauge", "Current learning rate", ()),
    "mfpo_train_steps_total": ("counter", "Optimizer steps taken in this attempt", ()),
    # data generation and scoring
    "mfpo_datagen_records_total": ("counter", "Records turned into image-preference samples", ()),
    "mfpo_datagen_skipped_records_total": ("counter", "Bad records skipped (onBadRecord: skip)", ()),
    "mfpo_datagen_grounding_fallbacks_total": ("counter", "Samples whose keywords found no region: whole image noised", ()),
    "mfpo_datagen_regions_lost_total": ("counter", "Keyword regions found but cut off by the model's view (center crop): not noised", ()),
    "mfpo_score_records_total": ("counter", "Records scored by semantic entropy", ()),
    "mfpo_score_semantic_entropy_mean": ("gauge", "Mean semantic entropy of the scored records", ()),
    # evaluation
    "mfpo_eval_score": ("gauge", "Evaluation score of a benchmark metric (CHAIRs, CHAIRi, F1, ...)", ("benchmark", "metric")),
    # experiment tracking (spec.tracking)
    "mfpo_tracking_errors_total": ("counter", "Calls to the experiment tracker (MLflow) that failed; the stage went on and retries them", ()),
}


class TrainStepSink(Protocol):
    """Where a stage's training steps go besides Prometheus (the experiment tracker)."""

    def log_train_steps(self, steps: Iterable[tuple[int, Mapping[str, float]]]) -> None: ...


TERMS = ("text", "image", "anchor")
MODALITIES = ("text", "image")


def train_step_quantities(step: Mapping[str, float]) -> dict[str, float]:
    """What is logged of one optimizer step (the trainer's step record), by flat name: the
    loss terms, the objective, rewards, reward margins and accuracies per modality, modality
    balance, learning rate and throughput. Prometheus and the tracker both log these."""
    values = {f"loss.{term}": step[f"loss.{term}"] for term in TERMS}
    values["objective"] = step["objective"]
    values.update({f"reward.{which}": step[f"reward.{which}"] for which in ("chosen", "rejected", "perturbed")})
    for modality in MODALITIES:
        values[f"reward_margin.{modality}"] = step[f"reward_margin.{modality}"]
        values[f"reward_accuracy.{modality}"] = step[f"reward_accuracy.{modality}"]
    values["modality_balance"] = step["modality_balance"]
    values["learning_rate"] = step["lr"]
    seconds = step.get("seconds") or 0.0
    values["samples_per_second"] = step["samples"] / seconds if seconds else 0.0
    values["tokens_per_second"] = step["tokens"] / seconds if seconds else 0.0
    return values


@dataclass
class StageMetrics:
    """The metrics of one stage attempt, pre-labelled with its identity."""

    namespace: str
    run: str
    stage: str
    attempt: int
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    sink: TrainStepSink | None = None  # the experiment tracker, when the run has one (rank 0)
    _server: WSGIServer | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._metrics = {}
        for name, (kind, help_text, extra) in RUNTIME_METRICS.items():
            cls = Counter if kind == "counter" else Gauge
            # prometheus-client appends _total to counters itself.
            base = name[: -len("_total")] if kind == "counter" else name
            self._metrics[name] = cls(base, help_text, (*STAGE_LABELS, *extra), registry=self.registry)
        self._identity = {
            "namespace": self.namespace,
            "run": self.run,
            "stage": self.stage,
            "attempt": str(self.attempt),
        }

    def _child(self, name: str, labels: Mapping[str, str]):
        # A label given here wins over the identity: the eval stage labels its scores with the
        # policy evaluated (stage="align-3"), as the operator's mfpo_run_eval_score does.
        return self._metrics[name].labels(**{**self._identity, **labels})

    def set(self, name: str, value: float, **labels: str) -> None:
        self._child(name, labels).set(value)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._child(name, labels).inc(amount)

    def train_step(self, number: int, step: Mapping[str, float]) -> None:
        """One optimizer step (`number` counts from 1 within the stage): the gauges, the step
        counter and the tracker, all from `train_step_quantities`."""
        values = train_step_quantities(step)
        for term in TERMS:
            self.set("mfpo_train_loss", values[f"loss.{term}"], term=term)
        self.set("mfpo_train_objective", values["objective"])
        for which in ("chosen", "rejected", "perturbed"):
            self.set(f"mfpo_train_reward_{which}", values[f"reward.{which}"])
        for modality in MODALITIES:
            self.set("mfpo_train_reward_margin", values[f"reward_margin.{modality}"], modality=modality)
            self.set("mfpo_train_reward_accuracy_ratio", values[f"reward_accuracy.{modality}"], modality=modality)
        self.set("mfpo_train_modality_balance_ratio", values["modality_balance"])
        self.set("mfpo_train_samples_per_second", values["samples_per_second"])
        self.set("mfpo_train_tokens_per_second", values["tokens_per_second"])
        self.set("mfpo_train_learning_rate", values["learning_rate"])
        self.inc("mfpo_train_steps_total")
        if self.sink is not None:
            self.sink.log_train_steps([(number, values)])

    def replay_train_steps(self, history: list[dict[str, float]]) -> None:
        """A resumed stage's earlier steps (from its checkpoint), for the tracker only: the
        gauges show the present and the step counter counts this attempt's steps."""
        if self.sink is not None and history:
            self.sink.log_train_steps((n, train_step_quantities(s)) for n, s in enumerate(history, start=1))

    def serve(self, port: int | None = None, address: str | None = None) -> None:
        """Serve on MFPO_METRICS_PORT (or `port`) at MFPO_METRICS_ADDRESS (or `address`).

        No-op when no port is set. A port that cannot be bound is a warning, never a stage
        failure: the stage's work matters more than its scrape target.
        """
        port = port if port is not None else int(os.environ.get("MFPO_METRICS_PORT", "0") or 0)
        address = address or os.environ.get("MFPO_METRICS_ADDRESS") or DEFAULT_ADDRESS
        if not port:
            return
        try:
            self._server, _ = start_http_server(port, addr=address, registry=self.registry)
        except OSError as err:
            log.warning("metrics not served: cannot listen on %s:%d: %s", address, port, err)

    def stop_serving(self) -> None:
        """Close the listening socket (in-process runs serve one stage after another)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def push(self) -> None:
        """Push to MFPO_PUSHGATEWAY if set; a failed push is logged, never fatal."""
        gateway = os.environ.get("MFPO_PUSHGATEWAY")
        if not gateway:
            return
        try:
            push_to_gateway(gateway, job=f"mfpo-{self.run}-{self.stage}", registry=self.registry)
        except OSError as err:
            log.warning("could not push metrics to %s: %s", gateway, err)

    @classmethod
    def for_config(cls, config) -> StageMetrics:
        return cls(config.namespace, config.run, config.stage, config.attempt)
