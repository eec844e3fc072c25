"""The paired comparison of two runs: values, pairing and interval worked out by hand."""

import json

import pytest
from mfpo_core.contract import BadInput
from mfpo_runtime.eval.compare import (
    METRICS,
    Row,
    compare,
    comparison,
    load_judged,
    main,
    paired_bootstrap,
)


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
    a = judged(
        tmp_path,
        "a",
        [("eval", str(i), ["cat", "sun"] if i < 4 else ["dog"], TRUTH) for i in range(8)],
    )
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
    table = compare(
        ("DPO", a_uri), ("MFPO", b_uri), policy="align-2", benchmark="synthetic", rounds=20
    )
    counterprior = [
        line for line in table.splitlines() if line.strip().startswith("eval-counterprior")
    ]
    chair_s = next(line for line in counterprior if " chair_s " in line)
    assert chair_s.split()[3:6] == ["1.000", "1.000", "1.000"]  # base, DPO, MFPO
    assert "+0.000 [+0.000, +0.000]" in chair_s


def test_two_samples_with_one_id_are_refused(tmp_path):
    """Runs are paired sample by sample by (split, id): a second sample of an id replaced the
    first, and the comparison silently ran on fewer samples."""
    rows = [("eval", "7", ["cat"], TRUTH), ("eval", "8", ["dog"], TRUTH), ("eval", "7", ["sun"], TRUTH)]
    with pytest.raises(BadInput, match=r"samples 0 and 2 have the same id '7' in split 'eval'"):
        judged(tmp_path, "a", rows)


def test_missing_evaluation_names_the_uri(tmp_path):
    with pytest.raises(
        BadInput, match="no evaluation of align-3 on synthetic at .*align-3/synthetic.json"
    ):
        load_judged(f"file://{tmp_path}/nothing", "align-3", "synthetic")


def two_split_runs(tmp_path):
    """DPO hallucinates "sun" in 6 of 8 answers on both splits; MFPO in none on the plain split
    and in the same 6 on the counter-prior split; MFPO names the dog less often (recall)."""

    def rows(halluc: set[int], dog: bool, split: str):
        return [
            (
                split,
                str(i),
                ["cat", "sun"] if i in halluc else (["cat", "dog"] if dog else ["cat"]),
                TRUTH,
            )
            for i in range(8)
        ]

    six = set(range(6))
    dpo = write_results(
        tmp_path, "dpo", "align-3", rows(six, True, "eval") + rows(six, True, "eval-counterprior")
    )
    mfpo = write_results(
        tmp_path,
        "mfpo",
        "align-3",
        rows(set(), True, "eval") + rows(six, True, "eval-counterprior"),
    )
    write_results(
        tmp_path, "mfpo", "base", rows(six, True, "eval") + rows(six, True, "eval-counterprior")
    )
    return dpo, mfpo


def test_report_gives_a_verdict_per_metric_by_interval_and_direction(tmp_path):
    dpo, mfpo = two_split_runs(tmp_path)
    c = comparison(
        ("DPO", dpo), ("MFPO", mfpo), policy="align-3", benchmark="synthetic", rounds=300
    )
    assert c.splits() == ["eval", "eval-counterprior"]
    # eval: CHAIRs 0.75 -> 0.0, every resample lower: better (lower is better).
    assert c.row("eval", "chair_s").delta == pytest.approx(-0.75)
    assert c.row("eval", "chair_s").verdict == "better"
    assert c.row("eval", "chair_i").verdict == "better"
    # recall: DPO names the dog in 2 of 8 answers, MFPO in all 8 -> higher, interval > 0.
    assert c.row("eval", "recall").delta > 0 and c.row("eval", "recall").verdict == "better"
    # counter-prior: the same answers: the interval is [0, 0], which includes 0.
    assert {c.row("eval-counterprior", m).verdict for m in METRICS} == {"no difference"}
    assert Row("s", 8, "chair_s", 0, 0.1, 0.3, 0.2, 0.05, 0.4).verdict == "worse"
    assert Row("s", 8, "recall", 0, 0.3, 0.1, -0.2, -0.4, -0.05).verdict == "worse"


def test_report_md_and_png_for_both_splits(tmp_path):
    dpo, mfpo = two_split_runs(tmp_path)
    assert main(["--baseline", f"DPO={dpo}", "--candidate", f"MFPO={mfpo}", "--policy", "align-3",
                 "--rounds", "100", "--out", str(tmp_path / "cmp")]) == 0  # fmt: skip
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "![CHAIRs against recall per policy](tradeoff.png)" in report
    assert "## eval (n=8)" in report and "## eval-counterprior (n=8)" in report
    cells = [
        [cell.strip() for cell in row.strip("|").split("|")]
        for row in report.splitlines()
        if row.startswith("| chair_s |")
    ]
    assert [row[:5] + row[6:] for row in cells] == [
        ["chair_s", "lower", "75.0%", "75.0%", "0.0%", "better"],  # eval: base, DPO, MFPO
        ["chair_s", "lower", "75.0%", "75.0%", "75.0%", "no difference"],  # counter-prior
    ]
    assert cells[0][5].startswith("-75.0 [") and cells[1][5] == "+0.0 [+0.0, +0.0] points"
    for metric in METRICS:  # each explained exactly once, with its direction
        assert report.count(f"- `{metric}` (") == 1
    assert "- `recall` (higher is better)" in report and "- `chair_s` (lower is better)" in report
    png = (tmp_path / "cmp" / "tradeoff.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
