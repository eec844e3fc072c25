"""Batched answers and answer log-likelihoods from the policy of any stage.

`VLMPolicy` wraps a model loaded with `mfpo_runtime.models.load_vlm` (a Hugging Face directory
or a published policy with adapters) and gives the benchmarks the two things they need:

- `answer(questions, images)`: generated answers, batched, greedy unless the run's
  `spec.evaluation` asks for sampling (each batch seeded, so a rerun gives the same answers);
- `answer_logps(questions, images, answers)`: the summed log-likelihood of given answers and
  their token counts, through the trainer's `sequence_logps` (the graded image-reliance test).

Benchmarks depend only on the `Policy` protocol, so their tests can script the answers.
Called by the eval stage (mfpo_runtime.stages.evaluate).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from mfpo_runtime.progress import progress_bar

log = logging.getLogger("mfpo.eval")


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings of an evaluation (`stages.evaluate` maps spec.evaluation onto them)."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    batch_size: int = 8
    seed: int = 0


@dataclass(frozen=True)
class AnswerLogp:
    """Summed log-probability of an answer (its tokens and EOS) and how many tokens it has."""

    total: float
    tokens: int

    @property
    def per_token(self) -> float:
        return self.total / self.tokens if self.tokens else 0.0


class Policy(Protocol):
    """What a benchmark asks of the model under evaluation."""

    name: str

    def answer(self, questions: Sequence[str], images: Sequence[Image.Image]) -> list[str]: ...

    def answer_logps(
        self, questions: Sequence[str], images: Sequence[Image.Image], answers: Sequence[str]
    ) -> list[AnswerLogp]: ...


def batches(count: int, size: int) -> list[range]:
    """Index ranges of consecutive batches of at most `size` items."""
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


class VLMPolicy:
    """A loaded vision-language model answering benchmark questions in batches."""

    def __init__(self, name: str, loaded, settings: GenerationSettings, *, progress: bool = False):
        self.name = name
        self.loaded = loaded  # mfpo_runtime.models.LoadedVLM
        self.settings = settings
        self.progress = progress

    @classmethod
    def load(
        cls, name: str, uri: str, settings: GenerationSettings, *, device: str = "cpu", progress: bool = False
    ) -> VLMPolicy:
        """The policy at `uri` on `device` (the run's: mfpo_runtime.train.trainer.device_for)."""
        import torch

        from mfpo_runtime import models

        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        log.info("loading policy %s from %s on %s", name, uri, device)
        loaded = models.load_vlm(uri, dtype=dtype, device=device)
        loaded.model.eval()
        return cls(name, loaded, settings, progress=progress)

    def _batches(self, count: int, what: str) -> Iterator[range]:
        """The batches of `count` items; the bar counts an item once its batch is done."""
        with progress_bar(
            total=count, desc=f"{self.name}: {what}", unit="answer", enabled=self.progress
        ) as bar:
            for rows in batches(count, self.settings.batch_size):
                yield rows
                bar.update(len(rows))

    def answer(self, questions: Sequence[str], images: Sequence[Image.Image]) -> list[str]:
        from mfpo_runtime import models

        answers: list[str] = []
        for number, rows in enumerate(self._batches(len(questions), "generate")):
            answers += models.generate(
                self.loaded,
                [questions[i] for i in rows],
                [images[i] for i in rows],
                max_new_tokens=self.settings.max_new_tokens,
                do_sample=self.settings.do_sample,
                temperature=self.settings.temperature,
                seed=self.settings.seed + number if self.settings.do_sample else None,
            )
        return answers

    def answer_logps(
        self, questions: Sequence[str], images: Sequence[Image.Image], answers: Sequence[str]
    ) -> list[AnswerLogp]:
        import torch

        from mfpo_runtime import models
        from mfpo_runtime.models.logprobs import sequence_logps

        model, processor, family = self.loaded.model, self.loaded.processor, self.loaded.family
        device = next(model.parameters()).device
        out: list[AnswerLogp] = []
        for rows in self._batches(len(questions), "log-likelihood"):
            batch = models.encode(
                processor, family, [questions[i] for i in rows], [images[i] for i in rows],
                [answers[i] for i in rows],
            )  # fmt: skip
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.no_grad():
                totals = sequence_logps(model, batch)  # (B,)
            tokens = batch["response_mask"].sum(dim=1)  # (B,)
            out += [AnswerLogp(float(t), int(n)) for t, n in zip(totals.tolist(), tokens.tolist())]
        return out
