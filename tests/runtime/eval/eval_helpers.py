"""Helpers of the eval tests (imported by name: pytest puts this directory on sys.path): solid-colour images and a scripted policy keyed by image colour.

The scripted policy stands in for the model where a test checks a benchmark's bookkeeping
(its file formats and metric arithmetic) with answers chosen by hand; the model itself is
exercised by the stage tests with the tiny VLMs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mfpo_runtime.eval.generation import AnswerLogp
from PIL import Image


def solid(colour: tuple[int, int, int], size: int = 8) -> Image.Image:
    return Image.new("RGB", (size, size), colour)


def save_solid(path: Path, colour: tuple[int, int, int], size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    solid(colour, size).save(path)
    return path


class ScriptedPolicy:
    """Answers from a table keyed by (question, colour nearest the image's top-left pixel)."""

    name = "scripted"

    def __init__(self, answers: dict[tuple[str, tuple[int, int, int]], str], default: str = ""):
        self.answers = answers
        self.default = default
        self.calls: list[int] = []  # batch sizes asked for

    def answer(self, questions: Sequence[str], images: Sequence[Image.Image]) -> list[str]:
        self.calls.append(len(questions))
        return [self._lookup(q, img.getpixel((0, 0))) for q, img in zip(questions, images)]

    def _lookup(self, question: str, pixel: tuple[int, int, int]) -> str:
        # Nearest colour: JPEG files shift solid colours by a few levels.
        keys = [colour for q, colour in self.answers if q == question]
        if not keys:
            return self.default
        nearest = min(keys, key=lambda c: sum((a - b) ** 2 for a, b in zip(c, pixel)))
        return self.answers[(question, nearest)]

    def answer_logps(self, questions, images, answers) -> list[AnswerLogp]:
        # log-likelihood grows with the image's mean brightness: noise changes it measurably.
        return [AnswerLogp(total=-10.0 + sum(img.convert("L").getdata()) / (255 * img.width * img.height),
                           tokens=5) for img in images]  # fmt: skip
