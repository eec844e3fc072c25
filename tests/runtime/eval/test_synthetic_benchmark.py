"""The synthetic benchmark on the scenes world: exact CHAIR with scripted answers, and the
whole benchmark (generation, reliance) with a tiny LLaVA."""

from __future__ import annotations

from pathlib import Path

import pytest
from mfpo_core.api import BenchmarkSpec
from mfpo_core.contract import BadInput
from mfpo_runtime.data.records import read_records
from mfpo_runtime.eval import synthetic
from mfpo_runtime.eval.common import BenchmarkEnv
from mfpo_runtime.eval.generation import AnswerLogp, GenerationSettings, VLMPolicy
from mfpo_runtime.stages.evaluate import benchmark_config
from PIL import Image


def benchmark(**entry):
    """A spec.evaluation.benchmarks[] entry as the benchmark modules read it."""
    return benchmark_config(BenchmarkSpec(**entry))


class ByImagePolicy:
    """Answers keyed by the exact image bytes; any other image (a noised one) gets ''."""

    name = "by-image"

    def __init__(self, answers: dict[bytes, str]):
        self.answers = answers

    def answer(self, questions, images):
        return [self.answers.get(img.tobytes(), "") for img in images]

    def answer_logps(self, questions, images, answers):
        return [AnswerLogp(-4.0 if img.tobytes() in self.answers else -6.0, 4) for img in images]


def scripted_answers(world_dir: Path) -> dict[bytes, str]:
    answers = {}
    for split in ("eval", "eval-counterprior"):
        for n, record in enumerate(read_records(world_dir / split)):
            image = Image.open(world_dir / split / record.image).convert("RGB")
            # The first scene of each split gets a hallucinated umbrella, unless it has one.
            extra = " and an umbrella" if n == 0 and "umbrella" not in record.objects else ""
            answers[image.tobytes()] = record.chosen.rstrip(".") + extra + "."
    return answers


def test_synthetic_chair_is_exact_with_scripted_answers(world_dir: Path, tmp_path: Path):
    bench = benchmark(name="synthetic", uri=str(world_dir))
    result = synthetic.evaluate(ByImagePolicy(scripted_answers(world_dir)), bench, BenchmarkEnv(work_dir=tmp_path))
    m = result.metrics
    eval_records = read_records(world_dir / "eval")
    mentions = sum(len(r.objects) for r in eval_records) + 1
    assert result.details["records"] == {"eval": 8, "eval-counterprior": 8}
    assert m["chair_s"] == pytest.approx(1 / 8) and m["counterprior.chair_s"] == pytest.approx(1 / 8)
    assert m["chair_i"] == pytest.approx(1 / mentions)
    assert m["recall"] == 1.0 and m["well_formed"] == 1.0
    # Noised images are unknown to the script: every answer changes, to one naming nothing.
    assert m["answer_change_rate"] == 1.0 and m["object_change_rate"] == 1.0
    # Both noised images lose the same 0.5 nats per token: no object-specific reliance.
    assert m["logp_drop_object"] == pytest.approx(0.5) and m["object_reliance_contrast"] == pytest.approx(0.0)
    assert result.flags == []


def test_collapsed_answers_are_flagged_degenerate(world_dir: Path, tmp_path: Path):
    collapsed = {key: "triangle triangle triangle triangle" for key in scripted_answers(world_dir)}
    bench = benchmark(name="synthetic", uri=str(world_dir), synthetic={"reliance": False})
    result = synthetic.evaluate(ByImagePolicy(collapsed), bench, BenchmarkEnv(work_dir=tmp_path))
    assert result.metrics["chair_s"] == 0.0  # looks perfect by CHAIR ...
    assert result.metrics["well_formed"] == 0.0 and result.flags == ["degenerate"]  # ... but is not
    assert "answer_change_rate" not in result.metrics


def test_one_split_directory_and_default_uri(world_dir: Path, tmp_path: Path):
    policy = ByImagePolicy(scripted_answers(world_dir))
    bench = benchmark(name="synthetic", synthetic={"reliance": False}, max_samples=3)
    env = BenchmarkEnv(work_dir=tmp_path, default_uri=synthetic.default_uri(f"file://{world_dir}/train"))
    assert synthetic.evaluate(policy, bench, env).details["records"] == {"eval": 3, "eval-counterprior": 3}
    single = benchmark(name="synthetic", uri=str(world_dir / "eval-counterprior"),
                       synthetic={"reliance": False, "splits": ["eval-counterprior"]})  # fmt: skip
    metrics = synthetic.evaluate(policy, single, env).metrics
    assert "counterprior.chair_s" in metrics and "chair_s" not in metrics  # named as the split listed
    with pytest.raises(BadInput, match=r"split 'eval' \(synthetic.splits\) has no .*eval/records.jsonl"):
        synthetic.evaluate(policy, benchmark(name="synthetic", uri=str(tmp_path)), env)


def test_a_split_the_world_lacks_or_one_dataset_read_as_two_is_bad_input(world_dir: Path, tmp_path: Path):
    """Splits were looked up leniently: one missing was left out without a word (the scores
    looked complete), and one split's directory was scored as `eval` whatever it held."""
    policy = ByImagePolicy(scripted_answers(world_dir))
    env = BenchmarkEnv(work_dir=tmp_path)
    partial = tmp_path / "partial-world"
    partial.mkdir()
    (partial / "eval").symlink_to(world_dir / "eval", target_is_directory=True)
    bench = benchmark(name="synthetic", uri=str(partial), synthetic={"reliance": False})
    with pytest.raises(BadInput, match=r"split 'eval-counterprior' \(synthetic.splits\) has no "):
        synthetic.evaluate(policy, bench, env)
    assert synthetic.required_inputs(bench, str(partial)) == [
        (f"synthetic benchmark at {partial}: split 'eval-counterprior' (synthetic.splits) has no "
        f"{partial}/eval-counterprior/records.jsonl")
    ]
    one = {"name": "synthetic", "uri": str(world_dir / "eval-counterprior")}
    listed = benchmark(**one, synthetic={"reliance": False, "splits": ["eval", "eval-counterprior"]})
    with pytest.raises(BadInput, match="it is one dataset, of split 'eval-counterprior', but synthetic.splits lists"):
        synthetic.evaluate(policy, listed, env)
    # Unset splits: the one dataset is its manifest's split (it was scored as `eval` before).
    unset = benchmark(**one, synthetic={"reliance": False}, max_samples=2)
    assert synthetic.evaluate(policy, unset, env).details["records"] == {"eval-counterprior": 2}


@pytest.mark.slow
def test_synthetic_benchmark_with_a_tiny_llava(world_dir: Path, tiny_llava_dir: Path, tmp_path: Path):
    settings = GenerationSettings(max_new_tokens=6, batch_size=4)
    policy = VLMPolicy.load("base", str(tiny_llava_dir), settings)
    bench = benchmark(name="synthetic", uri=str(world_dir), max_samples=3)
    result = synthetic.evaluate(policy, bench, BenchmarkEnv(work_dir=tmp_path))
    m = result.metrics
    for key in ("chair_s", "chair_i", "recall", "well_formed", "answer_change_rate", "counterprior.chair_s"):
        assert 0.0 <= m[key] <= 1.0, key
    assert {"logp_drop_object", "logp_drop_background"} <= set(m)
    assert len(result.samples) == 6 and all("logp_per_token" in s for s in result.samples)
    # Greedy decoding: the same policy gives the same answers again.
    again = synthetic.evaluate(policy, bench, BenchmarkEnv(work_dir=tmp_path))
    assert [s["answer"] for s in again.samples] == [s["answer"] for s in result.samples]
