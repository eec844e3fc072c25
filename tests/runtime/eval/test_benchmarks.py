"""Object HalBench, AMBER and POPE on small samples in their real file formats, with scripted
answers and hand-worked expected scores; the LLM judge against a mock local endpoint."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from eval_helpers import (
    BLUE,
    DESCRIBE,
    GREEN,
    GREY,
    RED,
    WHITE,
    ScriptedPolicy,
    q,
    write_amber_sample,
    write_coco_sample,
    write_json,
    write_pope_sample,
)
from mfpo_core.api import BenchmarkSpec
from mfpo_core.contract import BadInput
from mfpo_runtime.eval import amber, object_halbench, pope
from mfpo_runtime.eval.common import BenchmarkEnv
from mfpo_runtime.eval.judge import OpenAIJudge
from mfpo_runtime.stages.evaluate import benchmark_config
from pydantic import ValidationError


def benchmark(**entry):
    """A spec.evaluation.benchmarks[] entry as the benchmark modules read it."""
    return benchmark_config(BenchmarkSpec(**entry))

# ------------------------------------------------------------------- Object HalBench


@pytest.fixture
def coco_sample(tmp_path: Path) -> Path:
    return write_coco_sample(tmp_path)


COCO_ANSWERS = {
    (DESCRIBE, RED): "A man with a puppy and a cat.",  # cat is hallucinated
    (DESCRIBE, GREEN): "A couch and a car.",  # couch comes from the caption's sofa
    (DESCRIBE, BLUE): "An empty street.",  # names no object
}


def test_coco_truth_joins_instances_and_caption_objects(coco_sample: Path):
    from mfpo_runtime.data.mentions import coco_extractor

    truth = object_halbench.coco_truth(
        str(coco_sample / "instances.json"), str(coco_sample / "captions.json"), coco_extractor()
    )
    assert truth == {1: {"person", "dog"}, 2: {"car", "couch"}, 3: set()}


def test_object_halbench_hand_worked(coco_sample: Path, tmp_path: Path):
    bench = benchmark(name="object-halbench", uri=f"file://{coco_sample}")
    result = object_halbench.evaluate(ScriptedPolicy(COCO_ANSWERS), bench, BenchmarkEnv(work_dir=tmp_path))
    m = result.metrics
    assert m["chair_s"] == pytest.approx(1 / 2)  # 1 of the 2 answers that name objects
    assert m["chair_s_all"] == pytest.approx(1 / 3)
    assert m["chair_i"] == pytest.approx(1 / 5)  # cat of person, dog, cat, couch, car
    assert m["recall"] == pytest.approx(4 / 4)
    assert m["mean_length"] == pytest.approx((8 + 5 + 3) / 3)
    assert m["well_formed"] == 1.0 and result.flags == []
    assert result.samples[0]["hallucinated"] == ["cat"]


def test_object_halbench_max_samples_and_missing_file(coco_sample: Path, tmp_path: Path):
    env = BenchmarkEnv(work_dir=tmp_path)
    bench = benchmark(name="object-halbench", uri=str(coco_sample), max_samples=1)
    assert object_halbench.evaluate(ScriptedPolicy(COCO_ANSWERS), bench, env).metrics["chair_s"] == 1.0
    (coco_sample / "instances.json").unlink()
    with pytest.raises(BadInput, match="instances.json"):
        object_halbench.evaluate(ScriptedPolicy(COCO_ANSWERS), bench, env)


class MockJudge(BaseHTTPRequestHandler):
    """A mock OpenAI-compatible /chat/completions endpoint on 127.0.0.1."""

    seen_auth: ClassVar[list[str]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        MockJudge.seen_auth.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") == "Bearer revoked-token":  # as OpenAI answers a bad key
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if "puppy" in prompt:
            listed = 'Objects: ["man", "puppy", "cat"]'
        elif "couch" in prompt:
            listed = '["couch", "car"]'
        else:
            listed = "[]"
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": listed}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def mock_judge_url():
    server = HTTPServer(("127.0.0.1", 0), MockJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


def llm_judged(coco_sample: Path, judge_url: str):
    return benchmark(name="object-halbench", uri=str(coco_sample), object_halbench={
        "judge": "llm", "judgeUrl": judge_url, "judgeModel": "judge-1",
        "judgeSecretRef": {"name": "judge", "key": "api-key"}})  # fmt: skip


def test_object_halbench_with_llm_judge(coco_sample: Path, tmp_path: Path, mock_judge_url, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "storage-secret")  # in every stage pod's environment
    env = BenchmarkEnv(work_dir=tmp_path, judge_api_key="secret-token")
    m = object_halbench.evaluate(ScriptedPolicy(COCO_ANSWERS), llm_judged(coco_sample, mock_judge_url), env).metrics
    assert m["chair_s"] == pytest.approx(1 / 2) and m["chair_i"] == pytest.approx(1 / 5)
    assert set(MockJudge.seen_auth[-2:]) == {"Bearer secret-token"}  # the judge's key, nothing else
    MockJudge.seen_auth.clear()
    object_halbench.evaluate(ScriptedPolicy(COCO_ANSWERS), llm_judged(coco_sample, mock_judge_url),
                             BenchmarkEnv(work_dir=tmp_path))  # fmt: skip
    assert set(MockJudge.seen_auth) == {""}  # no key given: no Authorization, whatever the environment holds


def test_a_key_the_judge_refuses_is_bad_input_not_a_retry(coco_sample: Path, tmp_path: Path, mock_judge_url):
    env = BenchmarkEnv(work_dir=tmp_path, judge_api_key="revoked-token")
    with pytest.raises(BadInput, match=r"refused the request \(HTTP 401\) with the key of objectHalbench.judgeSecretRef"):
        object_halbench.evaluate(ScriptedPolicy(COCO_ANSWERS), llm_judged(coco_sample, mock_judge_url), env)
    assert "revoked-token" not in repr(env) and "revoked-token" not in repr(OpenAIJudge("http://j/v1", "m", "revoked-token"))


@pytest.mark.parametrize("variable", ["AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY"])
def test_the_judge_key_can_no_longer_name_an_environment_variable(coco_sample: Path, variable: str):
    """judgeKeyEnv let a manifest send any variable of the eval pod (the storage Secret's key
    among them) as a Bearer token to a URL of its choosing: removed (docs/upgrade.md)."""
    with pytest.raises(ValidationError, match="judgeKeyEnv"):
        BenchmarkSpec.model_validate({"name": "object-halbench", "uri": str(coco_sample), "objectHalbench": {
            "judge": "llm", "judgeUrl": "https://judge.example.net/v1", "judgeModel": "m", "judgeKeyEnv": variable}})  # fmt: skip


@pytest.mark.parametrize(
    "url", ["https://user:pw@judge.example.net/v1", "https://token@judge.example.net/v1",
            "https://judge.example.net/v1?key=abc", "https://judge.example.net/v1#x"],
)  # fmt: skip
def test_a_judge_url_with_credentials_query_or_fragment_is_refused(coco_sample: Path, url: str):
    with pytest.raises(ValidationError, match="judgeUrl"):
        BenchmarkSpec.model_validate({"name": "object-halbench", "uri": str(coco_sample), "objectHalbench": {
            "judge": "llm", "judgeUrl": url, "judgeModel": "m"}})  # fmt: skip


def test_llm_judge_needs_its_url(coco_sample: Path):
    with pytest.raises(ValidationError, match="judgeUrl and judgeModel"):
        BenchmarkSpec(name="object-halbench", uri=str(coco_sample), object_halbench={"judge": "llm"})


# ------------------------------------------------------------------------------ AMBER


@pytest.fixture
def amber_sample(tmp_path: Path) -> Path:
    return write_amber_sample(tmp_path)


AMBER_ANSWERS = {
    (DESCRIBE, RED): "A puppy on the lawn under the sky with a kitten.",  # kitten -> cat: hallucinated
    (DESCRIBE, GREEN): "A cat and another cat.",
    ("Is there a cat in this image?", BLUE): "No.",  # right
    ("Is the dog running in this image?", GREY): "No, it is not.",  # wrong
    ("Is the dog on the grass in this image?", WHITE): "Yes",  # wrong
}


def test_amber_hand_worked(amber_sample: Path, tmp_path: Path):
    bench = benchmark(name="amber", uri=str(amber_sample))
    result = amber.evaluate(ScriptedPolicy(AMBER_ANSWERS), bench, BenchmarkEnv(work_dir=tmp_path))
    m = result.metrics
    # Nouns (inference.py's after_process_nouns): puppy, lawn, sky, kitten + cat, cat. The safe
    # word sky is skipped but stays in chair_num (len(safe_flag_list)): 1 hallucinated of 6.
    assert m["chair"] == pytest.approx(1 / 6)
    assert m["cover"] == pytest.approx(3 / 3)  # dog (via puppy), grass (via lawn), cat
    assert m["hal"] == pytest.approx(1 / 2)
    assert m["cog"] == pytest.approx(1 / 3)  # cat of the hallu targets cat, frisbee, dog
    # "no" is positive: answered no on ids 3, 4; truly no: 3, 5; true positive: 3.
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["precision"] == pytest.approx(1 / 2) and m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(1 / 2)
    assert m["existence.accuracy"] == 1.0 and m["existence.f1"] == 1.0
    assert m["attribute.accuracy"] == 0.0 and m["state.accuracy"] == 0.0 and m["relation.accuracy"] == 0.0
    assert "number.accuracy" not in m and "action.f1" not in m  # no such questions
    assert m["amber_score"] == pytest.approx((1 - 1 / 6 + 1 / 2) / 2)


def test_amber_generative_sample_uses_associations():
    vocab = amber.AmberVocabulary({"dog": ["puppy"], "cat": ["kitten"]}, set())
    sample = amber.generative_sample("Two puppies and kittens.", ["dog"], ["cat"], vocab)
    assert sample["nouns"] == ["puppy", "kitten"]
    assert sample["covered"] == ["dog"] and sample["cognitive"] == ["cat"]
    assert sample["hallucinated"] == ["kitten"]


def test_amber_counts_nouns_only():
    # inference.py extract_nouns keeps words tagged NN* and lemmatises them: "watch" is a verb
    # here, so it is no hallucinated watch; "men" and "dogs" become man and dog.
    vocab = amber.AmberVocabulary({"man": [], "watch": [], "dog": [], "field": []}, set())
    sample = amber.generative_sample("Two men watch the dogs on the field.", ["man", "field"], [], vocab)
    assert sample["nouns"] == ["man", "dog", "field"]
    assert sample["hallucinated"] == ["dog"]


def test_amber_first_association_wins_as_in_inference_py():
    # safe_words = association[truth[0]] + ... + truth: "cat" is first found as dog's associated
    # word, so it covers dog (safe_list[safe_list[j] + offset] = 1), and truth cat stays uncovered.
    vocab = amber.AmberVocabulary({"dog": ["cat"], "cat": []}, set())
    sample = amber.generative_sample("A cat.", ["dog", "cat"], [], vocab)
    assert sample["covered"] == ["dog"] and sample["hallucinated"] == []


def test_amber_discriminative_sub_dimensions():
    # Counted as inference.py counts them: correct = (truth yes, "Yes") or (truth no, "No");
    # precision = answered No and truth no / answered No; recall = the same / truth no.
    kinds = ["discriminative-hallucination"] * 2 + [
        "discriminative-attribute-state", "discriminative-attribute-number",
        "discriminative-attribute-number", "discriminative-attribute-action",
    ] + ["discriminative-relation"] * 2  # fmt: skip
    labels = [False, True, False, True, False, False, True, False]  # True: truth "yes"
    predicted = [False] * 8  # every answer "No"
    m = amber.discriminative_scores(predicted, labels, kinds)
    assert (m["accuracy"], m["precision"], m["recall"], m["f1"]) == pytest.approx((5 / 8, 5 / 8, 1, 10 / 13))
    expected = {
        "existence": (1 / 2, 1 / 2, 1, 2 / 3),
        "attribute": (3 / 4, 3 / 4, 1, 6 / 7),  # state + number + action pooled
        "state": (1, 1, 1, 1),
        "number": (1 / 2, 1 / 2, 1, 2 / 3),
        "action": (1, 1, 1, 1),
        "relation": (1 / 2, 1 / 2, 1, 2 / 3),
    }
    for dim, values in expected.items():
        got = tuple(m[f"{dim}.{k}"] for k in ("accuracy", "precision", "recall", "f1"))
        assert got == pytest.approx(values), dim


def test_amber_query_without_annotation_is_bad_input(amber_sample: Path, tmp_path: Path):
    queries = json.loads((amber_sample / "query_all.json").read_text())
    write_json(amber_sample / "query_all.json", [*queries, {"id": 99, "image": "x.jpg", "query": "?"}])
    with pytest.raises(BadInput, match="id 99 has no annotation"):
        amber.evaluate(ScriptedPolicy({}), benchmark(name="amber", uri=str(amber_sample)),
                       BenchmarkEnv(work_dir=tmp_path))  # fmt: skip


def test_amber_annotations_with_one_id_twice_are_bad_input(amber_sample: Path, tmp_path: Path):
    """Annotations are looked up by id: a second annotation of an id replaced the first unseen."""
    annotations = json.loads((amber_sample / "annotations.json").read_text())
    write_json(amber_sample / "annotations.json", [*annotations, {**annotations[0], "truth": ["moon"]}])
    with pytest.raises(BadInput, match=rf"AMBER annotations \[{len(annotations)}\]: id {annotations[0]['id']!r} is annotated twice"):
        amber.evaluate(ScriptedPolicy({}), benchmark(name="amber", uri=str(amber_sample)),
                       BenchmarkEnv(work_dir=tmp_path))  # fmt: skip


# ------------------------------------------------------------------------------- POPE


@pytest.fixture
def pope_sample(tmp_path: Path) -> Path:
    return write_pope_sample(tmp_path)


# Each answer is read as POPE's evaluate.py reads it (the "Only keep the first sentence" block,
# copied verbatim in e.g. llava-rlhf/LLaVA-RLHF Eval/summarize_eval_pope.py): cut at the first
# ".", drop ",", split on " ", "No"/"not"/"no" among the words -> no, else yes.
POPE_ANSWERS = {
    (q("dog"), RED): "Yes, there is a dog. No other animal is visible.",  # first sentence: yes
    (q("cat"), RED): "Yes, there is a cat.",  # false positive
    (q("car"), GREEN): "No",  # false negative
    (q("tree"), GREEN): "No, there is no tree.",
    (q("bench"), GREEN): "There isn't one.",  # no "no"/"not" word: POPE reads yes (false positive)
}


def test_pope_hand_worked(pope_sample: Path, tmp_path: Path):
    bench = benchmark(name="pope", uri=str(pope_sample), pope={"splits": ["random", "adversarial"]})
    result = pope.evaluate(ScriptedPolicy(POPE_ANSWERS), bench, BenchmarkEnv(work_dir=tmp_path))
    m = result.metrics
    assert "popular.f1" not in m  # the splits listed only
    # random: TP dog, FP cat, FN car, TN tree.
    assert m["random.accuracy"] == pytest.approx(2 / 4)
    assert m["random.precision"] == pytest.approx(1 / 2) and m["random.recall"] == pytest.approx(1 / 2)
    assert m["random.f1"] == pytest.approx(1 / 2) and m["random.yes_ratio"] == pytest.approx(2 / 4)
    # adversarial: TP dog, FP bench.
    assert m["adversarial.accuracy"] == pytest.approx(1 / 2) and m["adversarial.f1"] == pytest.approx(2 / 3)
    # Pooled over the six questions (TP 2, FP 2, FN 1, TN 1), not the mean of the splits (7/12).
    assert m["accuracy"] == pytest.approx(3 / 6) and m["yes_ratio"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 4) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(4 / 7)


def test_pope_splits_option(pope_sample: Path, tmp_path: Path):
    bench = benchmark(name="pope", uri=str(pope_sample), pope={"splits": ["adversarial"]})
    m = pope.evaluate(ScriptedPolicy(POPE_ANSWERS), bench, BenchmarkEnv(work_dir=tmp_path)).metrics
    assert set(m) == {"adversarial.accuracy", "adversarial.precision", "adversarial.recall", "adversarial.f1",
                      "adversarial.yes_ratio", "accuracy", "precision", "recall", "f1", "yes_ratio"}  # fmt: skip
    with pytest.raises(ValidationError, match="pope.splits.0"):
        BenchmarkSpec(name="pope", uri=str(pope_sample), pope={"splits": ["hard"]})


def test_a_pope_split_without_its_file_is_bad_input_naming_it(pope_sample: Path, tmp_path: Path):
    """POPE's data is one file per split (coco_pope_random.json, ..._popular.json,
    ..._adversarial.json in its repository's output/coco/): a split listed without its file was
    left out silently, and the scores looked complete."""
    bench = benchmark(name="pope", uri=str(pope_sample))  # all three splits; the sample has no popular
    with pytest.raises(BadInput, match=r"split 'popular' \(pope.splits\) has no question file"):
        pope.evaluate(ScriptedPolicy(POPE_ANSWERS), bench, BenchmarkEnv(work_dir=tmp_path))
    assert pope.required_inputs(bench, str(pope_sample)) == [
        (f"POPE at {pope_sample}: split 'popular' (pope.splits) has no question file *popular.json or "
        "*popular.jsonl there (POPE's own: coco_pope_popular.json)")
    ]


def test_pope_without_question_files_is_bad_input(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="no question file"):
        pope.evaluate(ScriptedPolicy({}), benchmark(name="pope", uri=str(tmp_path / "empty")),
                      BenchmarkEnv(work_dir=tmp_path))  # fmt: skip


# ------------------------------------------------------------------ ground-truth labels, up front


def _relabel(path: Path, labels: dict[int, object]) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for number, label in labels.items():
        rows[number]["label"] = label
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _original_pope_metrics(predicted: list[bool], labels: list[str]) -> dict[str, float]:
    """POPE's evaluate.py (RUCAIBox/POPE; verbatim in LLaVA-RLHF's Eval/summarize_eval_pope.py):
    `label_list[i] = 0 if label == 'no' else 1`, then TP/FP/TN/FN."""
    label_list = [0 if label == "no" else 1 for label in labels]
    pairs = list(zip([int(p) for p in predicted], label_list))
    tp, fp = pairs.count((1, 1)), pairs.count((1, 0))
    tn, fn = pairs.count((0, 0)), pairs.count((0, 1))
    return {"accuracy": (tp + tn) / len(pairs), "precision": tp / (tp + fp), "recall": tp / (tp + fn)}


def test_pope_labels_in_any_case_and_spacing_score_as_pope_scores_yes_and_no(pope_sample: Path, tmp_path: Path):
    """Case and white space are forgiven; on POPE's own labels ("yes"/"no") the scores are
    evaluate.py's."""
    bench = benchmark(name="pope", uri=str(pope_sample), pope={"splits": ["random"]})
    plain = pope.evaluate(ScriptedPolicy(POPE_ANSWERS), bench, BenchmarkEnv(work_dir=tmp_path))
    predicted = [s["yes"] for s in plain.samples]
    original = _original_pope_metrics(predicted, [s["label"] for s in plain.samples])
    assert {k: plain.metrics[k] for k in original} == pytest.approx(original)
    _relabel(pope_sample / "coco_pope_random.json", {0: "Yes", 1: " NO ", 2: "YES\n", 3: "No"})
    spelled = pope.evaluate(ScriptedPolicy(POPE_ANSWERS), bench, BenchmarkEnv(work_dir=tmp_path))
    assert spelled.metrics == plain.metrics
    assert pope.required_inputs(bench, str(pope_sample)) == []


@pytest.mark.parametrize("label", ["yes.", "y", "", "true", None, 1, True])
def test_a_pope_label_that_is_not_yes_or_no_is_bad_input_naming_file_line_and_label(
    pope_sample: Path, tmp_path: Path, label
):
    """Before: every label but "yes" was scored as "no" without a word (hostile-user report: 'yes.'
    moved accuracy from 66.7% to 33.3%). POPE's evaluate.py reads every label but 'no' as yes, so
    it would score 'yes.' right and 'No.' wrong: a ground truth that needs a guess is refused."""
    _relabel(pope_sample / "coco_pope_adversarial.json", {1: label})
    bench = benchmark(name="pope", uri=str(pope_sample), pope={"splits": ["adversarial"]})
    where = f"{pope_sample}/coco_pope_adversarial.json line 2"
    shown = repr(label) if isinstance(label, str) else f"{label!r}"
    message = f"{where}: label {shown} is not yes or no"
    with pytest.raises(BadInput, match=re.escape(message)):
        pope.evaluate(ScriptedPolicy(POPE_ANSWERS), bench, BenchmarkEnv(work_dir=tmp_path))
    (problem,) = pope.required_inputs(bench, str(pope_sample))  # what the run's first stage checks
    assert problem.startswith(message)


def test_pope_questions_are_checked_as_eval_reads_them_without_decoding(pope_sample: Path):
    """A question naming a missing image, a question without an image, an image that is no
    image (existence is checked, decoding is left to eval: the check stays cheap)."""
    (pope_sample / "images" / "not-an-image.jpg").write_text("text")
    lines = [json.loads(line) for line in (pope_sample / "coco_pope_random.json").read_text().splitlines()]
    lines[1]["image"] = "missing.jpg"
    del lines[2]["image"]
    lines[3]["image"] = "not-an-image.jpg"
    (pope_sample / "coco_pope_random.json").write_text("".join(json.dumps(r) + "\n" for r in lines))
    bench = benchmark(name="pope", uri=str(pope_sample), pope={"splits": ["random", "adversarial"]})
    file = f"{pope_sample}/coco_pope_random.json"
    assert pope.required_inputs(bench, str(pope_sample)) == [
        f"{file} line 3: missing field 'image' (has ['label', 'question_id', 'text'])",
    ]
    del lines[2]
    (pope_sample / "coco_pope_random.json").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert pope.required_inputs(bench, str(pope_sample)) == [
        f"{file} line 2: image 'missing.jpg' does not exist (under {pope_sample}/images)",
    ]


def test_an_amber_truth_that_is_not_yes_or_no_is_bad_input(amber_sample: Path, tmp_path: Path):
    """Before: `str(truth).lower() == "yes"`: a truth 'yes.' was scored as 'no' without a word."""
    annotations = json.loads((amber_sample / "annotations.json").read_text())
    annotations[3]["truth"] = "yes."
    write_json(amber_sample / "annotations.json", annotations)
    bench = benchmark(name="amber", uri=str(amber_sample))
    message = "AMBER annotation id 4: truth 'yes.' is not yes or no"
    with pytest.raises(BadInput, match=re.escape(message)):
        amber.evaluate(ScriptedPolicy(AMBER_ANSWERS), bench, BenchmarkEnv(work_dir=tmp_path))
    assert [p[: len(message)] for p in amber.required_inputs(bench, str(amber_sample))] == [message]


def test_amber_queries_naming_missing_images_are_found_up_front(amber_sample: Path):
    (amber_sample / "images" / "AMBER_5.jpg").unlink()
    bench = benchmark(name="amber", uri=str(amber_sample))
    assert amber.required_inputs(bench, str(amber_sample)) == [
        f"AMBER id 5: image 'AMBER_5.jpg' does not exist (under {amber_sample}/images)"
    ]
