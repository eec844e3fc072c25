"""Grounding keywords to image regions: where the dispreferred image gets its noise.

A `Grounder` maps (image, keywords, sample) to one boolean mask per keyword (empty when the
keyword was not found). Implementations:

- `AnnotationGrounder`: the dataset's ground-truth masks (the synthetic world, COCO); a keyword
  matches an annotated object through a resolver (surface form -> canonical names).
- `CLIPSegGrounder`: text-prompted segmentation with transformers' CLIPSeg, loaded from a
  storage URI (`CLIPSegForImageSegmentation` + `CLIPSegProcessor`).
- `GroundingSamGrounder`: Grounding-DINO boxes refined into masks by SAM (transformers),
  both loaded from storage URIs.
- `WholeImageGrounder`: the paper's global-noise ablation: always the whole image.
- `RandomRegionGrounder`: the paper's random-region ablation: noise of the keyword regions'
  area placed where the grounded objects are not (`place`).

`ground(...)` grounds on the image as given (a segmenter sees every pixel the user supplied),
maps each keyword's mask into the model's view of the image (a `View`: what the model's image
processor makes of it, `models.image_view`), unions them there, derives one box per grounded
keyword, and applies the paper's fallback: no region found -> the whole image, marked
`fallback-whole-image` and counted by the caller. A region the view cuts off entirely (a center
crop) is not noised and is listed as lost. `SameView` keeps the image as it is and
`SquareView` is imagePreference.imageSize's plain square. Called by the datagen stage and the
benchmark.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from mfpo_core import storage
from PIL import Image

log = logging.getLogger("mfpo.grounding")

FALLBACK = "fallback-whole-image"
# Why a record fell back to the whole image (its `fallback_reason`, counted per shard):
NO_KEYWORDS = "no keyword candidates"  # the ranker found no object noun phrase in the answer
NOT_GROUNDED = "keywords not grounded"  # the grounder found no region for any keyword
OUTSIDE_VIEW = "regions outside the model's view"  # found, but the view cuts all of them off
Resolver = Callable[[str], set[str]]  # keyword -> canonical object names it refers to


class GrounderError(Exception):
    """A model-based grounder that cannot be loaded, or that fails on a well-formed image: bad
    input (a wrong or broken model directory), never retried; the message names the spec field
    and the URI."""


class Grounder(Protocol):
    name: str

    def masks(
        self, image: Image.Image, keywords: Sequence[str], sample_masks: dict[str, Image.Image]
    ) -> list[np.ndarray]:
        """One (H, W) bool mask per keyword, in order; all False when not found."""


class View(Protocol):
    """An image's geometry at the model's input (`models.image_view.ModelView`, `SquareView`)."""

    def image(self, image: Image.Image) -> Image.Image:
        """The image as the model sees it."""

    def mask(self, mask: np.ndarray) -> tuple[np.ndarray, float]:
        """A (H, W) bool mask of the image in the view, and the share of its area kept."""


class SameView:
    """The image as it is: grounding and noise in the image's own pixels."""

    def image(self, image: Image.Image) -> Image.Image:
        return image if image.mode == "RGB" else image.convert("RGB")

    def mask(self, mask: np.ndarray) -> tuple[np.ndarray, float]:
        return mask, 1.0 if mask.any() else 0.0


class SquareView:
    """imagePreference.imageSize: every image resized (bicubic) to a size x size square."""

    def __init__(self, size: int) -> None:
        self.side = size

    def __repr__(self) -> str:
        return f"SquareView({self.side})"

    def image(self, image: Image.Image) -> Image.Image:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        if rgb.size == (self.side, self.side):
            return rgb
        return rgb.resize((self.side, self.side), Image.BICUBIC)

    def mask(self, mask: np.ndarray) -> tuple[np.ndarray, float]:
        square = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
        seen = np.asarray(square.resize((self.side, self.side), Image.NEAREST)) > 127
        return seen, 1.0 if seen.any() else 0.0


@dataclass(frozen=True)
class Grounding:
    """Where to noise, in the model's view of the image, and what produced it."""

    image: Image.Image  # the image in the view: what is noised and stored
    mask: np.ndarray  # (H, W) bool, in the view
    boxes: list[list[int]]  # [x0, y0, x1, y1] per grounded keyword, in the view (x1/y1 exclusive)
    grounded: list[str]  # keywords whose region the model sees (and that get noise)
    method: str  # the grounder's name, or FALLBACK
    # Per keyword found (in the image as given): share of its region inside the view.
    kept: dict[str, float] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)  # found, but the view cuts it off entirely
    overlap: float | None = None  # random-region: share of the noised region on the objects
    reason: str | None = None  # a fallback's: NO_KEYWORDS, NOT_GROUNDED or OUTSIDE_VIEW

    @property
    def fallback(self) -> bool:
        return self.method == FALLBACK


def bounding_box(mask: np.ndarray) -> list[int]:
    """[x0, y0, x1, y1] of a non-empty (H, W) mask, x1/y1 exclusive."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    return [int(x0), int(y0), int(x1) + 1, int(y1) + 1]


def ground(
    grounder: Grounder,
    image: Image.Image,
    keywords: Sequence[str],
    sample_masks: dict[str, Image.Image] | None = None,
    *,
    view: View | None = None,
    fallback_whole_image: bool = True,
) -> Grounding | None:
    """Union of the keywords' regions in the view; the whole view when none is found there
    (None if no fallback). Grounding itself runs on `image` as given."""
    view = view or SameView()
    seen = view.image(image)
    width, height = seen.size
    per_keyword = _masks(grounder, image, keywords, sample_masks or {}) if keywords else []
    found, kept, lost = [], {}, []
    for keyword, mask in zip(keywords, per_keyword):
        if not mask.any():
            continue
        viewed, share = view.mask(mask)
        kept[keyword] = round(share, 4)
        if viewed.any():
            found.append((keyword, viewed))
        else:
            lost.append(keyword)
    if found:
        union = np.logical_or.reduce([m for _, m in found])
        boxes = [bounding_box(m) for _, m in found]
        overlap = None
        if isinstance(grounder, RandomRegionGrounder):
            placed = grounder.place(seen, union)
            union, boxes, overlap = placed.mask, placed.moved(boxes), placed.overlap
        grounded = [k for k, _ in found]
        return Grounding(seen, union, boxes, grounded, grounder.name, kept, lost, overlap)
    if not fallback_whole_image:
        return None
    whole = np.ones((height, width), dtype=bool)
    reason = NO_KEYWORDS if not keywords else OUTSIDE_VIEW if lost else NOT_GROUNDED
    return Grounding(seen, whole, [[0, 0, width, height]], [], FALLBACK, kept, lost, reason=reason)


def _masks(
    grounder: Grounder,
    image: Image.Image,
    keywords: Sequence[str],
    sample_masks: dict[str, Image.Image],
) -> list[np.ndarray]:
    """grounder.masks; a model-based grounder's failure on a decoded image is a GrounderError
    naming its model (a segmenter of the right class runs on any RGB image). Memory errors stay
    what they are: a retry with more memory may succeed."""
    source = getattr(grounder, "source", None)
    if source is None:  # annotation, whole-image: an error there is a bug, not bad input
        return grounder.masks(image, keywords, sample_masks)
    try:
        return grounder.masks(image, keywords, sample_masks)
    except MemoryError:
        raise
    except Exception as err:
        if type(err).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError: a RuntimeError
            raise
        raise GrounderError(
            f"the {grounder.name} grounder of {source} failed on a {image.width}x{image.height} "
            f"image with keywords {list(keywords)}: {type(err).__name__}: {err} (is it the model "
            "that grounding.method names?)"
        ) from err


# ------------------------------------------------------------------ annotation


def name_resolver(synonyms: dict[str, list[str]]) -> Resolver:
    """keyword -> canonical names, from a synonym table (canonical name -> surface forms).

    A canonical name always resolves to itself; the table adds plurals and synonyms.
    """
    table: dict[str, set[str]] = {}
    for name, forms in synonyms.items():
        for form in (name, *forms):
            table.setdefault(form.lower(), set()).add(name)
    return lambda keyword: set(table.get(keyword.lower(), ()))


class AnnotationGrounder:
    """Ground-truth masks of the sample's annotated objects."""

    name = "annotation"

    def __init__(self, resolve: Resolver | None = None) -> None:
        self._resolve = resolve or name_resolver({})

    def masks(
        self, image: Image.Image, keywords: Sequence[str], sample_masks: dict[str, Image.Image]
    ) -> list[np.ndarray]:
        width, height = image.size
        binary = {name: _binary(mask, image.size) for name, mask in sample_masks.items()}
        out = []
        for keyword in keywords:
            names = (self._resolve(keyword) | {keyword.lower()}) & set(binary)
            mask = np.zeros((height, width), dtype=bool)
            for name in names:
                mask |= binary[name]
            out.append(mask)
        return out


def _binary(mask: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """An L mask resized (nearest) to the image, as bool (H, W): nonzero = object."""
    if mask.size != size:
        mask = mask.resize(size, Image.NEAREST)
    return np.asarray(mask.convert("L")) > 127


class WholeImageGrounder:
    """The global-noise ablation: every keyword grounds to the whole image."""

    name = "whole-image"

    def masks(
        self, image: Image.Image, keywords: Sequence[str], sample_masks: dict[str, Image.Image]
    ) -> list[np.ndarray]:
        width, height = image.size
        return [np.ones((height, width), dtype=bool) for _ in keywords]


@dataclass(frozen=True)
class Placement:
    """Where the random-region ablation puts its noise."""

    mask: np.ndarray  # (H, W) bool, as many pixels as the grounded objects' union
    offset: tuple[int, int] | None  # (dx, dy) when the objects' union shape was moved whole
    overlap: float  # share of the region's pixels on the grounded objects

    def moved(self, boxes: list[list[int]]) -> list[list[int]]:
        """The keyword boxes where the noise went: moved by the offset, or the region's box."""
        if self.offset is None:
            return [bounding_box(self.mask)]
        dx, dy = self.offset
        return [[x0 + dx, y0 + dy, x1 + dx, y1 + dy] for x0, y0, x1, y1 in boxes]


class RandomRegionGrounder:
    """The random-region ablation (the paper's ablations): noise of exactly the grounded objects'
    area, placed where those objects are not, so that it says nothing about them.

    `masks` are the inner grounder's (where the objects are: the fallback and the lost regions
    follow them as for the inner grounder); `place` picks the region in the model's view:

    1. the union of the objects' regions, moved whole (same shape) to a place where it touches
       none of them, inside the image (no wrap-around), drawn uniformly among all such places;
    2. if no such place exists (large objects): the `area` object-free pixels nearest to a
       random object-free pixel (a compact blob, bent around the objects where it meets them);
       if the objects leave fewer free pixels than their own area, all of them plus the nearest
       object pixels, and the share on the objects is the record's `region_overlap`.

    Draws come from `seed` and the view's pixels alone: the same sample always gets the same
    region, in any process and shard.
    """

    name = "random-region"

    def __init__(self, inner: Grounder, *, seed: int = 0) -> None:
        self.inner = inner
        self.seed = seed

    def masks(
        self, image: Image.Image, keywords: Sequence[str], sample_masks: dict[str, Image.Image]
    ) -> list[np.ndarray]:
        return self.inner.masks(image, keywords, sample_masks)

    def place(self, image: Image.Image, objects: np.ndarray) -> Placement:
        """A region of objects.sum() pixels of `image`'s (H, W) grid, off the objects."""
        digest = hashlib.sha256(image.tobytes()).digest()
        return place_off_objects(objects, [self.seed, int.from_bytes(digest[:8], "little")])


def place_off_objects(objects: np.ndarray, seed: int | list[int]) -> Placement:
    """A region of the objects' (H, W) area that avoids them (RandomRegionGrounder's steps 1-2).

    Also the equal-area background of the image-reliance measure (eval.reliance).
    """
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = bounding_box(objects)
    shape = objects[y0:y1, x0:x1]
    clear = np.argwhere(_overlaps(objects, shape) == 0)  # (N, 2) top-left (y, x)
    if len(clear):
        top, left = (int(v) for v in clear[rng.integers(len(clear))])
        region = np.zeros_like(objects)
        region[top : top + shape.shape[0], left : left + shape.shape[1]] = shape
        return Placement(region, (left - x0, top - y0), 0.0)
    return _nearest_free_blob(objects, rng)


def _overlaps(objects: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Pixels shared by `objects` (H, W) and `shape` (h, w) put with its top-left corner at
    each (y, x) that keeps it inside: shape (H - h + 1, W - w + 1), integers.

    A cross-correlation by FFT (numpy's; scipy is not a runtime dependency): with `shape`
    zero-padded to (H, W), the circular correlation at (y, x) <= (H - h, W - w) never wraps.
    """
    height, width = objects.shape
    h, w = shape.shape
    spectrum = np.fft.rfft2(objects.astype(np.float64)) * np.conj(
        np.fft.rfft2(shape.astype(np.float64), s=(height, width))
    )
    counts = np.fft.irfft2(spectrum, s=(height, width))[: height - h + 1, : width - w + 1]
    return np.rint(counts).astype(np.int64)


def _nearest_free_blob(objects: np.ndarray, rng: np.random.Generator) -> Placement:
    """objects.sum() pixels nearest to a random free pixel, free pixels first."""
    height, width = objects.shape
    area, flat = int(objects.sum()), objects.ravel()
    free = np.flatnonzero(~flat)
    start = int(free[rng.integers(len(free))]) if len(free) else int(rng.integers(flat.size))
    ys, xs = np.divmod(np.arange(flat.size), width)
    sy, sx = divmod(start, width)
    distance = (ys - sy) ** 2 + (xs - sx) ** 2 + flat * (height * height + width * width + 1)
    chosen = np.argsort(distance, kind="stable")[:area]
    region = np.zeros(flat.size, dtype=bool)
    region[chosen] = True
    on_objects = int(flat[chosen].sum())
    return Placement(region.reshape(height, width), None, on_objects / area)


# ------------------------------------------------------------------ model directories


def model_dir(uri: str, config_class, where: str, cache_dir: str | None) -> Path:
    """The local directory of a grounder's model URI, checked to hold `config_class`'s model."""
    try:
        path = storage.materialize(uri, cache_dir)
    except (storage.StorageError, OSError, ValueError) as err:
        raise GrounderError(f"{where}: {err}") from err
    check_model_type(path, config_class, where)
    return path


def check_model_type(path: Path, config_class, where: str) -> None:
    """GrounderError unless the directory's config.json names `config_class`'s model_type (what
    transformers' AutoConfig dispatches on): a directory of another model fails here, before its
    weights are loaded into a class they do not fit (a LLaVA directory loads into CLIPSeg with
    random weights, and then fails on every image)."""
    expected = config_class.model_type
    config = Path(path) / "config.json"
    try:
        found = json.loads(config.read_text()).get("model_type")
    except FileNotFoundError:
        raise GrounderError(
            f"{where}: no config.json there: expected a Hugging Face {config_class.__name__} "
            f"model directory (model_type {expected!r})"
        ) from None
    except (OSError, ValueError, AttributeError) as err:  # not JSON, not an object
        raise GrounderError(f"{where}: config.json cannot be read: {err}") from err
    if found != expected:
        raise GrounderError(
            f"{where} holds a model of model_type {found!r} (its config.json), expected "
            f"{expected!r} ({config_class.__name__})"
        )


@contextmanager
def loading(where: str, what: str) -> Iterator[None]:
    """Any failure of transformers to load a model directory as `what` (missing or truncated
    files, weights of other shapes) is a GrounderError naming the field and URI."""
    try:
        yield
    except MemoryError:
        raise
    except Exception as err:
        raise GrounderError(
            f"{where} cannot be loaded as {what}: {type(err).__name__}: {err}"
        ) from err


# ------------------------------------------------------------------ CLIPSeg


class CLIPSegGrounder:
    """Text-prompted segmentation: sigmoid(CLIPSeg logits) > threshold, resized to the image."""

    name = "clipseg"

    def __init__(self, model, processor, *, threshold: float = 0.4, source: str = "") -> None:
        self.model = model.eval()
        self.processor = processor
        self.threshold = threshold
        self.source = source or "a CLIPSeg model"  # the spec field and URI, for errors

    @classmethod
    def from_uri(
        cls, uri: str, *, threshold: float = 0.4, cache_dir: str | None = None
    ) -> CLIPSegGrounder:
        from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor

        where = f"imagePreference.grounding.modelUri {uri}"
        path = model_dir(uri, CLIPSegConfig, where, cache_dir)
        with loading(where, "CLIPSegForImageSegmentation and CLIPSegProcessor"):
            model = CLIPSegForImageSegmentation.from_pretrained(path)
            processor = CLIPSegProcessor.from_pretrained(path)
        return cls(model, processor, threshold=threshold, source=where)

    def probabilities(self, image: Image.Image, keywords: Sequence[str]) -> np.ndarray:
        """Per-keyword foreground probability at the model's resolution, shape (K, h, w)."""
        import torch

        inputs = self.processor(
            text=list(keywords), images=[image] * len(keywords), padding=True, return_tensors="pt"
        )
        with torch.inference_mode():
            logits = self.model(**inputs).logits  # (K, h, w), or (h, w) when K == 1
        return torch.sigmoid(logits.reshape(len(keywords), *logits.shape[-2:])).float().numpy()

    def masks(
        self, image: Image.Image, keywords: Sequence[str], sample_masks: dict[str, Image.Image]
    ) -> list[np.ndarray]:
        probs = self.probabilities(image, keywords)  # (K, h, w)
        out = []
        for prob in probs:
            resized = Image.fromarray(prob.astype(np.float32), mode="F").resize(
                image.size, Image.BILINEAR
            )
            out.append(np.asarray(resized) > self.threshold)
        return out


# ------------------------------------------------------------------ Grounding-DINO + SAM


def keywords_in_label(label: str, keywords: Sequence[str]) -> list[int]:
    """Indices of the keywords a Grounding-DINO box label names: those whose head noun (last
    word) is in the label.

    The label is the prompt's tokens whose score passed text_threshold, so a compound keyword
    can come back in part: "fire truck" as "truck". Its head noun names the object; a modifier
    alone ("fire") does not. The ranker gives each top-K keyword its own head noun.
    """
    words = set(label.lower().replace(".", " ").split())
    heads = [keyword.lower().split()[-1:] for keyword in keywords]
    return [i for i, head in enumerate(heads) if head and head[0] in words]


class GroundingSamGrounder:
    """Grounded-SAM: Grounding-DINO boxes for the keywords, refined into masks by SAM.

    All keywords go to the detector in one prompt ("cat. red sofa."); a detected box belongs to
    every keyword its text label contains; SAM turns each box into a mask at the image's size.
    """

    name = "grounding-sam"

    def __init__(
        self, detector, detector_processor, sam, sam_processor, *, threshold: float = 0.4,
        source: str = "",
    ):  # fmt: skip
        self.detector, self.detector_processor = detector.eval(), detector_processor
        self.sam, self.sam_processor = sam.eval(), sam_processor
        self.threshold = threshold
        self.source = source or "a Grounding DINO and a SAM model"  # spec fields and URIs

    @classmethod
    def from_uris(
        cls,
        detector_uri: str,
        sam_uri: str,
        *,
        threshold: float = 0.4,
        cache_dir: str | None = None,
    ) -> GroundingSamGrounder:
        from transformers import (
            GroundingDinoConfig,
            GroundingDinoForObjectDetection,
            GroundingDinoProcessor,
            SamConfig,
            SamModel,
            SamProcessor,
        )

        detector_at = f"imagePreference.grounding.modelUri {detector_uri}"
        sam_at = f"imagePreference.grounding.samUri {sam_uri}"
        detector = model_dir(detector_uri, GroundingDinoConfig, detector_at, cache_dir)
        sam = model_dir(sam_uri, SamConfig, sam_at, cache_dir)
        with loading(detector_at, "GroundingDinoForObjectDetection and GroundingDinoProcessor"):
            detector_model = GroundingDinoForObjectDetection.from_pretrained(detector)
            detector_processor = GroundingDinoProcessor.from_pretrained(detector)
        with loading(sam_at, "SamModel and SamProcessor"):
            sam_model, sam_processor = SamModel.from_pretrained(sam), SamProcessor.from_pretrained(sam)
        return cls(
            detector_model, detector_processor, sam_model, sam_processor, threshold=threshold,
            source=f"{detector_at} and {sam_at}",
        )  # fmt: skip

    def detect(self, image: Image.Image, keywords: Sequence[str]) -> list[list[list[float]]]:
        """Boxes [x0, y0, x1, y1] (pixels) per keyword."""
        import torch

        prompt = " ".join(f"{k.lower()}." for k in keywords)
        inputs = self.detector_processor(images=image, text=prompt, return_tensors="pt")
        with torch.inference_mode():
            outputs = self.detector(**inputs)
        (found,) = self.detector_processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=self.threshold,
            text_threshold=self.threshold,
            target_sizes=[(image.height, image.width)],
        )
        per_keyword: list[list[list[float]]] = [[] for _ in keywords]
        for box, label in zip(found["boxes"].tolist(), found["text_labels"]):
            for i in keywords_in_label(label, keywords):
                per_keyword[i].append(box)
        return per_keyword

    def segment(self, image: Image.Image, boxes: list[list[float]]) -> np.ndarray:
        """One SAM mask per box at the image's size, shape (N, H, W) bool."""
        import torch

        inputs = self.sam_processor(images=image, input_boxes=[boxes], return_tensors="pt")
        with torch.inference_mode():
            outputs = self.sam(**inputs, multimask_output=False)
        (masks,) = self.sam_processor.image_processor.post_process_masks(
            outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )  # (N, 1, H, W)
        return masks[:, 0].numpy().astype(bool)

    def masks(
        self, image: Image.Image, keywords: Sequence[str], sample_masks: dict[str, Image.Image]
    ) -> list[np.ndarray]:
        per_keyword = self.detect(image, keywords)
        flat = [box for boxes in per_keyword for box in boxes]
        segmented = (
            self.segment(image, flat) if flat else np.zeros((0, image.height, image.width), bool)
        )
        out, start = [], 0
        for boxes in per_keyword:
            union = segmented[start : start + len(boxes)].any(axis=0) if boxes else None
            out.append(union if union is not None else np.zeros((image.height, image.width), bool))
            start += len(boxes)
        return out


def build_tiny_grounding_sam(
    out_dir: str | Path, *, image_size: int = 64, seed: int = 0
) -> tuple[Path, Path]:
    """Random-weight Grounding-DINO and SAM of the real classes, saved with their processors
    (tests, benchmarks, offline demos). Returns (detector_dir, sam_dir)."""
    import torch
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SamConfig,
        SamImageProcessor,
        SamModel,
        SamProcessor,
        SwinConfig,
    )

    out = Path(out_dir)
    detector_dir, sam_dir = out / "grounding-dino", out / "sam"
    # WordPiece vocabulary: specials, ".", and single letters (every word spells out).
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        ".",
        *letters,
        *(f"##{c}" for c in letters),
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(seed)
    detector = GroundingDinoForObjectDetection(
        GroundingDinoConfig(
            backbone_config=SwinConfig(
                embed_dim=16, depths=[1, 1], num_heads=[1, 1], window_size=4,
                image_size=image_size, out_indices=[1, 2],
            ),
            text_config=BertConfig(
                vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=64,
            ),
            d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
            encoder_attention_heads=2, decoder_attention_heads=2, num_queries=10,
            num_feature_levels=2, encoder_n_points=2, decoder_n_points=2, max_text_len=32,
        )
    ).eval()  # fmt: skip
    detector.save_pretrained(detector_dir)
    GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(
            size={"shortest_edge": image_size, "longest_edge": image_size}
        ),
        tokenizer=BertTokenizer(str(out / "vocab.txt")),
    ).save_pretrained(detector_dir)
    sam = SamModel(
        SamConfig(
            vision_config={
                "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                "image_size": image_size, "patch_size": 16, "output_channels": 32, "mlp_dim": 64,
                "global_attn_indexes": [1], "window_size": 2, "num_pos_feats": 16,
            },
            prompt_encoder_config={
                "hidden_size": 32, "image_size": image_size, "patch_size": 16,
                "mask_input_channels": 4, "num_point_embeddings": 4,
            },
            mask_decoder_config={
                "hidden_size": 32, "mlp_dim": 64, "num_hidden_layers": 2,
                "num_attention_heads": 2, "iou_head_hidden_dim": 32,
            },
        )
    ).eval()  # fmt: skip
    sam.save_pretrained(sam_dir)
    low_res = image_size // 4
    SamProcessor(
        image_processor=SamImageProcessor(
            size={"longest_edge": image_size},
            pad_size={"height": image_size, "width": image_size},
            mask_size={"longest_edge": low_res},
            mask_pad_size={"height": low_res, "width": low_res},
        )
    ).save_pretrained(sam_dir)
    return detector_dir, sam_dir


def build_tiny_clipseg(out_dir: str | Path, *, image_size: int = 64, seed: int = 0) -> Path:
    """A random-weight CLIPSeg of the real classes, built from a config and saved with its
    processor: for tests, benchmarks and offline demos (nothing is downloaded).

    The tokenizer is CLIP's byte-level BPE with the 256 byte symbols (plus end-of-word forms)
    and no merges: every word spells out, which is all a random-weight model needs.
    """
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        CLIPTokenizer,
        ViTImageProcessor,
    )

    symbols = sorted(ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate([*symbols, *(f"{s}</w>" for s in symbols)])}
    bos, eos = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": bos, "<|endoftext|>": eos})
    tiny = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    }
    config = CLIPSegConfig(
        text_config={**tiny, "vocab_size": len(vocab), "max_position_embeddings": 77,
                     "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": eos},
        vision_config={**tiny, "image_size": image_size, "patch_size": 16},
        projection_dim=32,
        extract_layers=[0, 1],
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = CLIPSegForImageSegmentation(config).eval()
    processor = CLIPSegProcessor(
        image_processor=ViTImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[]),
    )
    out = Path(out_dir)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def grounder_for(
    spec, data_format: str, *, cache_dir: str | None = None, seed: int = 0
) -> Grounder:
    """The grounder named in spec.imagePreference.grounding (an api.GroundingSpec); `seed`
    (imagePreference.seed) places the random-region ablation's regions."""
    method = spec.method
    if method == "annotation":
        return AnnotationGrounder(annotation_resolver(data_format))
    if method == "whole-image":
        return WholeImageGrounder()
    if method == "random-region":
        return RandomRegionGrounder(AnnotationGrounder(annotation_resolver(data_format)), seed=seed)
    if method == "clipseg":
        return CLIPSegGrounder.from_uri(
            spec.model_uri, threshold=spec.threshold, cache_dir=cache_dir
        )
    if method == "grounding-sam":
        return GroundingSamGrounder.from_uris(
            spec.model_uri, spec.sam_uri, threshold=spec.threshold, cache_dir=cache_dir
        )
    raise ValueError(f"unknown grounding method {method!r}")


def annotation_resolver(data_format: str) -> Resolver:
    """Synonym resolution for annotated objects: the mention extractor of `data.mentions` (synthetic-world
    or COCO synonyms); exact object names only when that module is not available."""
    try:
        from mfpo_runtime.data import mentions
    except ImportError:
        log.warning("mfpo_runtime.data.mentions is missing: keywords match object names exactly")
        return name_resolver({})
    extractor = (
        mentions.synthetic_extractor() if data_format == "synthetic" else mentions.coco_extractor()
    )
    return extractor.objects
