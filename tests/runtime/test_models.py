"""Tiny models of the real classes: build, save/reload, prompts, encode, generate, policies."""

from __future__ import annotations

import json

import pytest
import torch
from mfpo_runtime.models import (
    FAMILIES,
    ModelLoadError,
    encode,
    generate,
    load_vlm,
    prompt_text,
    write_policy_manifest,
)
from mfpo_runtime.models.tokenizer import train_tokenizer
from peft import LoraConfig, get_peft_model
from PIL import Image

ALL_FAMILIES = ["llava", "llava-next", "qwen2-vl"]
LORA_REGEX = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)$"  # the API's default


def _forward(vlm, batch):
    inputs = {k: v for k, v in batch.items() if k != "response_mask"}
    with torch.no_grad():
        return vlm.model(**inputs).logits  # (B, T, V)


def test_tokenizer_is_deterministic_and_covers_any_text():
    first, second = train_tokenizer(), train_tokenizer()
    assert first.get_vocab() == second.get_vocab()
    # World words are single tokens; unseen words fall back to bytes, never to <unk>.
    assert first.tokenize(" a sun and an umbrella") == ["Ġa", "Ġsun", "Ġand", "Ġan", "Ġumbrella"]
    text = "Is there a giraffe? Ünïcode ✓"
    ids = first(text, add_special_tokens=False)["input_ids"]
    assert first.unk_token_id not in ids
    assert first.decode(ids) == text


def test_prompt_text_per_family():
    assert (
        prompt_text("llava", "Describe the image.")
        == "USER: <image>\nDescribe the image. ASSISTANT:"
    )
    assert prompt_text("llava-next", " Hi ") == "USER: <image>\nHi ASSISTANT:"
    assert prompt_text("qwen2-vl", "Hi") == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n<|im_start|>assistant\n"
    )
    with pytest.raises(ValueError, match="unknown model family 'blip'"):
        prompt_text("blip", "Hi")


@pytest.mark.parametrize("tiny_model_dir", ALL_FAMILIES, indirect=True)
def test_reload_gives_the_same_model(tiny_model_dir, scene_images):
    first, second = load_vlm(str(tiny_model_dir)), load_vlm(f"file://{tiny_model_dir}")
    assert (
        first.family
        == second.family
        == json.loads((tiny_model_dir / "config.json").read_text())["model_type"].replace("_", "-")
    )
    assert type(first.model) is FAMILIES[first.family].model_class
    batch = encode(
        first.processor,
        first.family,
        ["Describe the image."] * 2,
        scene_images[:2],
        ["I can see a sun."] * 2,
    )
    torch.testing.assert_close(_forward(first, batch), _forward(second, batch))


@pytest.mark.parametrize("tiny_model_dir", ALL_FAMILIES, indirect=True)
def test_response_mask_marks_exactly_the_answer_and_eos(tiny_model_dir, scene_images):
    vlm = load_vlm(str(tiny_model_dir))
    tok = vlm.processor.tokenizer
    answers = ["I can see a sun.", "There are a house, a car and a fish."]
    batch = encode(
        vlm.processor,
        vlm.family,
        ["Describe the image.", "List the objects you can see."],
        scene_images[:2],
        answers,
    )
    mask = batch["response_mask"]  # (B, T)
    eos = FAMILIES[vlm.family].eos_token
    prefix = FAMILIES[vlm.family].answer_prefix
    for row, answer in enumerate(answers):
        answer_tokens = tok.convert_ids_to_tokens(batch["input_ids"][row][mask[row]].tolist())
        assert answer_tokens == tok.tokenize(prefix + answer) + [eos]
        # The answer follows the prompt directly; after it there is only padding.
        positions = mask[row].nonzero().flatten()
        assert positions.tolist() == list(range(positions[0], positions[-1] + 1))
        length = int(batch["attention_mask"][row].sum())
        assert positions[-1] == length - 1
        assert (batch["input_ids"][row][length:] == tok.pad_token_id).all()
    # Hand count for the first answer: I, can, see, a, sun, ".", EOS.
    assert mask[0].sum() == 7
    # No image placeholder token is ever inside the response.
    image_id = tok.convert_tokens_to_ids(FAMILIES[vlm.family].image_token)
    assert not (batch["input_ids"][mask] == image_id).any()


@pytest.mark.parametrize("tiny_model_dir", ALL_FAMILIES, indirect=True)
def test_padding_does_not_change_a_sample(tiny_model_dir, scene_images):
    """Right padding: the short sample's logits are the same alone and in a batch."""
    vlm = load_vlm(str(tiny_model_dir))
    questions = ["Describe the image.", "What objects are in this picture?"]
    answers = ["I can see a sun.", "There are a house, a car, a boat and a fish."]
    batch = encode(vlm.processor, vlm.family, questions, scene_images[:2], answers)
    alone = encode(vlm.processor, vlm.family, questions[:1], scene_images[:1], answers[:1])
    length = alone["input_ids"].shape[1]
    assert batch["input_ids"].shape[1] > length
    torch.testing.assert_close(
        _forward(vlm, batch)[0, :length], _forward(vlm, alone)[0], atol=1e-5, rtol=1e-4
    )


def test_encode_rejects_mismatched_lengths(tiny_vlm, scene_images):
    with pytest.raises(ValueError, match="2 questions but 1 images"):
        encode(tiny_vlm.processor, "llava", ["a?", "b?"], scene_images[:1])
    with pytest.raises(ValueError, match="2 questions but 1 answers"):
        encode(tiny_vlm.processor, "llava", ["a?", "b?"], scene_images[:2], ["x"])


@pytest.mark.parametrize("tiny_model_dir", ALL_FAMILIES, indirect=True)
def test_batched_greedy_generation_matches_one_by_one(tiny_model_dir, scene_images):
    vlm = load_vlm(str(tiny_model_dir))
    questions = ["Describe the image.", "What objects are in this picture?", "Describe the image."]
    batched = generate(vlm, questions, scene_images[:3], max_new_tokens=6)
    single = [
        generate(vlm, [q], [im], max_new_tokens=6)[0] for q, im in zip(questions, scene_images)
    ]
    assert batched == single
    assert all(isinstance(text, str) for text in batched)


def test_sampling_is_reproducible_for_a_seed(tiny_vlm, scene_images):
    args = (["Describe the image."] * 2, scene_images[:2])
    first = generate(tiny_vlm, *args, max_new_tokens=8, do_sample=True, seed=3)
    again = generate(tiny_vlm, *args, max_new_tokens=8, do_sample=True, seed=3)
    other = generate(tiny_vlm, *args, max_new_tokens=8, do_sample=True, seed=4)
    assert first == again
    assert first != other


@pytest.mark.parametrize("tiny_model_dir", ALL_FAMILIES, indirect=True)
def test_default_lora_regex_targets_only_the_language_model(tiny_model_dir):
    vlm = load_vlm(str(tiny_model_dir))
    peft_model = get_peft_model(vlm.model, LoraConfig(r=2, target_modules=LORA_REGEX))
    adapted = {
        name.removesuffix(".lora_A")
        for name, _ in peft_model.named_modules()
        if name.endswith(".lora_A")
    }
    layers = vlm.model.config.text_config.num_hidden_layers
    assert len(adapted) == 4 * layers  # q, k, v, o in every language-model layer
    assert all("language_model" in name for name in adapted)


def test_policy_directory_applies_adapters_in_order(tmp_path, tiny_llava_dir, scene_images):
    base = load_vlm(str(tiny_llava_dir))
    batch = encode(
        base.processor, "llava", ["Describe the image."], scene_images[:1], ["I can see a sun."]
    )
    base_logits = _forward(base, batch)
    adapters, expected = [], None
    for step in range(2):  # two stages' adapters, each trained on top of the previous merge
        model = load_vlm(str(tiny_llava_dir)).model if step == 0 else expected
        torch.manual_seed(step)
        peft_model = get_peft_model(
            model, LoraConfig(r=2, target_modules=LORA_REGEX, init_lora_weights=False)
        )
        peft_model.save_pretrained(tmp_path / f"adapter-{step}")
        adapters.append(f"file://{tmp_path / f'adapter-{step}'}")
        expected = peft_model.merge_and_unload()
    write_policy_manifest(
        tmp_path / "policy", family="llava", base=str(tiny_llava_dir), adapters=adapters
    )
    policy = load_vlm(str(tmp_path / "policy"))
    with torch.no_grad():
        want = expected(**{k: v for k, v in batch.items() if k != "response_mask"}).logits
    torch.testing.assert_close(_forward(policy, batch), want, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(_forward(policy, batch), base_logits)


def test_load_vlm_names_a_bad_uri(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="empty: not a model directory"):
        load_vlm(str(tmp_path / "empty"))
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "mfpo_policy.json").write_text('{"adapters": []}')
    with pytest.raises(ModelLoadError, match="expected"):
        load_vlm(str(tmp_path / "p"))


def test_image_size_must_fit_the_patches(tmp_path):
    from mfpo_runtime.models import build_tiny_model

    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        build_tiny_model("llava", tmp_path, image_size=30)


def test_images_are_converted_to_rgb(tiny_vlm):
    grey = Image.new("L", (32, 32), 128)
    assert generate(tiny_vlm, ["Describe the image."], [grey], max_new_tokens=2)


def test_same_seed_same_initial_weights():
    from mfpo_runtime.models import build_tiny

    first, _ = build_tiny("llava", seed=5)
    torch.manual_seed(123)  # the caller's RNG state must not matter, nor be disturbed
    state = torch.random.get_rng_state()
    second, _ = build_tiny("llava", seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    other, _ = build_tiny("llava", seed=6)
    for name, weight in first.state_dict().items():
        assert torch.equal(weight, second.state_dict()[name])
    assert not all(torch.equal(w, other.state_dict()[n]) for n, w in first.state_dict().items())


def _copy_with(tmp_path, source, name: str, edit) -> str:
    import shutil

    target = tmp_path / name
    shutil.copytree(source, target)
    edit(target)
    return f"file://{target}"


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("truncated-weights", "SafetensorError"),  # was not a bad input: retried
        ("weights-of-other-shapes", "RuntimeError"),  # was not a bad input: retried
        ("no-tokenizer", "ValueError"),
        ("no-weights", "OSError"),
    ],
)
def test_a_directory_transformers_cannot_load_is_bad_input_naming_it(tmp_path, tiny_llava_dir, case, cause):
    """Whatever transformers raises for files it cannot load as the config's class (safetensors'
    SafetensorError for a cut file, RuntimeError for weights of other shapes) is a ModelLoadError:
    bad input, exit 65, naming the URI; no retry can fix a model directory."""
    from mfpo_core.contract import BadInput
    from mfpo_runtime.models import ModelLoadError

    def edit(d):
        weights = d / "model.safetensors"
        if case == "truncated-weights":
            weights.write_bytes(weights.read_bytes()[:5000])
        elif case == "weights-of-other-shapes":
            config = json.loads((d / "config.json").read_text())
            config["text_config"]["intermediate_size"] *= 2
            (d / "config.json").write_text(json.dumps(config))
        elif case == "no-tokenizer":
            (d / "tokenizer.json").unlink()
        else:
            weights.unlink()

    uri = _copy_with(tmp_path, tiny_llava_dir, case, edit)
    with pytest.raises(ModelLoadError) as raised:
        load_vlm(uri)
    assert isinstance(raised.value, BadInput)
    assert str(raised.value).startswith(f"{uri}: cannot be loaded as ")
    assert f": {cause}: " in str(raised.value)


def test_the_model_family_must_be_the_directorys(tiny_llava_dir, tmp_path):
    """model.family names the family whose prompt format, collation and image view the stages
    use; the directory's config.json names what the model is. A mismatch fails at load."""
    from mfpo_runtime.models import ModelLoadError
    from mfpo_runtime.models.io import load_image_processor

    uri = f"file://{tiny_llava_dir}"
    assert load_vlm(uri, family="llava").family == "llava"
    message = rf"{uri} holds a 'llava' model \(its config.json's model_type is 'llava'\), but model.family is 'qwen2-vl'"
    with pytest.raises(ModelLoadError, match=message):
        load_vlm(uri, family="qwen2-vl")
    with pytest.raises(ModelLoadError, match=message):
        load_image_processor(uri, cache_dir=tmp_path, family="qwen2-vl")
