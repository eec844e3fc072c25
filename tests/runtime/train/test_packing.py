"""Prefix sharing (train.packing): the packed step's log-probs equal scoring the 3B rows apart.

The reference is `sequence_logps` over the unpacked triple batch: every row alone, right-padded,
the way the step scored them before packing (itself held to full-logits in test_logprobs.py).
"""

import pytest
import torch
from mfpo_runtime.models import encode, load_vlm
from mfpo_runtime.train.logprobs import (
    count_tokens,
    sequence_logps,
    shared_image_features,
    triple_logps,
    triple_texts_and_images,
)
from mfpo_runtime.train.packing import (
    CHOSEN,
    PAD,
    PREFIX,
    REJECTED,
    block_causal_mask,
    pack_triples,
)
from torch.testing import assert_close

ALL_FAMILIES = ["llava", "llava-next", "qwen2-vl"]
QUESTIONS = ["Describe the image.", "What objects are in this picture?", "List the objects."]
CHOSEN_ANSWERS = ["I can see a sun.", "There are a house, a car and a fish.", "A boat."]
# Rejected answers longer and shorter than the chosen ones, so that both packed rows and the
# triple batch carry padding.
REJECTED_ANSWERS = ["I can see a sun, a tree, a car, a dog and a cat.", "A house.", "A boat and a fish."]


def triple_batch(vlm, images, perturbed):
    b = len(images)
    args = triple_texts_and_images(QUESTIONS[:b], CHOSEN_ANSWERS[:b], REJECTED_ANSWERS[:b], images, perturbed)
    return encode(vlm.processor, vlm.family, *args)


@pytest.mark.parametrize("tiny_model_dir", ALL_FAMILIES, indirect=True)
def test_packed_logps_equal_unpacked(tiny_model_dir, scene_images):
    vlm = load_vlm(str(tiny_model_dir))
    batch = triple_batch(vlm, scene_images[:3], [scene_images[3]] * 3)
    packed = pack_triples(batch, vlm.processor.tokenizer.pad_token_id)
    assert packed["input_ids"].size(0) == 6  # 2B rows for 3B sequences
    with torch.no_grad():
        unpacked = sequence_logps(vlm.model, batch)
        got = triple_logps(vlm.model, packed).stacked()  # (B, 3)
    assert_close(got, unpacked.view(3, 3).T, atol=1e-5, rtol=1e-5)
    # the same sequences, token for token: counted as 3B rows
    assert count_tokens(packed) == int(batch["attention_mask"].sum())


@pytest.mark.parametrize("tiny_model_dir", ["llava", "qwen2-vl"], indirect=True)
def test_packed_gradients_equal_unpacked(tiny_model_dir, scene_images):
    """The objective's gradient, not only its value, is the one of scoring the rows apart."""
    vlm = load_vlm(str(tiny_model_dir))
    batch = triple_batch(vlm, scene_images[:2], scene_images[2:4])
    packed = pack_triples(batch, vlm.processor.tokenizer.pad_token_id)
    weights = torch.tensor([1.0, -2.0, 0.5])

    def grads(score):
        vlm.model.zero_grad()
        (score() * weights.repeat_interleave(2)).sum().backward()
        return [p.grad.clone() for p in vlm.model.parameters() if p.grad is not None]

    packed_grads = grads(lambda: triple_logps(vlm.model, packed).stacked().T.flatten())
    plain_grads = grads(lambda: sequence_logps(vlm.model, batch))
    assert len(packed_grads) == len(plain_grads) > 0
    for mine, theirs in zip(packed_grads, plain_grads):
        assert_close(mine, theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("tiny_model_dir", ["llava-next"], indirect=True)
def test_shared_image_features_give_the_same_logps(tiny_model_dir, scene_images):
    vlm = load_vlm(str(tiny_model_dir))
    batch = triple_batch(vlm, scene_images[:2], scene_images[2:4])
    packed = pack_triples(batch, vlm.processor.tokenizer.pad_token_id)
    with torch.no_grad():
        plain = triple_logps(vlm.model, packed)
        shared = triple_logps(vlm.model, packed, shared_image_features(vlm.model, packed))
    assert_close(shared.stacked(), plain.stacked(), atol=1e-5, rtol=1e-5)


def test_layout_and_mask_by_hand():
    """Two samples: prompt lengths 2 and 1 (image tokens left out), answers of 1-3 tokens."""
    p0, p1 = [7, 8], [9]
    rows = [p0 + [1, 2], p1 + [3], p0 + [4], p1 + [5, 6, 6], p0 + [1, 2], p1 + [3]]
    answers = [2, 1, 1, 3, 2, 1]
    width = max(map(len, rows))
    ids = torch.zeros(6, width, dtype=torch.long)
    response = torch.zeros(6, width, dtype=torch.bool)
    for i, (row, a) in enumerate(zip(rows, answers)):
        ids[i, : len(row)] = torch.tensor(row)
        response[i, len(row) - a : len(row)] = True
    batch = {"input_ids": ids, "response_mask": response, "pixel_values": torch.arange(6.0).view(6, 1)}
    packed = pack_triples(batch, pad_id=0)
    assert packed["input_ids"][0].tolist() == [7, 8, 1, 2, 4]  # prefix, y_w, y_l
    assert packed["input_ids"][1].tolist() == [9, 3, 5, 6, 6]
    assert packed["segment_ids"][0].tolist() == [PREFIX, PREFIX, CHOSEN, CHOSEN, REJECTED]
    assert packed["segment_ids"][3].tolist() == [PREFIX, CHOSEN, PAD, PAD, PAD]
    assert packed["pixel_values"].flatten().tolist() == [0.0, 1.0, 4.0, 5.0]  # m, m, m', m'
    # (source position, target token, triple row) of row 0's answer tokens: y_l's first token
    # (position 4) is predicted from the prefix's last position (1), not from y_w's last (3)
    triples = zip(packed["answer_sources"].tolist(), packed["answer_targets"].tolist(), packed["answer_slots"].tolist())
    row0 = [(src, tgt, slot) for src, tgt, slot in triples if src < 5]
    assert row0 == [(1, 1, 0), (2, 2, 0), (1, 4, 2)]
    mask = block_causal_mask(packed["segment_ids"])[0, 0]
    assert mask[4].tolist() == [True, True, False, False, True]  # y_l sees the prefix and itself
    assert mask[3].tolist() == [True, True, True, True, False]  # y_w never sees y_l (causal)
    pad_mask = block_causal_mask(packed["segment_ids"])[3, 0]
    assert pad_mask[2].tolist() == [False, False, True, False, False]  # padding: itself only


def test_rows_that_do_not_share_a_prefix_are_refused():
    ids = torch.tensor([[7, 1], [8, 2], [7, 1]])
    response = torch.tensor([[False, True]] * 3)
    with pytest.raises(ValueError, match="sample 0: its chosen and rejected rows do not share"):
        pack_triples({"input_ids": ids, "response_mask": response, "pixel_values": torch.zeros(3, 1)}, 0)
