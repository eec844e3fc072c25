"""Helpers of the eval tests (imported by name: pytest puts this directory on sys.path): solid-colour images and a scripted policy keyed by image colour.

The scripted policy stands in for the model where a test checks a benchmark's bookkeeping
(its file formats and metric arithmetic) with answers chosen by hand; the model itself is
exercised by the stage tests with the tiny VLMs.
"""

from __future__ import annotations

import base64
import json
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


RED, GREEN, BLUE, GREY, WHITE = (200, 0, 0), (0, 200, 0), (0, 0, 200), (90, 90, 90), (250, 250, 250)
DESCRIBE = "Describe this image."


def write_json(path: Path, doc) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def write_lines(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def q(obj: str) -> str:
    return f"Is there a {obj} in the image?"


# Small benchmark samples in the real file formats (test_benchmarks, test_eval_stage).


def write_coco_sample(tmp_path: Path) -> Path:
    root = tmp_path / "objhal"
    write_json(root / "instances.json", {
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}, {"id": 3, "file_name": "c.png"}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 1}, {"id": 11, "image_id": 1, "category_id": 18},
                        {"id": 12, "image_id": 2, "category_id": 3}],
    })  # fmt: skip
    write_json(root / "captions.json", {"annotations": [
        {"id": 1, "image_id": 2, "caption": "A sofa next to a parked car."},
        {"id": 2, "image_id": 3, "caption": "An empty street at night."},
    ]})  # fmt: skip
    save_solid(root / "images" / "a.png", RED)
    green = save_solid(tmp_path / "inline.png", GREEN)
    save_solid(root / "images" / "c.png", BLUE)
    write_lines(root / "questions.jsonl", [
        {"image_id": 1, "question": DESCRIBE, "image": "images/a.png"},  # a path
        {"image_id": 2, "question": DESCRIBE, "image": base64.b64encode(green.read_bytes()).decode()},  # inline
        {"image_id": 3, "question": DESCRIBE},  # from instances' file_name under images/
    ])  # fmt: skip
    return root


def write_amber_sample(tmp_path: Path) -> Path:
    root = tmp_path / "amber"
    write_json(root / "relation.json", {"dog": ["puppy"], "grass": ["lawn"], "cat": ["kitten"],
                                        "frisbee": [], "sky": []})  # fmt: skip
    (root / "safe_words.txt").write_text("sky\n")
    write_json(root / "annotations.json", [
        {"id": 1, "type": "generative", "truth": ["dog", "grass"], "hallu": ["cat", "frisbee"]},
        {"id": 2, "type": "generative", "truth": ["cat"], "hallu": ["dog"]},
        {"id": 3, "type": "discriminative-hallucination", "truth": "no"},
        {"id": 4, "type": "discriminative-attribute-state", "truth": "yes"},
        {"id": 5, "type": "discriminative-relation", "truth": "no"},
    ])  # fmt: skip
    colours = {1: RED, 2: GREEN, 3: BLUE, 4: GREY, 5: WHITE}
    for i, colour in colours.items():
        save_solid(root / "images" / f"AMBER_{i}.jpg", colour)
    write_json(root / "query_all.json", [
        {"id": 1, "image": "AMBER_1.jpg", "query": DESCRIBE},
        {"id": 2, "image": "AMBER_2.jpg", "query": DESCRIBE},
        {"id": 3, "image": "AMBER_3.jpg", "query": "Is there a cat in this image?"},
        {"id": 4, "image": "AMBER_4.jpg", "query": "Is the dog running in this image?"},
        {"id": 5, "image": "AMBER_5.jpg", "query": "Is the dog on the grass in this image?"},
    ])  # fmt: skip
    return root


def write_pope_sample(tmp_path: Path) -> Path:
    root = tmp_path / "pope"
    save_solid(root / "images" / "COCO_val2014_000000000001.jpg", RED)
    save_solid(root / "images" / "COCO_val2014_000000000002.jpg", GREEN)
    img1, img2 = "COCO_val2014_000000000001.jpg", "COCO_val2014_000000000002.jpg"
    write_lines(root / "coco_pope_random.json", [
        {"question_id": 1, "image": img1, "text": q("dog"), "label": "yes"},
        {"question_id": 2, "image": img1, "text": q("cat"), "label": "no"},
        {"question_id": 3, "image": img2, "text": q("car"), "label": "yes"},
        {"question_id": 4, "image": img2, "text": q("tree"), "label": "no"},
    ])  # fmt: skip
    write_lines(root / "coco_pope_adversarial.json", [
        {"question_id": 1, "image": img1, "text": q("dog"), "label": "yes"},
        {"question_id": 2, "image": img2, "text": q("bench"), "label": "no"},
    ])  # fmt: skip
    return root
