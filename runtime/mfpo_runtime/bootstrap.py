"""Bootstrap: fine-tune a fresh tiny LLaVA into a captioner of the synthetic world.

MFPO aligns a model that already describes images; no such model can be downloaded here, so
this builds one. A tiny LlavaForConditionalGeneration is built from a config (seeded), fully
fine-tuned on the faithful captions of the world's train split (cross-entropy on the answer
tokens only), measured on the evaluation splits (object recall and CHAIR, greedy decoding),
and published in Hugging Face format (model + processor + `bootstrap.json` with the figures)
at any storage URI with `storage.publish_dir`.

The world's language priors (partners seen together 88% of the time) make the captioner name
an object's usual partner in counter-prior scenes: that is the hallucination alignment fixes.

    python -m mfpo_runtime.bootstrap --world URI --out URI --seed 0 [--steps N]

Called by the `mfpo` CLI (`main(argv)`), the demo and the tests (a seconds-long reduced run).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from mfpo_core import storage
from transformers import get_cosine_schedule_with_warmup

from mfpo_runtime.data.images import decode as decode_image
from mfpo_runtime.data.records import DatasetError, read_manifest, read_records
from mfpo_runtime.data.scenes import PARTNERS, lonely_objects
from mfpo_runtime.determinism import deterministic, environment
from mfpo_runtime.models import LoadedVLM, TinySize, build_tiny, encode, generate
from mfpo_runtime.progress import progress_bar

log = logging.getLogger("mfpo.bootstrap")

RESULT_FILE = "bootstrap.json"
EVAL_SPLITS = ("eval", "eval-counterprior")


@dataclass(frozen=True)
class BootstrapConfig:
    """Everything that decides the captioner; the same config and seed give the same weights."""

    world: str
    out: str
    seed: int = 0
    steps: int = 900
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 25
    weight_decay: float = 0.0
    max_records: int | None = None  # use at most this many training captions
    eval_samples: int = 100  # per evaluation split; 0 skips the measurement
    max_new_tokens: int = 24
    # The model's widths and depths; its image and patch sizes follow the world's images.
    size: TinySize = field(default_factory=lambda: TinySize(vision_hidden=64, text_hidden=128))
    # Patches per image side: 4 gives 16 image tokens, one 2x2 block per object cell of the
    # world's 2x2 layout, and keeps sequences short (the step time is per token on CPU).
    patches_per_side: int = 4
    # Intra-op threads for training and measurement (deterministic algorithms on): the same
    # seed gives the same weights on any machine at the same count. None: this process's count.
    threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.eval_samples < 0:
            raise ValueError(f"eval_samples must be >= 0, got {self.eval_samples}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


@dataclass
class CaptionData:
    """The training captions, encoded once: right-padded token rows and pixel values."""

    batch: dict[str, torch.Tensor]  # input_ids/attention_mask/response_mask (N, T), pixel_values

    def __len__(self) -> int:
        return self.batch["input_ids"].shape[0]

    def rows(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """A minibatch, trimmed to its longest row."""
        length = int(self.batch["attention_mask"][index].sum(dim=1).max())
        return {
            k: v[index, :length]
            if k in ("input_ids", "attention_mask", "response_mask")
            else v[index]
            for k, v in self.batch.items()
        }


# ---------------------------------------------------------------------------- data


def split_uri(world: str, split: str) -> str:
    return storage.join(world, split)


def load_split(world: str, split: str, limit: int | None = None):
    """(records, RGB images) of one split of a world written by `mfpo_runtime.data.scenes`."""
    uri = split_uri(world, split)
    try:
        root = storage.materialize(uri)
        records = read_records(root)
    except (storage.StorageError, DatasetError) as err:
        raise ValueError(f"{uri}: not a split of a synthetic world ({err})") from err
    records = records[:limit] if limit else records
    images = [decode_image(root / r.image, f"{uri}/{r.image}") for r in records]
    return records, images, read_manifest(root)


def encode_captions(processor, records, images, chunk: int = 256) -> CaptionData:
    """Encode (question, image, faithful caption) rows in chunks and pad them to one width."""
    parts = []
    for start in range(0, len(records), chunk):
        rows = records[start : start + chunk]
        parts.append(
            encode(processor, "llava", [r.question for r in rows], images[start : start + chunk],
                   [r.chosen for r in rows])
        )  # fmt: skip
    width = max(p["input_ids"].shape[1] for p in parts)
    pad = processor.tokenizer.pad_token_id

    def widen(t: torch.Tensor, value) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    batch = {
        "input_ids": torch.cat([widen(p["input_ids"], pad) for p in parts]),
        "attention_mask": torch.cat([widen(p["attention_mask"], 0) for p in parts]),
        "response_mask": torch.cat([widen(p["response_mask"], False) for p in parts]),
        "pixel_values": torch.cat([p["pixel_values"] for p in parts]),
    }
    return CaptionData(batch)


# -------------------------------------------------------------------------- training


def caption_loss(model, rows: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens (prompt, image and padding ignored)."""
    labels = rows["input_ids"].masked_fill(~rows["response_mask"], -100)  # (B, T)
    out = model(
        input_ids=rows["input_ids"],
        attention_mask=rows["attention_mask"],
        pixel_values=rows["pixel_values"],
        labels=labels,
    )
    return out.loss


def train(
    model, data: CaptionData, config: BootstrapConfig, *, progress: bool = True
) -> list[float]:
    """Full fine-tune with AdamW and a cosine schedule; returns the loss of every step."""
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    # A reduced run (tests, smoke checks) warms up for at most a tenth of its steps.
    warmup = min(config.warmup_steps, config.steps // 10)
    schedule = get_cosine_schedule_with_warmup(optimizer, warmup, config.steps)
    order = _batch_order(len(data), config)
    model.train()
    losses = []
    bar = progress_bar(total=config.steps, desc="bootstrap", unit="step", enabled=progress)
    for step in range(config.steps):
        loss = caption_loss(model, data.rows(order[step]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        bar.update(1)
    bar.close()
    model.eval()
    return losses


def _batch_order(count: int, config: BootstrapConfig) -> list[torch.Tensor]:
    """Shuffled epochs cut into minibatches, from the seed alone."""
    generator = torch.Generator().manual_seed(config.seed)
    size = min(config.batch_size, count)
    batches: list[torch.Tensor] = []
    while len(batches) < config.steps:
        epoch = torch.randperm(count, generator=generator)
        batches += [epoch[i : i + size] for i in range(0, count - size + 1, size)]
    return batches[: config.steps]


# ----------------------------------------------------------------------- measurement


def greedy_captions(vlm: LoadedVLM, records, images, *, max_new_tokens: int, batch_size: int = 50):
    """The captioner's greedy answer to each record's question about the given image."""
    answers: list[str] = []
    for start in range(0, len(records), batch_size):
        rows = records[start : start + batch_size]
        answers += generate(vlm, [r.question for r in rows], images[start : start + batch_size],
                            max_new_tokens=max_new_tokens)  # fmt: skip
    return answers


def score_captions(answers: Sequence[str], records) -> dict:
    """Object recall and CHAIR against the exact ground truth, the well-formed rate, and the
    partner-hallucination rate: among scenes with an object whose usual partner is absent,
    the share of answers that name such a missing partner (the prior-driven hallucination)."""
    from mfpo_runtime.data.mentions import synthetic_extractor
    from mfpo_runtime.eval.scores import chair, chair_sample, degeneracy, ratio

    extractor = synthetic_extractor()
    truths = [set(r.objects or []) for r in records]
    mentions = [extractor.mentions(a) for a in answers]
    result = chair([chair_sample(m, t, a) for m, t, a in zip(mentions, truths, answers)], truths)
    result["well_formed"] = ratio(sum(degeneracy(a) is None for a in answers), len(answers))
    missing = [{PARTNERS[n] for n in lonely_objects(sorted(t))} for t in truths]
    with_missing = [(set(m), p) for m, p in zip(mentions, missing) if p]
    result["partner_hallucination"] = ratio(
        sum(bool(m & p) for m, p in with_missing), len(with_missing)
    )
    result["examples"] = [
        {"objects": r.objects, "answer": a} for r, a in zip(records[:5], answers[:5])
    ]
    return result


def measure(vlm: LoadedVLM, config: BootstrapConfig) -> dict[str, dict]:
    """Scores on each evaluation split, and on the eval split with every image swapped for
    the next scene's: the blind baseline that "recall far above chance" is measured against."""
    figures = {}
    for split in EVAL_SPLITS:
        if not storage.exists(storage.join(split_uri(config.world, split), "records.jsonl")):
            continue
        records, images, _ = load_split(config.world, split, config.eval_samples)
        answers = greedy_captions(vlm, records, images, max_new_tokens=config.max_new_tokens)
        figures[split] = score_captions(answers, records)
        if split == "eval" and len(records) > 1:
            swapped = images[1:] + images[:1]
            answers = greedy_captions(vlm, records, swapped, max_new_tokens=config.max_new_tokens)
            figures["eval-swapped-images"] = score_captions(answers, records)
    return figures


# --------------------------------------------------------------------------- command


def bootstrap(config: BootstrapConfig, *, progress: bool = True) -> dict:
    """Build, fine-tune, measure and publish the captioner; returns the `bootstrap.json` doc."""
    with deterministic(config.threads or torch.get_num_threads()):
        return _bootstrap(config, progress=progress)


def _bootstrap(config: BootstrapConfig, *, progress: bool) -> dict:
    started = time.monotonic()
    records, images, manifest = load_split(config.world, "train", config.max_records)
    if not records:
        raise ValueError(f"{split_uri(config.world, 'train')}: the train split is empty")
    size = model_size(config, manifest.get("image_size", images[0].width))
    model, processor = build_tiny("llava", seed=config.seed, size=size)
    torch.manual_seed(config.seed)
    data = encode_captions(processor, records, images)
    losses = train(model, data, config, progress=progress)
    vlm = LoadedVLM(model, processor, "llava")
    figures = measure(vlm, config) if config.eval_samples else {}
    doc = {
        "config": {**asdict(config), "size": asdict(size)},
        "records": len(records),
        "parameters": sum(p.numel() for p in model.parameters()),
        "loss": {"first": losses[0], "last": _mean(losses[-10:])},
        "seconds": round(time.monotonic() - started, 1),
        "figures": figures,
        "environment": environment(),
    }
    with tempfile.TemporaryDirectory(prefix="mfpo-bootstrap-") as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        storage.write_json(doc, str(Path(tmp) / RESULT_FILE))
        storage.publish_dir(tmp, config.out)
    return doc


def model_size(config: BootstrapConfig, image_size: int) -> TinySize:
    """The configured size with the world's image size and a patch giving the patch grid."""
    if image_size % config.patches_per_side:
        raise ValueError(
            f"world image size {image_size} is not divisible by patches_per_side {config.patches_per_side}"
        )
    patch = image_size // config.patches_per_side
    return TinySize(**{**asdict(config.size), "image_size": image_size, "patch_size": patch})


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def summary_lines(doc: dict) -> list[str]:
    trained = (
        f"trained {doc['parameters']:,} parameters on {doc['records']} captions in "
        f"{doc['seconds']} s; loss {doc['loss']['first']:.3f} -> {doc['loss']['last']:.3f}"
    )
    lines = [trained]
    for split, f in doc["figures"].items():
        lines.append(
            f"{split}: recall {f['recall']:.3f}  CHAIRs {f['chair_s']:.3f}  CHAIRi {f['chair_i']:.3f}  "
            f"partner hallucination {f['partner_hallucination']:.3f}  well-formed {f['well_formed']:.2f}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mfpo_runtime.bootstrap",
        description="Fine-tune a tiny LLaVA into a captioner of the synthetic world.",
    )
    parser.add_argument(
        "--world", required=True, help="URI of a world written by mfpo_runtime.data.scenes"
    )
    parser.add_argument(
        "--out", required=True, help="storage URI for the model (Hugging Face format)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=BootstrapConfig.steps)
    parser.add_argument("--batch-size", type=int, default=BootstrapConfig.batch_size)
    parser.add_argument("--lr", type=float, default=BootstrapConfig.lr)
    parser.add_argument("--max-records", type=int, default=None)
    parser.add_argument(
        "--eval-samples",
        type=int,
        default=BootstrapConfig.eval_samples,
        help="captions measured per evaluation split (0: skip)",
    )
    parser.add_argument("--text-hidden", type=int, default=None, help="language model width")
    parser.add_argument("--vision-hidden", type=int, default=None, help="vision tower width")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads (default: torch's); the same count gives the same weights",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    default = BootstrapConfig(world=args.world, out=args.out).size
    try:
        size = TinySize(**{
            **asdict(default),
            "text_hidden": args.text_hidden or default.text_hidden,
            "vision_hidden": args.vision_hidden or default.vision_hidden,
        })  # fmt: skip
        config = BootstrapConfig(
            world=args.world, out=args.out, seed=args.seed, steps=args.steps,
            batch_size=args.batch_size, lr=args.lr, max_records=args.max_records,
            eval_samples=args.eval_samples, size=size, threads=args.threads,
        )  # fmt: skip
        doc = bootstrap(config, progress=not args.no_progress)
    except (ValueError, storage.StorageError) as err:
        print(f"bootstrap: {err}", file=sys.stderr)
        return 2
    for line in summary_lines(doc):
        log.info(line)
    log.info("captioner published at %s", config.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
