"""Resumable training checkpoints in storage, published atomically.

Layout under `<stage_uri>/checkpoints/step-XXXXXXXX/` (XXXXXXXX = optimizer steps done):

    state.json          TrainState: step, samples consumed in the data order, epoch ...
    rank-00000/         one folder per process, each published with its own _COMPLETE marker:
      trainable.pt        trainable parameters by name (LoRA adapters, or all for full FT)
      optimizer.pt        optimizer and LR-scheduler state dicts
      rng.pt              torch / numpy / python RNG states
      deepspeed/          with DeepSpeed: the engine's own checkpoint (ZeRO shards) instead
    _COMPLETE           the step's marker, written by rank 0 after every rank's folder

`storage.publish_dir` writes each marker last, so a step whose marker is missing (a kill
mid-upload) is ignored by `latest_step`. The layout and `latest_step` live in the core
(`mfpo_core.checkpoint_layout`: the operator reads them too). Called by the trainer; no
model-specific code here.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from mfpo_core import storage
from mfpo_core.checkpoint_layout import (  # noqa: F401 - re-exported for the trainer and tests
    STEP_DIR,
    checkpoints_uri,
    completed_steps,
    latest_step,
    step_uri,
)
from torch import nn


@dataclass
class TrainState:
    """Where the loop is; enough to continue the same data order and schedule."""

    step: int = 0  # optimizer steps done
    samples_seen: int = 0  # global samples consumed, across epochs (position in the data order)
    total_steps: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainState:
        return cls(**json.loads(text))


# ------------------------------------------------------------------------- RNG


def rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------- save / load


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    unknown = [n for n in state if n not in params]
    if missing or unknown:
        raise ValueError(f"checkpoint does not fit the model: missing {missing[:3]}, unknown {unknown[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def save_rank_files(local: Path, *, model, optimizer, scheduler, engine=None) -> None:
    """This process's part of a checkpoint into a local folder."""
    local.mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(), local / "rng.pt")
    if engine is not None:  # DeepSpeed: weights, ZeRO optimizer shards and scheduler
        engine.save_checkpoint(str(local / "deepspeed"), tag="ckpt", exclude_frozen_parameters=True)
        return
    torch.save(trainable_state(model), local / "trainable.pt")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, local / "optimizer.pt")


def load_rank_files(local: Path, *, model, optimizer, scheduler, engine=None) -> None:
    set_rng_state(torch.load(local / "rng.pt", weights_only=False))
    if engine is not None:
        engine.load_checkpoint(str(local / "deepspeed"), tag="ckpt", load_module_strict=False)
        return
    load_trainable_state(model, torch.load(local / "trainable.pt", weights_only=True))
    opt = torch.load(local / "optimizer.pt", weights_only=False)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])


def publish(
    stage_uri: str,
    state: TrainState,
    local_root: Path,
    *,
    rank: int = 0,
    barrier=lambda: None,
    history: list[dict[str, float]] | None = None,
) -> str:
    """Publish this rank's folder, wait for all ranks, then rank 0 commits the step
    (state.json and the per-step metric history, for the resumed stage's summary)."""
    target = step_uri(stage_uri, state.step)
    storage.publish_dir(local_root / f"rank-{rank:05d}", storage.join(target, f"rank-{rank:05d}"))
    barrier()
    if rank == 0:
        commit = local_root / "commit"
        commit.mkdir(parents=True, exist_ok=True)
        (commit / "state.json").write_text(state.to_json())
        (commit / "history.json").write_text(json.dumps(history or []))
        storage.publish_dir(commit, target)
    barrier()
    return target


def read_history(stage_uri: str, step: int) -> list[dict[str, float]]:
    return storage.read_json(storage.join(step_uri(stage_uri, step), "history.json"))


def fetch(
    stage_uri: str, step: int, local_root: Path, *, rank: int = 0, all_ranks: bool = False
) -> tuple[TrainState, Path]:
    """Download a committed step: its state and the folder holding this rank's files.

    With DeepSpeed (`all_ranks`) every rank's files are merged into one folder (ZeRO reads
    rank 0's model states); otherwise each rank needs only its own.
    """
    target = step_uri(stage_uri, step)
    state = TrainState.from_json(storage.read_text(storage.join(target, "state.json")))
    merged = local_root / "merged"
    ranks = sorted({rel.split("/")[0] for rel in storage.list_files(target) if rel.startswith("rank-")})
    for rank_dir in ranks:
        if rank_dir != f"rank-{rank:05d}" and not all_ranks:
            continue
        staging = local_root / rank_dir
        storage.fetch_dir(storage.join(target, rank_dir), staging)
        shutil.copytree(staging, merged, dirs_exist_ok=True)
    if not (merged / "rng.pt").exists():
        raise storage.StorageError(f"{target} has no files for rank {rank}")
    # rng.pt of this rank wins over the others copied into the merged folder
    shutil.copyfile(local_root / f"rank-{rank:05d}" / "rng.pt", merged / "rng.pt")
    return state, merged


def prune(stage_uri: str, keep: int = 2) -> None:
    """Delete all but the newest `keep` complete checkpoints (and any incomplete older ones)."""
    steps = completed_steps(stage_uri)
    if len(steps) <= keep:
        return
    newest_kept = steps[-keep]
    for rel in {r.split("/")[0] for r in storage.list_files(checkpoints_uri(stage_uri))}:
        match = STEP_DIR.match(rel)
        if match and int(match.group(1)) < newest_kept:
            storage.delete(storage.join(checkpoints_uri(stage_uri), rel))
