"""The ablation benchmark's plan: which runs, under which names, sharing which stages."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
from mfpo_core import storage

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_ablations as bench


def test_full_plan_covers_the_issue_matrix():
    profile = bench.PROFILES["full"]
    runs = bench.plan(profile)
    per_variant = Counter(r.variant.name for r in runs)
    # Frontier variants: 3 rates x 3 seeds; the others at MFPO's rate; each in both worlds.
    assert per_variant == {"mfpo": 18, "text-dpo": 18, "dpo-anchor": 6, "random-region": 6,
                           "global-noise": 6, "no-anchor": 6, "one-stage": 6,
                           "top-1": 6, "step-200": 6, "anchor-2": 6}  # fmt: skip
    assert len({r.name for r in runs}) == len(runs) == 84
    for length in profile.lengths:
        first = next(r for r in runs if r.length == length)
        assert (first.variant.name, first.lr, first.seed) == ("mfpo", profile.mfpo_lr, 0)
    assert {r.lr for r in runs if not r.variant.frontier} == {profile.mfpo_lr}


def test_every_run_is_a_valid_manifest_of_its_variant(tmp_path):
    layout = bench.Layout(tmp_path)
    for run in bench.plan(bench.PROFILES["full"]):
        spec = bench.manifest(run, bench.PROFILES["full"], layout, evaluate_base=False).spec
        weights = spec.objective.weights
        assert (weights.text, weights.image, weights.anchor) == run.variant.weights
        assert spec.image_preference.grounding.method == run.variant.grounding
        assert spec.image_preference.keywords.top_k == run.variant.top_k
        assert spec.image_preference.noise.step == run.variant.noise_step
        assert spec.curriculum.stages == run.variant.stages
        assert (spec.training.learning_rate, spec.training.seed) == (run.lr, run.seed)
        assert spec.data.max_samples == bench.PROFILES["full"].train
        assert spec.data.uri.endswith(f"world-{run.length}/train")


def _fake_stage(layout, run, part):
    storage.write_json({"stage": part}, storage.join(layout.run_uri(run), part, "result.json"))


def test_shared_stages_come_from_the_group_source(tmp_path):
    layout = bench.Layout(tmp_path)
    runs = bench.plan(bench.PROFILES["full"])
    source = runs[0]
    for part in ("datagen", "score"):
        _fake_stage(layout, source, part)

    def copied(run):
        bench.share_stages(run, runs, layout)
        return {p for p in ("datagen", "score") if storage.list_files(storage.join(layout.run_uri(run), p))}

    other_seed = next(r for r in runs if r.variant.name == "text-dpo" and r.length == source.length)
    assert copied(other_seed) == {"datagen", "score"}
    one_stage = next(r for r in runs if r.variant.name == "one-stage" and r.length == source.length)
    assert copied(one_stage) == {"datagen"}  # its own bins
    noise = next(r for r in runs if r.variant.name == "global-noise" and r.length == source.length)
    assert copied(noise) == set()  # its own perturbed images
    other_world = next(r for r in runs if r.variant.name == "text-dpo" and r.length != source.length)
    assert copied(other_world) == set()
    # Another m' (one keyword, milder noise): its own datagen, never MFPO's.
    for name in ("top-1", "step-200"):
        assert copied(next(r for r in runs if r.variant.name == name and r.length == source.length)) == set()
    anchor = next(r for r in runs if r.variant.name == "anchor-2" and r.length == source.length)
    assert copied(anchor) == {"datagen", "score"}  # another objective only


def test_the_issue_26_variants_differ_from_mfpo_in_one_setting_each(tmp_path):
    profile = bench.PROFILES["full"]
    layout = bench.Layout(tmp_path)
    runs = {r.name: r for r in bench.plan(profile)}

    def spec(name):
        return bench.manifest(runs[name], profile, layout, evaluate_base=False).spec.model_dump()

    mfpo = spec("mfpo-d-lr1-s0")
    for name, path, value in [("top-1", ("image_preference", "keywords", "top_k"), 1),
                              ("step-200", ("image_preference", "noise", "step"), 200),
                              ("anchor-2", ("objective", "weights", "anchor"), 2)]:  # fmt: skip
        other = spec(f"{name}-d-lr1-s0")
        changed = other
        for key in path[:-1]:
            changed = changed[key]
        assert changed[path[-1]] == value
        changed[path[-1]] = mfpo[path[0]][path[1]][path[2]]  # put MFPO's back: nothing else differs
        assert other == mfpo


def test_variants_option_keeps_mfpo_and_names_unknown_ones():
    assert bench.variant_names("top-1, step-200") == ("mfpo", "top-1", "step-200")
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="unknown \\['top-2'\\]"):
        bench.variant_names("top-1,top-2")


def test_a_run_claims_its_prefix_before_the_shared_stages_are_copied_in(tmp_path):
    """Copied into an unclaimed prefix, the shared datagen and score are artifacts no ownership
    record says are the run's, and its first stage refuses them (mfpo_core.ownership)."""
    from mfpo_core import ownership

    profile = bench.PROFILES["full"]
    layout = bench.Layout(tmp_path)
    runs = bench.plan(profile)
    for part in ("datagen", "score"):
        _fake_stage(layout, runs[0], part)
    other_seed = next(r for r in runs if r.variant.name == "text-dpo" and r.length == runs[0].length)
    runner = bench.start_run(other_seed, runs, profile, layout, evaluate_base=False)
    run_uri = layout.run_uri(other_seed)
    assert storage.list_files(storage.join(run_uri, "score"))
    # What the run's first stage does with its prefix (mfpo_runtime.stage): it is the run's own.
    ownership.claim(run_uri, runner.owner, ["datagen", "score"])


def test_finished_runs_are_never_run_again(tmp_path, monkeypatch, capsys):
    profile = bench.PROFILES["smoke"]
    layout = bench.Layout(tmp_path)
    runs = bench.plan(profile)
    for run in runs:
        storage.write_json({"metrics": {}}, layout.result(run))

    def refuse(*_args, **_kwargs):  # a stand-in runner: any call is a failure
        raise AssertionError("a finished run was started again")

    monkeypatch.setattr(bench, "LocalRunner", refuse)
    assert bench.run_all(runs, profile, layout, bench.Ledger())
    assert capsys.readouterr().out.count("done earlier") == len(runs)


@pytest.mark.parametrize("profile", sorted(bench.PROFILES))
def test_profiles_plan_valid_names(profile, tmp_path):
    for run in bench.plan(bench.PROFILES[profile]):
        bench.manifest(run, bench.PROFILES[profile], bench.Layout(tmp_path), evaluate_base=True)


@pytest.mark.parametrize(("second_chair", "code"), [(0.25, 0), (0.2500001, 1)])
def test_repeat_compares_every_metric_exactly(tmp_path, monkeypatch, capsys, second_chair, code):
    """--repeat runs a finished run again under `<name>-repeat` and fails on any differing digit.
    The runner is a stand-in (a test double) that writes the repeat's evaluation result."""
    profile = bench.PROFILES["smoke"]
    layout = bench.Layout(tmp_path)
    run = bench.plan(profile)[0]
    storage.write_json({"metrics": {"chair_s": 0.25, "recall": 0.5}}, layout.result(run))
    started = []

    class StandInRunner:
        def __init__(self, manifest, progress):
            started.append(manifest.metadata.name)

        def run(self):
            uri = bench.eval_result_uri(storage.join(layout.artifacts, started[-1]), run.policy, "synthetic")
            storage.write_json({"metrics": {"chair_s": second_chair, "recall": 0.5}}, uri)
            return type("Status", (), {"phase": "Succeeded"})()

    monkeypatch.setattr(bench, "LocalRunner", StandInRunner)
    assert bench.repeat(run.name, bench.plan(profile), profile, layout) == code
    assert started == [f"{run.name}-repeat"]
    out = capsys.readouterr().out
    assert (f"{code} differ" in out) and (("chair_s" in out) == bool(code))


def test_repeat_of_an_unfinished_run_is_refused(tmp_path, capsys):
    profile = bench.PROFILES["smoke"]
    run = bench.plan(profile)[0]
    assert bench.repeat(run.name, bench.plan(profile), profile, bench.Layout(tmp_path)) == 2
    assert "has not finished" in capsys.readouterr().err
    assert bench.repeat("no-such-run", bench.plan(profile), profile, bench.Layout(tmp_path)) == 2


def test_matched_recall_at_the_far_end_and_midway():
    """Two traced frontiers from the base model (recall 0.9, CHAIRs 0.5): MFPO down to recall
    0.5, text-only DPO only to 0.7. The far end is 0.7 (the lowest both reach), midway 0.8;
    each value is the linear interpolation on the path, and draws that do not reach are counted."""
    import numpy as np
    from ablation_report import matched

    def point(recall, chair):  # the point estimate and two bootstrap draws
        return {"recall": np.array(recall), "chair_s": np.array(chair), "chair_i": np.array(chair) / 2}

    base = point([0.9, 0.9, 0.9], [0.5, 0.5, 0.5])
    curves = {
        ("mfpo", 1e-4): point([0.7, 0.7, 0.7], [0.3, 0.3, 0.3]),
        ("mfpo", 1e-3): point([0.5, 0.5, 0.5], [0.1, 0.1, 0.1]),
        ("text-dpo", 1e-4): point([0.8, 0.8, 0.8], [0.45, 0.45, 0.45]),
        ("text-dpo", 1e-3): point([0.7, 0.75, 0.7], [0.4, 0.4, 0.4]),  # one draw stops at 0.75
    }
    lowest, midway = matched(curves, base, bench.PROFILES["full"])
    assert (lowest["where"], midway["where"]) == ("lowest", "midway")
    assert lowest["recall"] == pytest.approx(0.7) and midway["recall"] == pytest.approx(0.8)
    rows = {r["variant"]: r for r in lowest["rows"]}
    assert rows["mfpo"]["chair_s"] == pytest.approx(0.3) and rows["text-dpo"]["chair_s"] == pytest.approx(0.4)
    assert rows["text-dpo"]["delta_chair_s"] == pytest.approx(0.1)
    assert rows["mfpo"]["reached"] == 1.0 and rows["text-dpo"]["reached"] == 0.5
    rows = {r["variant"]: r for r in midway["rows"]}
    assert rows["mfpo"]["chair_s"] == pytest.approx(0.4)  # halfway from (0.9, 0.5) to (0.7, 0.3)
    assert rows["text-dpo"]["chair_s"] == pytest.approx(0.45)


def test_answers_that_name_nothing_are_counted_by_kind():
    """Silent answers at MFPO's rate, over seeds: degenerate ones by eval.scores.degeneracy, those
    that stop after a template's opening words, the most frequent first."""
    from ablation_report import _grouped, silent_answers

    profile = bench.PROFILES["full"]
    runs = [r for r in bench.plan(profile) if r.variant.name == "mfpo" and r.lr == profile.mfpo_lr
            and r.length == "default"]  # fmt: skip

    def sample(answer, mentioned=()):
        return {"split": "eval", "answer": answer, "mentioned": list(mentioned)}

    docs = {run.name: {"samples": [sample("The image shows."), sample("There are a sun.", ["sun"]),
                                   sample("the the the the"), sample("There is nothing here."),
                                   sample("There.."), {**sample("x"), "split": "eval-counterprior"}]}
            for run in runs}  # fmt: skip
    (row,) = silent_answers(_grouped(runs), docs, "eval", profile)
    assert (row["answers"], row["silent"], row["degenerate"], row["template_only"]) == (15, 12, 3, 6)
    assert row["examples"][0] == ("The image shows.", 3)


def test_opening_words_only():
    from ablation_report import opening_words_only

    for answer in ("There.", "There..", "The image shows.", "The objects are.", " I can see ."):
        assert opening_words_only(answer), answer
    for answer in ("There is nothing here.", "The image shows a sun.", "The.image.", "", "."):
        assert not opening_words_only(answer), answer


def test_a_variant_with_unfinished_seeds_has_no_silent_row():
    """An interrupted benchmark: a variant with 2 of 3 seeds finished is left out of the silent
    answers' table (its counts would be over fewer answers than the others')."""
    from ablation_report import _grouped, silent_answers

    profile = bench.PROFILES["full"]
    runs = [r for r in bench.plan(profile) if r.variant.name == "mfpo" and r.lr == profile.mfpo_lr
            and r.length == "default"][:2]  # fmt: skip
    docs = {run.name: {"samples": [{"split": "eval", "answer": "There.", "mentioned": []}]} for run in runs}
    assert silent_answers(_grouped(runs), docs, "eval", profile) == []


def test_the_report_header_names_missing_runs_and_unknown_time():
    from ablation_report import _missing, _took

    runs = bench.plan(bench.PROFILES["smoke"])
    docs = {runs[0].name: {}}
    assert _missing(runs, docs) == f" (missing: {', '.join(r.name for r in runs[1:])})"
    assert _missing(runs[:1], docs) == ""
    assert _took({"seconds_total": None}) == "run time not recorded (tables made with --report-only)"
    assert _took({"seconds_total": 90.0}) == "1.5 min this session"


def test_what_each_m_prime_removes_is_read_from_the_training_records(tmp_path):
    """names_nothing's table of m' recipes: keywords naming every object of the scene, and where
    the random region went (one box per keyword when moved whole, one box for the blob)."""
    from mfpo_core.contract import shard_uri
    from mfpo_runtime.data.records import PreferenceRecord, write_records
    from names_nothing import what_m_prime_removes

    profile = bench.PROFILES["full"]
    layout = bench.Layout(tmp_path)
    runs = {r.variant.name: r for r in bench.plan(profile) if r.length == "default" and r.seed == 0}

    def record(i, objects, keywords, regions, overlap=None):
        return PreferenceRecord(id=f"r{i}", question="q", image="x.png", chosen="c", rejected="r",
                                objects=objects, keywords=keywords, regions=regions, region_overlap=overlap)  # fmt: skip

    box = [0, 0, 1, 1]
    write_records([record(0, ["sun", "cup"], ["sun", "cup"], [box, box]), record(1, ["sun", "cup", "car"], ["sun"], [box])],
                  storage.local_path(shard_uri(layout.run_uri(runs["mfpo"]), 0, 1)) / "dataset")  # fmt: skip
    write_records([record(0, ["sun", "cup"], ["sun", "cup"], [box, box], 0.0),
                   record(1, ["sun", "cup"], ["sun", "cup"], [box], 0.25)],
                  storage.local_path(shard_uri(layout.run_uri(runs["random-region"]), 0, 1)) / "dataset")  # fmt: skip
    removes = what_m_prime_removes(profile, layout)["default"]
    assert set(removes) == {"keyword", "random-region"}  # the other recipes have no records here
    keyword = removes["keyword"]
    assert (keyword["records"], keyword["every_object"], keyword["keywords"], keyword["objects"]) == (2, 0.5, 1.5, 2.5)
    random = removes["random-region"]
    assert (random["overlapping"], random["moved_whole"], random["several_keywords"]) == (1, 1, 2)
