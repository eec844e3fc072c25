"""Progress bars advance with the work: at each generated batch the bar shows the answers
already done (not a finished bar over a prebuilt list), its rate is the work's rate, a
datagen shard's bar has the shard's record count as total, and nothing is drawn (no carriage
returns) when stderr is not a terminal (tqdm's documented rule for disable=None)."""

from __future__ import annotations

import io
import json
import re
import sys
import time
from pathlib import Path

import pytest
from datagen_samples import png_bytes, rlaif_v_rows, write_parquet
from mfpo_runtime import models
from mfpo_runtime.data import formats
from mfpo_runtime.eval.generation import GenerationSettings, VLMPolicy
from PIL import Image

BATCH_SECONDS = 0.15  # longer than tqdm's 0.1 s refresh interval: every batch is drawn


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def last_frame(text: str) -> str:
    """What a terminal shows last: the text after the last carriage return or newline."""
    frames = [frame for frame in re.split(r"[\r\n]", text) if frame.strip()]
    return frames[-1] if frames else ""


def policy_answering(monkeypatch, seen_at_each_batch: list[str], stream: io.StringIO):
    """A VLMPolicy whose model (mocked: a fixed answer per question) takes BATCH_SECONDS a batch
    and records the bar as the user sees it when each batch starts."""

    def generate(loaded, questions, images, **_):
        seen_at_each_batch.append(last_frame(stream.getvalue()))
        time.sleep(BATCH_SECONDS)
        return [f"answer to {q}" for q in questions]

    monkeypatch.setattr(models, "generate", generate)
    monkeypatch.setattr(sys, "stderr", stream)
    return VLMPolicy("base", object(), GenerationSettings(batch_size=2), progress=True)


def test_generation_bar_counts_answers_as_batches_finish(monkeypatch):
    stream, seen = Terminal(), []
    policy = policy_answering(monkeypatch, seen, stream)
    image = Image.new("RGB", (8, 8))
    answers = policy.answer([f"q{i}" for i in range(5)], [image] * 5)
    assert answers == [f"answer to q{i}" for i in range(5)]
    done_at_start = [re.search(r"(\d+)/5", frame).group(1) for frame in seen]
    assert done_at_start == ["0", "2", "4"]
    final = last_frame(stream.getvalue())
    assert "5/5" in final
    rate = float(re.search(r"([\d.]+)answer/s", final).group(1))
    assert rate < 2 / BATCH_SECONDS * 1.5  # the real rate, about 13 answers/s here


def test_no_bar_and_no_carriage_return_when_stderr_is_not_a_terminal(monkeypatch):
    stream, seen = io.StringIO(), []
    policy = policy_answering(monkeypatch, seen, stream)
    policy.answer(["q0", "q1", "q2"], [Image.new("RGB", (8, 8))] * 3)
    assert stream.getvalue() == ""


@pytest.mark.parametrize("shard", [(0, 1), (0, 3), (1, 3), (2, 3)])
@pytest.mark.parametrize("max_samples", [None, 4])
def test_shard_totals_are_what_the_reader_yields(tmp_path: Path, shard, max_samples):
    (tmp_path / "img.png").write_bytes(png_bytes(0))
    llava = [
        {"id": str(i), "image": "img.png", "question": "q", "chosen": "a", "rejected": "b"}
        for i in range(7)
    ]
    (tmp_path / "prefs.json").write_text(json.dumps(llava))
    parquet = write_parquet(rlaif_v_rows(5), tmp_path / "rows.parquet")
    for uri, data_format in ((str(tmp_path / "prefs.json"), "llava"), (str(parquet), "rlaif-v")):
        yielded = len(
            list(formats.iter_samples(uri, data_format, shard=shard, max_samples=max_samples))
        )
        total = formats.shard_size(formats.count_rows(uri, data_format), shard, max_samples)
        assert total == yielded, (data_format, shard, max_samples)
