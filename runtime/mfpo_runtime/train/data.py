"""Training samples of an align stage: reading a curriculum bin, the data order, and batches.

A sample is one `PreferenceRecord` with an original and a perturbed image. The data order is a
seeded permutation per epoch, addressed by the global sample counter `samples_seen`, so a
resumed stage continues with exactly the samples an uninterrupted one would have used.
Batches are triple batches (`logprobs.triple_texts_and_images`) encoded by
`mfpo_runtime.models.encode`, plus the records' `ref_logps` when precomputed.

Called by the align stage (loading) and the trainer (order, batches).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from mfpo_core import storage
from mfpo_core.contract import BadInput
from PIL import Image

from mfpo_runtime.data import images
from mfpo_runtime.data.records import DatasetError, PreferenceRecord, read_records
from mfpo_runtime.train.logprobs import triple_texts_and_images
from mfpo_runtime.train.packing import pack_triples
from mfpo_runtime.train.reference import as_batch_tensor


@dataclass(frozen=True)
class TrainingSet:
    """The records of one curriculum bin and the directory their image paths are relative to."""

    root: Path
    records: list[PreferenceRecord]

    def __len__(self) -> int:
        return len(self.records)


def load_bin(dataset_dir: str | Path, bin_index: int) -> TrainingSet:
    """Records with `bin == bin_index`, checked for what training needs (BadInput names the record)."""
    root = Path(dataset_dir)
    try:
        records = read_records(root)
    except DatasetError as err:
        raise BadInput(str(err)) from err
    chosen = [r for r in records if r.bin == bin_index]
    for record in chosen:
        missing = [f for f in ("chosen", "rejected", "perturbed_image") if not getattr(record, f)]
        if missing:
            raise BadInput(f"{root}: record {record.id} has no {', '.join(missing)}; align needs them")
    if not chosen:
        bins = sorted({r.bin for r in records if r.bin is not None})
        raise BadInput(f"{root}: no record has bin {bin_index} (bins present: {bins}); run the score stage")
    return TrainingSet(root, chosen)


def open_image(root: Path, ref: str) -> Image.Image:
    """An image by path relative to the dataset root, or by storage URI."""
    try:
        path = storage.materialize(ref) if "://" in ref else root / ref
        return images.decode(path, f"image {ref} (dataset {root})")
    except (storage.StorageError, images.ImageDecodeError) as err:
        raise BadInput(f"cannot open image {ref} (dataset {root}): {err}") from err


def epoch_order(size: int, seed: int, epoch: int) -> list[int]:
    """The permutation of sample indices used in `epoch` (same on every rank and every attempt)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(size, generator=generator).tolist()


def sample_indices(size: int, seed: int, start: int, count: int) -> list[int]:
    """Indices of the global samples start..start+count-1 in the epoch-by-epoch data order."""
    indices, orders = [], {}
    for position in range(start, start + count):
        epoch, offset = divmod(position, size)
        if epoch not in orders:
            orders[epoch] = epoch_order(size, seed, epoch)
        indices.append(orders[epoch][offset])
    return indices


def truncate(batch: dict[str, torch.Tensor], max_length: int, ids: list[str]) -> dict[str, torch.Tensor]:
    """Keep the first `max_length` positions (answers cut at the end); every row keeps an answer token."""
    if batch["input_ids"].size(1) <= max_length:
        return batch
    response = batch["response_mask"][:, :max_length]
    empty = (response.sum(1) == 0).nonzero().flatten().tolist()
    if empty:
        row = empty[0] % len(ids)
        raise BadInput(
            f"record {ids[row]}: prompt and image take more than training.maxLength={max_length} tokens"
        )
    sequence_keys = ("input_ids", "attention_mask", "response_mask", "token_type_ids", "mm_token_type_ids")
    return {k: (v[:, :max_length] if k in sequence_keys else v) for k, v in batch.items()}


def collate(training_set: TrainingSet, indices: list[int], processor, family: str, max_length: int) -> dict:
    """One packed triple batch (3B sequences in 2B rows, `train.packing`) for the records at `indices`."""
    from mfpo_runtime.models import encode  # imported late: models pulls in the processors

    records = [training_set.records[i] for i in indices]
    root = training_set.root
    questions, images, answers = triple_texts_and_images(
        [r.question for r in records],
        [r.chosen for r in records],
        [r.rejected for r in records],
        [open_image(root, r.image) for r in records],
        [open_image(root, r.perturbed_image) for r in records],
    )
    batch = dict(encode(processor, family, questions, images, answers))
    batch = truncate(batch, max_length, [r.id for r in records])
    if all(r.ref_logps for r in records):
        batch["ref_logps"] = as_batch_tensor(r.ref_logps for r in records)
    return pack_triples(batch, processor.tokenizer.pad_token_id)
