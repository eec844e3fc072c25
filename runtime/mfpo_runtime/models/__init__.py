"""Tiny vision-language models of the real classes, and the one way the runtime talks to them.

    build_tiny_model(family, out_dir, *, seed=0, image_size=48, tokenizer=None) -> Path
    load_vlm(uri, *, dtype=torch.float32, device="cpu") -> LoadedVLM (.model, .processor, .family)
    prompt_text(family, question) -> str
    encode(processor, family, questions, images, answers=None) -> dict[str, Tensor]
    generate(vlm, questions, images, *, max_new_tokens, do_sample=False, temperature=1.0,
             seed=None) -> list[str]

Families: "llava" (LlavaForConditionalGeneration), "llava-next"
(LlavaNextForConditionalGeneration), "qwen2-vl" (Qwen2VLForConditionalGeneration).
"""

from mfpo_runtime.models.build import build_tiny, build_tiny_model
from mfpo_runtime.models.families import FAMILIES, TinySize, family, family_of_config
from mfpo_runtime.models.generation import generate, model_inputs
from mfpo_runtime.models.inputs import encode, encode_prompts, prompt_text
from mfpo_runtime.models.io import (
    POLICY_FILE,
    LoadedVLM,
    ModelLoadError,
    load_vlm,
    save_vlm,
    write_policy_manifest,
)

__all__ = [
    "FAMILIES",
    "POLICY_FILE",
    "LoadedVLM",
    "ModelLoadError",
    "TinySize",
    "build_tiny",
    "build_tiny_model",
    "encode",
    "encode_prompts",
    "family",
    "family_of_config",
    "generate",
    "load_vlm",
    "model_inputs",
    "prompt_text",
    "save_vlm",
    "write_policy_manifest",
]
