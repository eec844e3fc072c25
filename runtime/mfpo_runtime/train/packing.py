"""Prefix sharing for the MFPO triple: 3B sequences scored in 2B rows.

Each sample needs (y_w | t, m), (y_l | t, m) and (y_w | t, m'). The first two share the image m
and the prompt t, the prefix that dominates a row (LLaVA-1.5: 576 image tokens and a short
prompt against ~40 answer tokens). `pack_triples` lays them out as

    row i       [ prefix(m, t) | y_w | y_l | pad ]
    row B + i   [ prefix(m', t) | y_w | pad ]

and `packed_triple_logps` runs them with a block attention mask: y_l attends to the prefix and
to itself, never to y_w, and its position ids restart where y_w's start. Each answer's
log-probs therefore equal the unpacked ones (tests hold this to 1e-5 for LLaVA, LLaVA-NeXT and
Qwen2-VL, with padding and B > 1). The step costs about 2 prefixes + 3 answers where scoring
the three rows apart costs 3 + 3; TRL's DPO costs 2 + 2.

transformers passes a 4-D mask to the attention as it is (masking_utils: "If the mask is already
4D, simply return as-is"), so this works with the SDPA and eager attentions; flash-attention-2
takes no such mask. Why not a KV cache of the prefix: backward through a cache expanded to two
continuations works but needs per-family cache and rope-delta handling (Qwen2-VL); the block
mask needs only the positions, which `models.layout.row_positions` knows per family.

Called by `train.logprobs` (the trainer, the reference) and `train.data.collate`, which packs on the CPU.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from mfpo_runtime.models.layout import image_rows, row_positions

PAD, PREFIX, CHOSEN, REJECTED = -1, 0, 1, 2  # values of "segment_ids"
# Keys a packed batch carries beside the model inputs.
PACKED_KEYS = frozenset({"segment_ids", "answer_sources", "answer_targets", "answer_slots", "ref_logps"})
_TOKEN_KEYS = ("input_ids", "mm_token_type_ids", "token_type_ids")  # one value per token


def _answer_span(response: torch.Tensor, row: int) -> tuple[int, int]:
    positions = response.nonzero().flatten()
    if positions.numel() == 0:
        raise ValueError(f"row {row} of the triple batch has no answer token")
    return int(positions[0]), int(positions[-1]) + 1


def _layout(batch: dict[str, torch.Tensor]) -> list[list[tuple[int, int, int, int]]]:
    """Per packed row, its pieces: (row of the triple batch, start, end, segment)."""
    ids, response = batch["input_ids"], batch["response_mask"].bool()
    if ids.size(0) % 3:
        raise ValueError(f"a triple batch has 3B rows, got {ids.size(0)}")
    b = ids.size(0) // 3
    rows = []
    for i in range(b):
        start, end = _answer_span(response[i], i)
        r_start, r_end = _answer_span(response[b + i], b + i)
        if r_start != start or not torch.equal(ids[i, :start], ids[b + i, :r_start]):
            raise ValueError(f"sample {i}: its chosen and rejected rows do not share prompt and image")
        rows.append([(i, 0, start, PREFIX), (i, start, end, CHOSEN), (b + i, r_start, r_end, REJECTED)])
    for i in range(2 * b, 3 * b):
        start, end = _answer_span(response[i], i)
        rows.append([(i, 0, start, PREFIX), (i, start, end, CHOSEN)])
    return rows


def pack_triples(batch: dict[str, torch.Tensor], pad_id: int) -> dict[str, torch.Tensor]:
    """Pack a right-padded triple batch (3B rows [y_w|m, y_l|m, y_w|m'], from `models.encode`)
    into 2B rows. Besides the token inputs and the 2B images it carries:

    segment_ids     (2B, T) PREFIX / CHOSEN / REJECTED / PAD per position
    answer_sources  (N,)    flat index (row * T + position) of the hidden state predicting each answer token
    answer_targets  (N,)    that answer token
    answer_slots    (N,)    the triple-batch row it belongs to (0..3B-1), for summing
    """
    layout = _layout(batch)
    width = max(sum(end - start for _, start, end, _ in row) for row in layout)
    keys = [k for k in _TOKEN_KEYS if k in batch]
    out = {k: torch.full((len(layout), width), pad_id if k == "input_ids" else 0, dtype=batch[k].dtype) for k in keys}
    segments = torch.full((len(layout), width), PAD, dtype=torch.int8)
    sources, targets, slots = [], [], []
    for packed_row, pieces in enumerate(layout):
        cursor, prefix_end = 0, 0
        for row, start, end, segment in pieces:
            length = end - start
            for k in keys:
                out[k][packed_row, cursor : cursor + length] = batch[k][row, start:end]
            segments[packed_row, cursor : cursor + length] = segment
            if segment == PREFIX:
                prefix_end = length
            else:
                here = torch.arange(cursor, cursor + length)
                before = here - 1
                before[0] = prefix_end - 1  # an answer's first token is predicted from the prefix's last
                sources.append(packed_row * width + before)
                targets.append(batch["input_ids"][row, start:end])
                slots.append(torch.full((length,), row))
            cursor += length
    b = len(layout) // 2
    out.update(image_rows(batch, list(range(b)) + list(range(2 * b, 3 * b))))
    out["segment_ids"] = segments
    out["answer_sources"] = torch.cat(sources)
    out["answer_targets"] = torch.cat(targets)
    out["answer_slots"] = torch.cat(slots)
    if "ref_logps" in batch:
        out["ref_logps"] = batch["ref_logps"]
    return out


def block_causal_mask(segments: torch.Tensor) -> torch.Tensor:
    """(R, 1, T, T) boolean: causal, and an answer attends to the prefix and to itself only.
    A padding position attends to itself alone (no row of the softmax is empty)."""
    seg_q, seg_k = segments.unsqueeze(2), segments.unsqueeze(1)  # (R, T, 1), (R, 1, T)
    width = segments.size(1)
    causal = torch.ones(width, width, dtype=torch.bool, device=segments.device).tril()
    same_or_prefix = (seg_k == PREFIX) | (seg_k == seg_q)
    mask = causal & same_or_prefix & (seg_k != PAD) & (seg_q != PAD)
    mask |= torch.eye(width, dtype=torch.bool, device=segments.device)
    return mask.unsqueeze(1)


def packed_positions(lm: nn.Module, inputs: dict[str, torch.Tensor], segments: torch.Tensor) -> torch.Tensor:
    """The family's positions of each packed row, with y_l restarting where y_w starts."""
    positions = row_positions(lm, inputs, segments != PAD)  # (R, T) or (3, R, T)
    rejected = segments == REJECTED
    first_answer = (segments == PREFIX).sum(dim=1, keepdim=True)  # (R, 1): y_w's first index
    start = positions.gather(-1, first_answer.expand(*positions.shape[:-1], 1))  # (..., R, 1)
    restarted = start + (rejected.long().cumsum(dim=1) - 1)
    return torch.where(rejected, restarted, positions)


def packed_triple_logps(lm: nn.Module, packed: dict[str, torch.Tensor], mm_encoder_outputs: dict | None) -> torch.Tensor:
    """Summed answer log-probs of the 3B sequences of a packed batch, in triple-batch order: (3B,).
    `lm` is the *ForConditionalGeneration module (LoRA layers in it), unwrapped from peft/DeepSpeed.

    The two halves of the batch run as two forwards, each cut to its own longest row: the m'
    rows carry one answer where the shared rows carry two, so one forward over all 2B rows would
    pad every m' row by a whole answer (~6% more positions at LLaVA's shape); their graphs join
    at the LM head and the loss, so backward is still one pass.
    """
    segments = packed["segment_ids"]
    rows, width = segments.shape
    sources = packed["answer_sources"]
    source_rows, source_columns = sources // width, sources % width
    hidden, targets, slots = [], [], []
    for group in (range(rows // 2), range(rows // 2, rows)):
        in_group = (source_rows >= group.start) & (source_rows < group.stop)
        group_hidden = _group_hidden(lm, packed, mm_encoder_outputs, group)  # (B, T_group, H)
        hidden.append(group_hidden[source_rows[in_group] - group.start, source_columns[in_group]])
        targets.append(packed["answer_targets"][in_group])
        slots.append(packed["answer_slots"][in_group])
    logits = lm.lm_head(torch.cat(hidden)).float()  # (N, V): the LM head on answer positions only
    token_logps = logits.log_softmax(-1).gather(1, torch.cat(targets).unsqueeze(1)).squeeze(1)
    out = torch.zeros(rows // 2 * 3, dtype=token_logps.dtype, device=token_logps.device)
    return out.index_add(0, torch.cat(slots), token_logps)


def _group_hidden(
    lm: nn.Module, packed: dict[str, torch.Tensor], mm_encoder_outputs: dict | None, group: range
) -> torch.Tensor:
    """Last hidden states of the packed rows in `group`, cut to the group's longest row."""
    segments = packed["segment_ids"][group.start : group.stop]
    width = int((segments != PAD).sum(dim=1).max())
    segments = segments[:, :width]
    inputs = {k: packed[k][group.start : group.stop, :width] for k in _TOKEN_KEYS if k in packed}
    inputs.update(image_rows(packed, list(group)))
    positions = packed_positions(lm, inputs, segments)
    if mm_encoder_outputs is not None:
        inputs.pop("pixel_values")
        inputs["mm_encoder_outputs"] = {
            kind: BaseModelOutputWithPooling(pooler_output=list(out.pooler_output[group.start : group.stop]))
            for kind, out in mm_encoder_outputs.items()
        }
    return lm.model(
        **inputs, attention_mask=block_causal_mask(segments), position_ids=positions, use_cache=False
    ).last_hidden_state
