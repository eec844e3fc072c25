"""How each family lays out a batch: the position ids of its tokens and its image inputs.

The packed MFPO step (`train.packing`) lays two answers after one shared prefix and must give
each answer the positions it would have had alone. It takes the family's own positions of
the packed row and only rewrites the second answer's, so this is the one place that knows how
a family numbers its tokens:

- LLaVA and LLaVA-NeXT (Llama language models): 0, 1, 2, ... along the row, (B, T);
- Qwen2-VL: multimodal RoPE, (3, B, T) from the model's own `get_rope_index` (image tokens get
  temporal/height/width positions, text continues after the image's largest one).

Image inputs: LLaVA takes (B, C, H, W) pixels, LLaVA-NeXT (B, patches, C, H, W) with
`image_sizes`, Qwen2-VL the patches of all images flattened with `image_grid_thw` (B, 3).

Called by `train.packing`, `train.logprobs` and `train.policy`.
"""

from __future__ import annotations

import torch
from torch import nn

# Parameter-name fragments of the image path (vision tower + projector) in the three families.
IMAGE_PATH_MARKERS = ("vision_tower", "multi_modal_projector", "image_newline", "visual.")
# Parameter-name fragments of the vision tower (LLaVA, LLaVA-NeXT: vision_tower; Qwen2-VL:
# visual., its patch merger included): what full fine-tuning freezes, as LLaVA does.
VISION_TOWER_MARKERS = ("vision_tower", "visual.")


def row_positions(lm: nn.Module, inputs: dict[str, torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """Positions of every token of right-padded rows, as the model computes them unpacked.

    `lm` is the *ForConditionalGeneration module, `real` (B, T) marks non-padding tokens.
    Returns (B, T) for 1-D RoPE families, (3, B, T) for Qwen2-VL's multimodal RoPE.
    """
    if "image_grid_thw" in inputs:  # Qwen2-VL
        positions, _ = lm.model.get_rope_index(
            inputs["input_ids"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs["image_grid_thw"],
            attention_mask=real.long(),
        )
        return positions  # (3, B, T)
    rows, width = real.shape
    return torch.arange(width, device=real.device).expand(rows, width)  # (B, T)


def image_rows(batch: dict[str, torch.Tensor], rows: list[int]) -> dict[str, torch.Tensor]:
    """The image inputs of the given rows (one image per row), in the family's layout."""
    pixels = batch["pixel_values"]
    if "image_grid_thw" in batch:  # Qwen2-VL: patches of all images flattened, (sum patches, D)
        grid = batch["image_grid_thw"]  # (B, 3)
        counts = grid.prod(dim=1).tolist()
        starts = [0, *torch.tensor(counts).cumsum(0).tolist()]
        chunks = [pixels[starts[r] : starts[r] + counts[r]] for r in rows]
        return {"pixel_values": torch.cat(chunks), "image_grid_thw": grid[rows]}
    selected = {"pixel_values": pixels[rows]}  # LLaVA (B, C, H, W); LLaVA-NeXT (B, P, C, H, W)
    if "image_sizes" in batch:
        selected["image_sizes"] = batch["image_sizes"][rows]
    return selected
