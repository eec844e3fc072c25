"""The readable report: tables per benchmark, better-direction, degenerate warning, the plot."""

from __future__ import annotations

from pathlib import Path

from mfpo_runtime.eval import report

SCORES = {
    "base": {"synthetic": {"metrics": {"chair_s": 0.5, "mean_length": 7.25}, "flags": []},
             "pope": {"metrics": {"f1": 0.6}, "flags": []}},
    "align-1": {"synthetic": {"metrics": {"chair_s": 0.0, "mean_length": 4.0}, "flags": ["degenerate"]},
                "pope": {"metrics": {"f1": 0.8}, "flags": []}},
}  # fmt: skip


def test_markdown_tables_and_warning():
    text = report.markdown("demo", SCORES, plot_file="report.png")
    assert "# Hallucination evaluation of run `demo`" in text
    assert "| metric | better | base | align-1 |" in text
    assert "| chair_s | lower | 50.0% | 0.0% |" in text
    assert "| mean_length | - | 7.250 | 4.000 |" in text
    assert "| f1 | higher | 60.0% | 80.0% |" in text
    assert "| flags | | - | degenerate |" in text
    assert "degenerate outputs from align-1" in text
    assert "![scores per stage](report.png)" in text


def test_better_direction():
    assert report.better("counterprior.chair_i") == "lower"
    assert report.better("answer_change_rate") == "higher"  # the answer depends on the image
    assert report.better("logp_drop_object") == "-"
    assert report.better("random.f1") == "higher"
    # The image term's own quantity: a manipulation check, no better direction (issue 26).
    assert report.better("object_reliance_contrast") == "-"
    assert report.better("counterprior.logp_drop_excess") == "-"


def test_the_graded_reliance_is_called_a_manipulation_check():
    scores = {p: {"synthetic": {"metrics": {"chair_s": 0.5, "logp_drop_excess": 0.3}}} for p in ("base", "align-1")}
    text = report.markdown("demo", scores)
    assert "| logp_drop_excess | - | 0.300 | 0.300 |" in text
    assert "manipulation check, not a score" in text
    assert "manipulation check" not in report.markdown("demo", SCORES)  # said where it is read only


def test_plot_writes_a_png(tmp_path: Path):
    path = report.plot(SCORES, tmp_path / "scores.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_never_mixes_better_directions_on_one_axis():
    scores = {
        policy: {"synthetic": {"metrics": {"chair_s": 0.4, "chair_i": 0.2, "recall": 0.6,
                                           "well_formed": 1.0, "counterprior.chair_s": 0.5}}}
        for policy in ("base", "align-1")
    }  # fmt: skip
    assert report.panels("synthetic", scores) == {
        "lower is better": ["chair_s", "chair_i", "counterprior.chair_s"],
        "higher is better": ["recall", "well_formed"],
    }
