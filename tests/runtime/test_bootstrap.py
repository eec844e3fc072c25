"""The bootstrap command: a reduced run publishes a reloadable, deterministic captioner."""

from __future__ import annotations

import pytest
import torch
from mfpo_core import storage
from mfpo_runtime import bootstrap
from mfpo_runtime.models import TinySize, encode, load_vlm

SMALL = TinySize(vision_hidden=16, text_hidden=32, heads=4)


def _config(world_dir, out, **overrides):
    settings = {"world": str(world_dir), "out": str(out), "steps": 3, "batch_size": 4,
                "eval_samples": 2, "max_new_tokens": 6, "size": SMALL}  # fmt: skip
    return bootstrap.BootstrapConfig(**{**settings, **overrides})


@pytest.mark.slow
def test_reduced_bootstrap_publishes_a_reloadable_captioner(tmp_path, world_dir, scene_images):
    doc = bootstrap.bootstrap(_config(world_dir, tmp_path / "captioner"), progress=False)
    out = str(tmp_path / "captioner")
    assert storage.is_complete(out)
    assert storage.read_json(storage.join(out, bootstrap.RESULT_FILE)) == doc
    assert doc["records"] == 24 and doc["config"]["size"]["image_size"] == 32
    assert doc["config"]["size"]["patch_size"] == 8  # 4 patches per side of a 32 px image
    assert set(doc["figures"]) == {*bootstrap.EVAL_SPLITS, "eval-swapped-images"}
    for split in bootstrap.EVAL_SPLITS:
        figures = doc["figures"][split]
        assert 0.0 <= figures["recall"] <= 1.0 and 0.0 <= figures["chair_s"] <= 1.0
        assert len(figures["examples"]) == 2
    vlm = load_vlm(out)
    assert vlm.family == "llava"
    batch = encode(
        vlm.processor, "llava", ["Describe the image."], scene_images[:1], ["I can see a sun."]
    )
    assert batch["response_mask"].sum() == 7


@pytest.mark.slow
def test_same_seed_same_weights_other_seed_other_weights(tmp_path, world_dir):
    weights = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        bootstrap.bootstrap(
            _config(world_dir, tmp_path / name, seed=seed, eval_samples=0), progress=False
        )
        weights[name] = load_vlm(str(tmp_path / name)).model.state_dict()
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])
    assert not all(torch.equal(weights["a"][k], weights["c"][k]) for k in weights["a"])


@pytest.mark.slow
def test_training_lowers_the_caption_loss(tmp_path, world_dir):
    doc = bootstrap.bootstrap(
        _config(world_dir, tmp_path / "m", steps=40, warmup_steps=2, lr=5e-3, eval_samples=0),
        progress=False,
    )
    assert doc["loss"]["last"] < doc["loss"]["first"] - 2.0  # nats per answer token


def test_batch_order_covers_each_epoch_once():
    config = bootstrap.BootstrapConfig(world="w", out="o", steps=5, batch_size=4, seed=3)
    order = bootstrap._batch_order(10, config)  # 2 full batches per epoch of 10
    assert len(order) == 5 and all(len(b) == 4 for b in order)
    first_epoch = torch.cat(order[:2])
    assert len(set(first_epoch.tolist())) == 8
    assert [b.tolist() for b in order] == [b.tolist() for b in bootstrap._batch_order(10, config)]


def test_model_size_follows_the_world_images():
    config = bootstrap.BootstrapConfig(world="w", out="o")
    assert bootstrap.model_size(config, 48).patch_size == 12
    with pytest.raises(ValueError, match="image size 50 is not divisible by patches_per_side 4"):
        bootstrap.model_size(config, 50)


@pytest.mark.parametrize(
    ("field", "value"), [("steps", 0), ("batch_size", 0), ("lr", 0.0), ("eval_samples", -1)]
)
def test_bad_settings_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        bootstrap.BootstrapConfig(world="w", out="o", **{field: value})


@pytest.mark.slow
def test_cli_runs_and_reports(tmp_path, world_dir, caplog):
    caplog.set_level("INFO", logger="mfpo.bootstrap")
    argv = ["--world", f"file://{world_dir}", "--out", f"file://{tmp_path}/cap", "--steps", "2",
            "--batch-size", "4", "--eval-samples", "0", "--text-hidden", "32", "--vision-hidden", "16",
            "--no-progress"]  # fmt: skip
    assert bootstrap.main(argv) == 0
    assert storage.is_complete(f"file://{tmp_path}/cap")
    assert "captioner published at" in caplog.text


def test_cli_names_a_missing_world(tmp_path, capsys):
    assert bootstrap.main(["--world", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "nowhere/train: not a split of a synthetic world" in capsys.readouterr().err


def test_score_captions_by_hand():
    from mfpo_runtime.data.records import PreferenceRecord

    def record(objects):
        return PreferenceRecord(
            id="r", question="Describe the image.", image="i.png", objects=objects
        )

    records = [record(["sun"]), record(["house", "car"]), record(["kite", "flower"])]
    answers = [
        "I can see a sun and a cloud.",
        "There are a house and a car.",
        "I can see a flower.",
    ]
    scores = bootstrap.score_captions(answers, records)
    assert scores["chair_s"] == pytest.approx(1 / 3)  # one of three naming answers hallucinates
    assert scores["chair_i"] == pytest.approx(1 / 5)  # cloud among 5 mentions
    assert scores["recall"] == pytest.approx(4 / 5)  # sun, house, car, flower of 5 objects
    # Scenes missing a partner: the sun's cloud (named) and the kite's star (not named).
    assert scores["partner_hallucination"] == pytest.approx(1 / 2)
    assert scores["well_formed"] == 1.0


@pytest.mark.slow
def test_fixed_threads_give_the_same_weights_whatever_the_process_runs_on(tmp_path, world_dir):
    """`threads` decides the numbers, not the calling process's thread setting; the result
    records the thread count, deterministic mode and versions, and the setting is restored."""
    weights, docs = {}, {}
    ambient = torch.get_num_threads()
    for name, process_threads in (("a", 1), ("b", 2)):
        torch.set_num_threads(process_threads)
        try:
            docs[name] = bootstrap.bootstrap(
                _config(world_dir, tmp_path / name, eval_samples=0, threads=1, steps=4),
                progress=False,
            )
            assert torch.get_num_threads() == process_threads
        finally:
            torch.set_num_threads(ambient)
        weights[name] = load_vlm(str(tmp_path / name)).model.state_dict()
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])
    env = docs["a"]["environment"]
    assert env["threads"] == 1 and env["deterministic_algorithms"] is True
    assert env["torch"] == torch.__version__ and env["transformers"]
    assert not torch.are_deterministic_algorithms_enabled()
