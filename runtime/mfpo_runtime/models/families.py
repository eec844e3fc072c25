"""The three model families: tiny configs, processors and chat prompts.

Each family names the real Hugging Face class (so the runtime's code paths are the ones a
7B checkpoint takes) and knows how to build a tiny config of it, its processor from
arguments (no download), and its chat prompt. transformers 5 names the language model's
attention projections `model.language_model.layers.N.self_attn.{q,k,v,o}_proj` in all three
classes (the vision towers live under `model.vision_tower` / `model.visual`), which is what
the API's default LoRA regex targets.

Called by `models.build` (configs, processors) and `models.inputs` (prompts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
    LlavaProcessor,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.llava_next.image_processing_pil_llava_next import (
    LlavaNextImageProcessorPil,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from mfpo_runtime.models.qwen_processor import ImageOnlyQwen2VLProcessor
from mfpo_runtime.models.tokenizer import IMAGE_TOKEN

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@dataclass(frozen=True)
class TinySize:
    """How big a tiny model is. `image_size` must be a multiple of `patch_size`."""

    image_size: int = 48
    patch_size: int = 8
    vision_hidden: int = 32
    vision_layers: int = 2
    text_hidden: int = 64
    text_layers: int = 2
    heads: int = 4
    max_positions: int = 512

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.text_hidden % self.heads:
            raise ValueError(
                f"text_hidden {self.text_hidden} is not divisible by heads {self.heads}"
            )
        if self.vision_hidden % 2:
            raise ValueError(f"vision_hidden {self.vision_hidden} must be even (2 attention heads)")


@dataclass(frozen=True)
class Family:
    """One model class: how to build it tiny and how to talk to it."""

    name: str
    model_type: str  # config.model_type, how a saved model's family is recognised
    model_class: type[PreTrainedModel]
    prompt_template: str  # {question}; the image placeholder is part of the template
    answer_prefix: str  # text between the prompt and the answer's first word
    eos_token: str  # what ends an answer
    image_token: str  # the placeholder the processor expands into image tokens
    processor_class: type[ProcessorMixin]  # how a saved processor is loaded
    build_config: Callable[[TinySize, PreTrainedTokenizerFast], PretrainedConfig]
    build_processor: Callable[[TinySize, PreTrainedTokenizerFast], ProcessorMixin]


def _clip(size: TinySize) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_hidden * 2,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=2,
        image_size=size.image_size,
        patch_size=size.patch_size,
        projection_dim=size.vision_hidden,
    )


def _llama(size: TinySize, tok: PreTrainedTokenizerFast, eos: str) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=size.text_hidden,
        intermediate_size=size.text_hidden * 2,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        max_position_embeddings=size.max_positions,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.convert_tokens_to_ids(eos),
        tie_word_embeddings=False,
    )


def _llava_config(size: TinySize, tok: PreTrainedTokenizerFast) -> LlavaConfig:
    return LlavaConfig(
        vision_config=_clip(size),
        text_config=_llama(size, tok, "</s>"),
        image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_select_strategy="default",  # drop CLS: one token per patch
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )


def _clip_image_processor(size: TinySize) -> CLIPImageProcessorPil:
    # The PIL backend: transformers' default backend needs torchvision, which this torch lacks.
    return CLIPImageProcessorPil(
        size={"shortest_edge": size.image_size},
        crop_size={"height": size.image_size, "width": size.image_size},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )


def _llava_processor(size: TinySize, tok: PreTrainedTokenizerFast) -> LlavaProcessor:
    return LlavaProcessor(
        image_processor=_clip_image_processor(size),
        tokenizer=tok,
        patch_size=size.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        image_token=IMAGE_TOKEN,
    )


def _pinpoints(size: TinySize) -> list[list[int]]:
    s = size.image_size
    return [[s, s], [s, 2 * s], [2 * s, s]]


def _llava_next_config(size: TinySize, tok: PreTrainedTokenizerFast) -> LlavaNextConfig:
    return LlavaNextConfig(
        vision_config=_clip(size),
        text_config=_llama(size, tok, "</s>"),
        image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        image_grid_pinpoints=_pinpoints(size),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )


def _llava_next_processor(size: TinySize, tok: PreTrainedTokenizerFast) -> LlavaNextProcessor:
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": size.image_size},
        crop_size={"height": size.image_size, "width": size.image_size},
        image_grid_pinpoints=_pinpoints(size),
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=size.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
    )


QWEN_MERGE = 2  # Qwen2-VL merges 2x2 patches into one image token


def _qwen2_vl_config(size: TinySize, tok: PreTrainedTokenizerFast) -> Qwen2VLConfig:
    head_dim = size.text_hidden // size.heads
    # M-RoPE splits each head's rotary half into (temporal, height, width) sections.
    # Qwen2-VL-7B uses [16, 24, 24] of 64: a quarter temporal, the rest split evenly.
    half = head_dim // 2
    temporal = half // 4
    height = (half - temporal) // 2
    mrope_section = [temporal, height, half - temporal - height]
    ids = tok.convert_tokens_to_ids
    return Qwen2VLConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": size.text_hidden,
            "intermediate_size": size.text_hidden * 2,
            "num_hidden_layers": size.text_layers,
            "num_attention_heads": size.heads,
            "num_key_value_heads": size.heads,
            "max_position_embeddings": size.max_positions,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": mrope_section,
            },
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={
            "depth": size.vision_layers,
            "embed_dim": size.vision_hidden,
            "hidden_size": size.text_hidden,  # the merger projects into the LM's width
            "mlp_ratio": 2,
            "num_heads": 2,
            "patch_size": size.patch_size,
            "spatial_merge_size": QWEN_MERGE,
            "temporal_patch_size": 2,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def _qwen2_vl_processor(size: TinySize, tok: PreTrainedTokenizerFast) -> ImageOnlyQwen2VLProcessor:
    factor = size.patch_size * QWEN_MERGE
    if size.image_size % factor:
        raise ValueError(
            f"qwen2-vl: image_size must be a multiple of {factor}, got {size.image_size}"
        )
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=size.patch_size,
        merge_size=QWEN_MERGE,
        temporal_patch_size=2,
        # At most the native size's pixels (a square of it is left alone), as few as one merged
        # token: a resized image is then resized no further (smart_resize is idempotent), which
        # min_pixels == max_pixels is not (a 640x427 photo went 32x48 -> 48x64 -> 32x48 ...).
        min_pixels=factor * factor,
        max_pixels=size.image_size * size.image_size,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    return ImageOnlyQwen2VLProcessor(image_processor=image_processor, tokenizer=tok)


# LLaVA-1.5 and LLaVA-NeXT share the Vicuna-style chat format.
_LLAVA_CHAT = {
    "prompt_template": "USER: <image>\n{question} ASSISTANT:",
    "answer_prefix": " ",
    "eos_token": "</s>",
    "image_token": IMAGE_TOKEN,
}

FAMILIES: dict[str, Family] = {
    "llava": Family(
        name="llava",
        model_type="llava",
        model_class=LlavaForConditionalGeneration,
        **_LLAVA_CHAT,
        processor_class=LlavaProcessor,
        build_config=_llava_config,
        build_processor=_llava_processor,
    ),
    "llava-next": Family(
        name="llava-next",
        model_type="llava_next",
        model_class=LlavaNextForConditionalGeneration,
        **_LLAVA_CHAT,
        processor_class=LlavaNextProcessor,
        build_config=_llava_next_config,
        build_processor=_llava_next_processor,
    ),
    "qwen2-vl": Family(
        name="qwen2-vl",
        model_type="qwen2_vl",
        model_class=Qwen2VLForConditionalGeneration,
        prompt_template=(
            "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\n"
            "<|im_start|>assistant\n"
        ),
        answer_prefix="",
        eos_token="<|im_end|>",
        image_token="<|image_pad|>",
        processor_class=ImageOnlyQwen2VLProcessor,
        build_config=_qwen2_vl_config,
        build_processor=_qwen2_vl_processor,
    ),
}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown model family {name!r}; expected one of {sorted(FAMILIES)}"
        ) from None


def family_of_config(config: PretrainedConfig) -> Family:
    """The family of a saved model, from its config.model_type."""
    for fam in FAMILIES.values():
        if fam.model_type == config.model_type:
            return fam
    raise ValueError(
        f"model_type {config.model_type!r} is not a supported vision-language family; "
        f"expected one of {sorted(f.model_type for f in FAMILIES.values())}"
    )
