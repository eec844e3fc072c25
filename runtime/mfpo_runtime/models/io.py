"""Load and save vision-language models: a Hugging Face directory or a published policy.

A policy directory (what an align stage publishes when it keeps adapters) holds
`mfpo_policy.json` = {"family": ..., "base": "<URI of a HF model dir>", "adapters": [URIs]}:
the base is loaded and each peft adapter applied in order and merged. Every URI is resolved
with `storage.materialize`, so file:// and s3:// both work. Called by every runtime stage.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from mfpo_core import storage
from mfpo_core.contract import BadInput
from transformers import AutoConfig, PreTrainedModel, ProcessorMixin

from mfpo_runtime.models.families import family as family_named
from mfpo_runtime.models.families import family_of_config

POLICY_FILE = "mfpo_policy.json"


class ModelLoadError(BadInput):
    """The URI holds no loadable model; the message names it and what was expected."""


@dataclass
class LoadedVLM:
    model: PreTrainedModel
    processor: ProcessorMixin
    family: str  # "llava", "llava-next" or "qwen2-vl"


def load_vlm(
    uri: str, *, dtype: torch.dtype = torch.float32, device: str = "cpu", family: str | None = None
) -> LoadedVLM:
    """Load a model directory or a policy (base + adapters, merged), in eval mode.

    ModelLoadError (bad input) when the URI holds no model of a supported family, or one of
    another family than `family` (the spec's model.family) when given, or files transformers
    cannot load as that family's model and processor (missing, truncated or of other shapes).
    """
    path = storage.materialize(uri)
    if (path / POLICY_FILE).is_file():
        vlm = _load_policy(uri, path / POLICY_FILE, dtype=dtype, device=device)
    else:
        vlm = _load_hf_dir(uri, path, dtype=dtype, device=device)
    check_family(uri, vlm.family, family)
    return vlm


def check_family(uri: str, found: str, expected: str | None) -> None:
    """ModelLoadError when the model at `uri` is of another family than model.family says."""
    if expected is not None and found != expected:
        raise ModelLoadError(
            f"{uri} holds a {found!r} model (its config.json's model_type is "
            f"{family_named(found).model_type!r}), but model.family is {expected!r}: set "
            f"model.family to {found!r}, or model.uri to a {expected!r} model"
        )


def _family_of_dir(uri: str, path: Path):
    """The family of a Hugging Face model directory, from its config.json's model_type."""
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{uri}: not a model directory: expected a Hugging Face config.json or {POLICY_FILE}"
        )
    try:
        return family_of_config(AutoConfig.from_pretrained(path))
    except (ValueError, OSError) as err:  # OSError: a config.json that is not JSON
        raise ModelLoadError(f"{uri}: {err}") from err


def _load_hf_dir(uri: str, path: Path, *, dtype: torch.dtype, device: str) -> LoadedVLM:
    fam = _family_of_dir(uri, path)
    with _loading(uri, f"a {fam.name} model ({fam.model_class.__name__})"):
        model = fam.model_class.from_pretrained(path, dtype=dtype)
    with _loading(uri, f"the processor of a {fam.name} model ({fam.processor_class.__name__})"):
        processor = fam.processor_class.from_pretrained(path)
    return LoadedVLM(model.to(device).eval(), processor, fam.name)


@contextmanager
def _loading(uri: str, what: str) -> Iterator[None]:
    """Any failure of transformers to load local files as `what` is a ModelLoadError naming the
    URI: a missing or truncated weight file (OSError, safetensors' SafetensorError), weights of
    other shapes than the config (RuntimeError), tokenizer files it cannot read (ValueError).
    Memory errors stay what they are: a retry on a larger machine may succeed."""
    try:
        yield
    except MemoryError:
        raise
    except Exception as err:
        if type(err).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError: a RuntimeError
            raise
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelLoadError(
            f"{uri}: cannot be loaded as {what}: {type(err).__name__}: {reason}"
        ) from err


def _policy(uri: str, manifest: Path) -> dict:
    doc = json.loads(manifest.read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("base"), str):
        raise ModelLoadError(
            f"{uri}/{POLICY_FILE}: expected {{'family', 'base', 'adapters'}}, got {doc!r}"
        )
    return doc


def _load_policy(uri: str, manifest: Path, *, dtype: torch.dtype, device: str) -> LoadedVLM:
    from peft import PeftModel  # imported here: plain model directories do not need peft

    doc = _policy(uri, manifest)
    vlm = load_vlm(doc["base"], dtype=dtype, device=device)
    if doc.get("family") and doc["family"] != vlm.family:
        raise ModelLoadError(
            f"{uri}/{POLICY_FILE}: family {doc['family']!r} but its base {doc['base']} is {vlm.family!r}"
        )
    for adapter in doc.get("adapters", []):
        peft_model = PeftModel.from_pretrained(vlm.model, storage.materialize(adapter))
        vlm.model = peft_model.merge_and_unload().eval()
    return vlm


# What a model directory holds besides its configuration and processor files.
WEIGHT_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx"
)  # fmt: skip


def load_image_processor(
    uri: str, *, cache_dir: str | Path, family: str | None = None
) -> tuple[str, object]:
    """(family, image processor) of a model directory or policy, as `load_vlm` would load
    them, read without the weights (a 7B model's datagen shard fetches a few kilobytes);
    a remote directory's files are copied under cache_dir. Errors as `load_vlm`'s."""
    path = _without_weights(uri, cache_dir)
    if (path / POLICY_FILE).is_file():
        base = _policy(uri, path / POLICY_FILE)["base"]
        return load_image_processor(base, cache_dir=cache_dir, family=family)
    fam = _family_of_dir(uri, path)
    check_family(uri, fam.name, family)
    with _loading(uri, f"the processor of a {fam.name} model ({fam.processor_class.__name__})"):
        return fam.name, fam.processor_class.from_pretrained(path).image_processor


def _without_weights(uri: str, cache_dir: str | Path) -> Path:
    """The directory itself for a local URI, else a copy of its files but the weights."""
    local = storage.local_path(uri)
    if local is not None:
        if not local.is_dir():
            raise ModelLoadError(f"{uri}: no such model directory")
        return local
    rels = [rel for rel in storage.list_files(uri) if rel and not rel.endswith(WEIGHT_SUFFIXES)]
    if not rels:
        raise ModelLoadError(f"{uri}: no such model directory (no files besides weights)")
    target = Path(cache_dir) / f"processor-{hashlib.sha256(uri.encode()).hexdigest()[:16]}"
    for rel in rels:
        storage.get_file(storage.join(uri, rel), target / rel)
    return target


def write_policy_manifest(
    out_dir: str | Path, *, family: str, base: str, adapters: list[str]
) -> Path:
    """Write `mfpo_policy.json` into a local directory (an align stage's published policy)."""
    family_named(family)  # validates the name
    path = Path(out_dir) / POLICY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"family": family, "base": base, "adapters": adapters}, indent=2))
    return path


def save_vlm(vlm: LoadedVLM, out_dir: str | Path) -> Path:
    """Save model + processor in Hugging Face format under a local directory."""
    out = Path(out_dir)
    vlm.model.save_pretrained(out)
    vlm.processor.save_pretrained(out)
    return out
