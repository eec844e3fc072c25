"""Qwen2-VL's processor without its video half.

transformers' `Qwen2VLProcessor` insists on a video processor, and the video processor
registry needs torchvision, which cannot be installed beside this torch. Images are all the
runtime feeds Qwen2-VL, so this subclass accepts `video_processor=None` and saves/loads just
the image processor (the PIL backend, which runs without torchvision) and the tokenizer.
Inputs are identical to the full processor's for images: same patchify, same
`<|image_pad|>` expansion, same `image_grid_thw`. Called by `models.families` and `models.io`.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, Qwen2VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, video_processor=None, **kwargs):
        super().__init__(image_processor, tokenizer, video_processor, **kwargs)

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument_name == "video_processor" and argument is None:
            return None
        return super().check_argument_for_proper_class(argument_name, argument)

    def save_pretrained(self, save_directory, **kwargs) -> list[str]:
        self.image_processor.save_pretrained(save_directory)
        return list(self.tokenizer.save_pretrained(save_directory))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> ImageOnlyQwen2VLProcessor:
        path = Path(pretrained_model_name_or_path)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(image_processor=image_processor, tokenizer=tokenizer)
