"""The paired comparison of two runs: values, pairing and interval worked out by hand."""

import json

import pytest
from mfpo_core.contract import BadInput
from mfpo_runtime.eval.compare import compare, load_judged, paired_bootstrap


def write_results(root, run, policy, answers):
    """answers: (split, id, mentioned, truth) rows, as the eval stage stores them."""
    path = root / run / "eval" / "results" / policy / "synthetic.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = [
        {"split": split, "id": i, "mentioned": m, "truth": t, "answer": " ".join(m) or "nothing"}
        for split, i, m, t in answers
    ]
    path.write_text(json.dumps({"samples": samples}))
    return f"file://{root / run}"


TRUTH = ["cat", "dog"]


def judged(tmp_path, run, rows, policy="align-1"):
    found = load_judged(write_results(tmp_path, run, policy, rows), policy, "synthetic")
    return [found[k] for k in sorted(found)]


def test_identical_runs_differ_by_exactly_zero(tmp_path):
    rows = [("eval", str(i), ["cat", "sun"] if i % 2 else ["cat"], TRUTH) for i in range(10)]
    a, b = judged(tmp_path, "a", rows), judged(tmp_path, "b", rows)
    assert paired_bootstrap(a, b, "chair_s", rounds=50) == (0.0, 0.0, 0.0)


def test_a_run_that_never_hallucinates_wins_by_the_other_runs_rate(tmp_path):
    # a: 4 of 8 responses hallucinate "sun" -> CHAIRs 0.5; b: none -> 0.0; b - a = -0.5.
    a = judged(tmp_path, "a", [("eval", str(i), ["cat", "sun"] if i < 4 else ["dog"], TRUTH) for i in range(8)])
    b = judged(tmp_path, "b", [("eval", str(i), ["cat"], TRUTH) for i in range(8)])
    delta, low, high = paired_bootstrap(a, b, "chair_s", rounds=500)
    assert delta == pytest.approx(-0.5)
    assert -1.0 <= low <= delta <= high <= 0.0  # every resample has b - a <= 0


def test_unpaired_samples_are_refused(tmp_path):
    a = judged(tmp_path, "a", [("eval", "1", ["cat"], TRUTH)])
    b = judged(tmp_path, "b", [("eval", "2", ["cat"], TRUTH)])
    with pytest.raises(ValueError, match="same samples"):
        paired_bootstrap(a, b, "recall", rounds=5)


def test_table_pairs_by_split_and_id_and_shows_the_base(tmp_path):
    rows = [("eval", "1", ["cat"], TRUTH), ("eval-counterprior", "1", ["cat", "sun"], TRUTH)]
    a_uri = write_results(tmp_path, "a", "align-2", rows)
    b_uri = write_results(tmp_path, "b", "align-2", list(reversed(rows)))
    write_results(tmp_path, "b", "base", rows)
    table = compare(("DPO", a_uri), ("MFPO", b_uri), policy="align-2", benchmark="synthetic", rounds=20)
    counterprior = [line for line in table.splitlines() if line.strip().startswith("eval-counterprior")]
    chair_s = next(line for line in counterprior if " chair_s " in line)
    assert chair_s.split()[3:6] == ["1.000", "1.000", "1.000"]  # base, DPO, MFPO
    assert "+0.000 [+0.000, +0.000]" in chair_s


def test_missing_evaluation_names_the_uri(tmp_path):
    with pytest.raises(BadInput, match="no evaluation of align-3 on synthetic at .*align-3/synthetic.json"):
        load_judged(f"file://{tmp_path}/nothing", "align-3", "synthetic")
