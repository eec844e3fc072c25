"""The tiny models' tokenizer, trained here from the synthetic world's text.

No tokenizer can be downloaded, so a small byte-level BPE is trained with the `tokenizers`
library on `scenes.text_corpus()`: every world word becomes one or two tokens, and the byte
alphabet still encodes any other text (COCO captions, POPE questions) without unknown tokens.
The special tokens of all three families are included, so one tokenizer serves LLaVA,
LLaVA-NeXT and Qwen2-VL. Called by `models.build`.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from mfpo_runtime.data import scenes

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
IMAGE_TOKEN = "<image>"  # LLaVA and LLaVA-NeXT
# Qwen2-VL's chat and vision markers.
QWEN_TOKENS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
               "<|image_pad|>", "<|video_pad|>", "<|endoftext|>"]  # fmt: skip
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, IMAGE_TOKEN, *QWEN_TOKENS]
DEFAULT_VOCAB_SIZE = 512


def train_tokenizer(
    corpus: Iterable[str] | None = None, vocab_size: int = DEFAULT_VOCAB_SIZE
) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE on `corpus` (default: the world's sentences); deterministic."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(scenes.text_corpus() if corpus is None else corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="right",
    )
