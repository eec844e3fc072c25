"""Answer log-probs against the plain full-logits computation on a tiny LLaVA."""

import torch
from mfpo_runtime.train.logprobs import (
    TripleLogps,
    image_path_frozen,
    sequence_logps,
    shared_image_features,
    triple_logps,
)
from mfpo_runtime.train.packing import pack_triples
from torch.testing import assert_close


def naive_logps(model, batch):
    """The textbook way: full (B, T, V) logits, shift, gather, mask, sum."""
    inputs = {k: v for k, v in batch.items() if k != "response_mask"}
    logits = model(**inputs).logits[:, :-1].float()  # (B, T-1, V)
    logps = logits.log_softmax(-1).gather(2, batch["input_ids"][:, 1:, None]).squeeze(2)
    return (logps * batch["response_mask"][:, 1:]).sum(1)


def test_matches_full_logits_with_padding(llava, make_batch):
    batch = make_batch([[5, 6, 7], [8]], [[10, 11], [12, 13, 14, 15]])
    got = sequence_logps(llava, batch)
    assert got.shape == (2,)
    assert_close(got, naive_logps(llava, batch))


def test_padding_does_not_change_a_row(llava, make_batch):
    hand_batch = make_batch
    alone = hand_batch([[5, 6, 7]], [[10, 11]])
    padded = hand_batch([[5, 6, 7], [8, 9, 9, 9, 9]], [[10, 11], [12, 13, 14, 15]])
    assert_close(sequence_logps(llava, padded)[:1], sequence_logps(llava, alone), atol=1e-5, rtol=1e-5)


def test_prompt_tokens_are_excluded(llava, make_batch):
    """Moving the answer/prompt boundary by one token moves exactly that token's log-prob."""
    long_answer = make_batch([[5, 6]], [[7, 10, 11]])
    short_answer = make_batch([[5, 6, 7]], [[10, 11]])
    assert torch.equal(long_answer["input_ids"], short_answer["input_ids"])
    only_7 = {**long_answer, "response_mask": long_answer["response_mask"] - short_answer["response_mask"]}
    assert_close(
        sequence_logps(llava, long_answer),
        sequence_logps(llava, short_answer) + sequence_logps(llava, only_7),
    )


def test_triple_split_and_shared_image_features(llava, make_batch):
    # rows [chosen|m, rejected|m, chosen|m'] for B = 2
    prompts = [[5, 6], [7]] * 3
    answers = [[10, 11], [12]] + [[20], [21, 22, 23]] + [[10, 11], [12]]
    batch = make_batch(prompts, answers)
    batch["pixel_values"][2:4] = batch["pixel_values"][0:2]  # rejected rows share m with chosen rows
    assert image_path_frozen(llava) is False  # nothing frozen in a fresh model
    for p in llava.model.vision_tower.parameters():
        p.requires_grad_(False)
    for p in llava.model.multi_modal_projector.parameters():
        p.requires_grad_(False)
    assert image_path_frozen(llava)
    packed = pack_triples(batch, pad_id=0)  # conftest.PAD
    plain = triple_logps(llava, packed)
    shared = triple_logps(llava, packed, shared_image_features(llava, packed))
    assert_close(shared.stacked(), plain.stacked(), atol=1e-5, rtol=1e-5)
    assert_close(plain.stacked().T.flatten(), naive_logps(llava, batch), atol=1e-5, rtol=1e-5)
    assert isinstance(plain, TripleLogps) and plain.perturbed.shape == (2,)
