"""The synthetic scenes world: small images of simple objects with exact ground truth.

No model or dataset can be downloaded here, so the demo, the tests and the synthetic
hallucination benchmark run in this world. Each scene holds one to four objects from
`OBJECTS` (every kind has its own shape AND its own saturated colour, so a tiny vision tower
can tell them apart at 32-64 px) on a muted, textured background, with a mask per object.

Language priors make the world hallucinate like a real one: most objects have a usual partner
(`PARTNERS`) that appears with them in ~88% of training scenes, captions list objects in
`OBJECTS` order (partners adjacent), and the rejected answer of a training pair usually adds the
missing partner. The `eval-counterprior` split shows an object WITHOUT its partner in every
scene: that is where prior-driven hallucination shows.

Output (`write_world`): under the output URI, one published dataset directory per split in the
`mfpo_runtime.data.records` layout (records.jsonl + manifest.json + images/ + masks/) and a
`world.json` describing the world:

    <out>/train/              text-preference pairs (question, chosen, rejected, objects, masks)
    <out>/eval/               held-out scenes from the training distribution
    <out>/eval-counterprior/  scenes where a paired object appears without its partner
    <out>/world.json

Called by `mfpo demo`, the bootstrap, the tests and `python -m mfpo_runtime.data.scenes`.
Pure data code (PIL + numpy), no torch.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mfpo_core import storage
from PIL import Image, ImageDraw

from mfpo_runtime.data.records import PreferenceRecord, write_records

# Partners are adjacent so that captions (listed in this order) put the prior's guess right
# after the object that triggers it: "a sun and a cloud".
OBJECTS: list[str] = [
    "sun", "cloud", "tree", "bird", "house", "car", "boat", "fish",
    "cup", "donut", "kite", "star", "flower", "umbrella",
]  # fmt: skip

# The usual partner of each paired object; flower and umbrella have none.
PARTNERS: dict[str, str] = {
    "sun": "cloud", "cloud": "sun", "tree": "bird", "bird": "tree", "house": "car", "car": "house",
    "boat": "fish", "fish": "boat", "cup": "donut", "donut": "cup", "kite": "star", "star": "kite",
}  # fmt: skip

OBJECT_SYNONYMS: dict[str, list[str]] = {
    "sun": ["sun", "suns"],
    "cloud": ["cloud", "clouds"],
    "tree": ["tree", "trees", "pine tree", "pine trees"],
    "bird": ["bird", "birds"],
    "house": ["house", "houses", "cottage", "cottages"],
    "car": ["car", "cars", "automobile", "automobiles"],
    "boat": ["boat", "boats", "sail boat", "sail boats", "sailboat", "sailboats"],
    "fish": ["fish", "fishes"],
    "cup": ["cup", "cups", "mug", "mugs", "coffee cup", "coffee cups"],
    "donut": ["donut", "donuts", "doughnut", "doughnuts"],
    "kite": ["kite", "kites"],
    "star": ["star", "stars"],
    "flower": ["flower", "flowers"],
    "umbrella": ["umbrella", "umbrellas"],
}

# Saturated colours, one per kind, far from every background colour (see BACKGROUNDS).
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "sun": (250, 210, 0),
    "cloud": (250, 250, 250),
    "tree": (20, 130, 30),
    "bird": (20, 20, 20),
    "house": (150, 75, 20),
    "car": (220, 20, 30),
    "boat": (20, 40, 160),
    "fish": (255, 120, 0),
    "cup": (0, 200, 220),
    "donut": (255, 150, 200),
    "kite": (0, 140, 130),
    "star": (140, 40, 220),
    "flower": (230, 0, 170),
    "umbrella": (160, 235, 20),
}

# Shapes as parts in the unit square: ("ellipse", (x0, y0, x1, y1)), ("polygon", points),
# ("chord", box: the upper half-disc) or ("ring", (x0, y0, x1, y1, hole diameter)).
# Drawn without antialiasing, so every mask pixel has exactly the object's colour.
_Shape = list[tuple[str, tuple[float, ...] | list[tuple[float, float]]]]
# fmt: off
OBJECT_SHAPES: dict[str, _Shape] = {
    "sun": [("ellipse", (0.05, 0.05, 0.95, 0.95))],
    "cloud": [("ellipse", (0.0, 0.3, 1.0, 0.75))],
    "tree": [("polygon", [(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)])],
    "bird": [("polygon", [(0.0, 0.2), (0.5, 0.55), (1.0, 0.2), (1.0, 0.5), (0.5, 0.85),
                          (0.0, 0.5)])],
    "house": [("polygon", [(0.5, 0.0), (1.0, 0.45), (0.9, 0.45), (0.9, 1.0), (0.1, 1.0),
                           (0.1, 0.45), (0.0, 0.45)])],
    "car": [("polygon", [(0.0, 0.4), (0.25, 0.4), (0.35, 0.15), (0.75, 0.15), (0.85, 0.4),
                         (1.0, 0.4), (1.0, 0.8), (0.0, 0.8)])],
    "boat": [("polygon", [(0.0, 0.45), (1.0, 0.45), (0.75, 0.85), (0.25, 0.85)])],
    "fish": [("polygon", [(0.0, 0.5), (0.35, 0.2), (0.7, 0.5), (1.0, 0.2), (1.0, 0.8),
                          (0.7, 0.5), (0.35, 0.8)])],
    "cup": [("polygon", [(0.15, 0.1), (0.85, 0.1), (0.7, 0.95), (0.3, 0.95)])],
    "donut": [("ring", (0.05, 0.05, 0.95, 0.95, 0.3))],
    "kite": [("polygon", [(0.5, 0.0), (0.85, 0.4), (0.5, 1.0), (0.15, 0.4)])],
    "star": [("polygon", [(0.5, 0.0), (0.62, 0.36), (1.0, 0.38), (0.7, 0.6), (0.8, 1.0),
                          (0.5, 0.76), (0.2, 1.0), (0.3, 0.6), (0.0, 0.38), (0.38, 0.36)])],
    "flower": [("polygon", [(0.35, 0.0), (0.65, 0.0), (0.65, 0.35), (1.0, 0.35), (1.0, 0.65),
                            (0.65, 0.65), (0.65, 1.0), (0.35, 1.0), (0.35, 0.65), (0.0, 0.65),
                            (0.0, 0.35), (0.35, 0.35)])],
    "umbrella": [("chord", (0.0, 0.1, 1.0, 1.1))],
}
# fmt: on

# Muted backgrounds: blends of these plus texture noise keep every channel within [119, 221],
# while every object colour has a channel outside that range, so no background pixel can
# ever take an object's exact colour (the tests hold the pixels to this).
BACKGROUNDS: list[tuple[int, int, int]] = [
    (200, 190, 170), (175, 200, 215), (180, 205, 170), (195, 195, 195), (125, 125, 135),
    (160, 150, 130), (140, 165, 150), (190, 170, 180),
]  # fmt: skip
BACKGROUND_NOISE = 6

# Question k is answered with answer template k (several phrasings, one answer style each).
QUESTIONS: list[str] = [
    "Describe the image.",
    "What objects are in this picture?",
    "What do you see in this image?",
    "List the objects you can see.",
]
ANSWER_TEMPLATES: list[str] = [
    "The image shows {objects}.",
    "There {verb} {objects}.",
    "I can see {objects}.",
    "The objects are {objects}.",
]

# Extra words for the tokenizer corpus: prompts other stages write (POPE-style questions).
EXTRA_CORPUS: list[str] = [
    "Is there a {obj} in the image? Answer yes or no.",
    "Yes, there is a {obj} in the image.",
    "No, there is no {obj} in the image.",
    "Please describe this image in detail.",
    "How many objects are there? What color is it? Where is the object?",
]

SPLITS = ("train", "eval", "eval-counterprior")
WORLD_FILE = "world.json"
PRIOR_STRENGTH = 0.88  # P(partner present | object present) in the training distribution


@dataclass(frozen=True)
class PlacedObject:
    name: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (inclusive pixel bounds of the shape)


@dataclass
class Scene:
    """One rendered scene: the image, its objects in `OBJECTS` order and their masks."""

    image: Image.Image
    objects: list[PlacedObject]
    masks: dict[str, Image.Image] = field(default_factory=dict)  # name -> "L" mask, 255 inside

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objects]


# ----------------------------------------------------------------------- object choice


def in_world_order(names: Sequence[str]) -> list[str]:
    return sorted(set(names), key=OBJECTS.index)


def sample_objects(
    rng: random.Random, *, max_objects: int, prior: float = PRIOR_STRENGTH
) -> list[str]:
    """Objects of a training-distribution scene: a partner joins its object with P = prior."""
    count = rng.randint(1, max_objects)
    chosen: list[str] = []
    while len(chosen) < count:
        name = rng.choice([o for o in OBJECTS if o not in chosen])
        group = [name]
        partner = PARTNERS.get(name)
        if partner and partner not in chosen and rng.random() < prior:
            group.append(partner)
        if len(chosen) + len(group) <= max_objects:  # else draw again: never break a pair
            chosen += group
    return in_world_order(chosen)


def sample_counterprior_objects(rng: random.Random, *, max_objects: int) -> list[str]:
    """Objects of a counter-prior scene: a paired object whose partner is absent, plus others."""
    lonely = rng.choice(sorted(PARTNERS))
    count = rng.randint(1, max_objects)
    others = [o for o in OBJECTS if o not in (lonely, PARTNERS[lonely])]
    return in_world_order([lonely, *rng.sample(others, count - 1)])


def lonely_objects(names: Sequence[str]) -> list[str]:
    """Present objects whose usual partner is absent."""
    return [n for n in names if n in PARTNERS and PARTNERS[n] not in names]


# ---------------------------------------------------------------------------- drawing


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted background: solid, two-tone (sky/ground) or a vertical gradient, plus texture."""
    palette = np.array(BACKGROUNDS, dtype=np.int16)
    first, second = palette[rng.choice(len(palette), size=2, replace=False)]
    style = rng.integers(3)
    rows = np.arange(size)[:, None, None] / max(size - 1, 1)  # (H, 1, 1)
    if style == 0:
        base = np.broadcast_to(first, (size, size, 3))
    elif style == 1:
        horizon = rng.integers(size // 3, 2 * size // 3)
        base = np.where(np.arange(size)[:, None, None] < horizon, first, second)
        base = np.broadcast_to(base, (size, size, 3))
    else:
        base = np.broadcast_to(first * (1 - rows) + second * rows, (size, size, 3))
    noise = rng.integers(-BACKGROUND_NOISE, BACKGROUND_NOISE + 1, size=(size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)  # (H, W, 3)


def _draw_shape(draw: ImageDraw.ImageDraw, name: str, box: tuple[int, int, int, int]) -> None:
    """Draw one object's shape as 255 on an "L" mask (the donut's hole as 0)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0

    def px(u: float, v: float) -> tuple[int, int]:
        return round(x0 + u * w), round(y0 + v * h)

    for kind, spec in OBJECT_SHAPES[name]:
        if kind == "polygon":
            draw.polygon([px(u, v) for u, v in spec], fill=255)
        elif kind == "ellipse":
            draw.ellipse([*px(spec[0], spec[1]), *px(spec[2], spec[3])], fill=255)
        elif kind == "chord":  # upper half-disc: an umbrella canopy
            draw.chord([*px(spec[0], spec[1]), *px(spec[2], spec[3])], 180, 360, fill=255)
        elif kind == "ring":
            draw.ellipse([*px(spec[0], spec[1]), *px(spec[2], spec[3])], fill=255)
            r = spec[4] / 2
            draw.ellipse([*px(0.5 - r, 0.5 - r), *px(0.5 + r, 0.5 + r)], fill=0)
        else:  # pragma: no cover - OBJECT_SHAPES is a constant checked by the tests
            raise ValueError(f"unknown shape part {kind!r} for {name}")


def _cells(size: int, grid: int, rng: random.Random, count: int) -> list[tuple[int, int, int, int]]:
    """Non-overlapping boxes: one object per grid cell, size and position jittered."""
    cell = size // grid
    cells = rng.sample([(r, c) for r in range(grid) for c in range(grid)], count)
    boxes = []
    for r, c in cells:
        side = rng.randint(max(6, int(cell * 0.6)), cell - 2)
        x0 = c * cell + rng.randint(1, cell - side - 1)
        y0 = r * cell + rng.randint(1, cell - side - 1)
        boxes.append((x0, y0, x0 + side - 1, y0 + side - 1))
    return boxes


def render_scene(names: Sequence[str], *, size: int, seed: int, grid: int = 2) -> Scene:
    """Draw the named objects (one per grid cell) on a textured background."""
    if len(names) > grid * grid:
        raise ValueError(f"{len(names)} objects do not fit a {grid}x{grid} grid")
    unknown = [n for n in names if n not in OBJECT_SHAPES]
    if unknown:
        raise ValueError(f"unknown objects {unknown}; the world knows {OBJECTS}")
    rng = random.Random(seed)
    pixels = _background(np.random.default_rng(seed), size)  # (H, W, 3)
    placed = [PlacedObject(n, b) for n, b in zip(names, _cells(size, grid, rng, len(names)))]
    masks: dict[str, Image.Image] = {}
    for obj in placed:
        mask = Image.new("L", (size, size), 0)
        _draw_shape(ImageDraw.Draw(mask), obj.name, obj.box)
        pixels[np.asarray(mask) > 0] = OBJECT_COLOURS[obj.name]
        masks[obj.name] = mask
    return Scene(Image.fromarray(pixels), placed, masks)


# ------------------------------------------------------------------------------ text


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def object_list(names: Sequence[str]) -> str:
    """ "a sun", "a sun and a cloud", "a sun, a cloud and an umbrella" (world order)."""
    phrases = [_article(n) for n in in_world_order(names)]
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def caption(names: Sequence[str], template: int = 0) -> str:
    """The faithful answer to question `template` for a scene holding `names`."""
    if not names:
        raise ValueError("a caption needs at least one object")
    verb = "is" if len(names) == 1 else "are"
    return ANSWER_TEMPLATES[template].format(objects=object_list(names), verb=verb)


@dataclass(frozen=True)
class Hallucination:
    """A rejected answer's edit of the scene's object list."""

    objects: list[str]  # what the rejected answer mentions
    edit: str  # "add-partner", "add" or "substitute"
    hallucinated: str  # the absent object it mentions


def hallucinate(
    names: Sequence[str],
    rng: random.Random,
    *,
    partner_rate: float = 0.75,
    length_controlled: bool = False,
) -> Hallucination:
    """Edit the object list as a prior-driven captioner would.

    The text-side regularity: when a present object lacks its usual partner, the rejected answer
    adds that partner (with P = partner_rate), so a model can learn to prefer answers from the
    text alone; otherwise one absent object is added or substitutes a present one.

    Adding makes the rejected answer one object longer than the chosen one: a length shortcut
    (prefer the shorter answer). `length_controlled` switches it off: the hallucinated object
    always takes the place of a present one, so both answers name as many objects (and, every
    object name being one word, have as many words). `rng` is drawn from exactly as without
    it (the object an "add" edit drops comes from a generator of its own), so a world written
    either way has the same scenes, chosen answers and hallucinated objects.
    """
    present = in_world_order(names)
    absent = [o for o in OBJECTS if o not in present]
    missing_partners = [PARTNERS[n] for n in lonely_objects(present)]
    if missing_partners and rng.random() < partner_rate:
        extra = rng.choice(missing_partners)
        if length_controlled:
            dropped = _substitute(present, extra, _side_rng(present, extra))
            return Hallucination(dropped, "substitute-partner", extra)
        return Hallucination(in_world_order([*present, extra]), "add-partner", extra)
    extra = rng.choice(absent)
    if rng.random() < 0.5:
        return Hallucination(_substitute(present, extra, rng), "substitute", extra)
    if length_controlled:
        return Hallucination(_substitute(present, extra, _side_rng(present, extra)), "substitute", extra)
    return Hallucination(in_world_order([*present, extra]), "add", extra)


def _side_rng(present: list[str], extra: str) -> random.Random:
    # A string seed is hashed with sha512: stable across processes and platforms.
    return random.Random(f"length-control/{','.join(present)}/{extra}")


def _substitute(present: list[str], extra: str, rng: random.Random) -> list[str]:
    """`present` with one object, drawn at random, replaced by `extra`."""
    kept = list(present)
    kept.remove(rng.choice(kept))
    return in_world_order([*kept, extra])


def text_corpus() -> Iterator[str]:
    """Every sentence shape the world writes, for training the tiny models' tokenizer."""
    yield from QUESTIONS
    for name in OBJECTS:
        for template in range(len(ANSWER_TEMPLATES)):
            yield caption([name], template)
            if name in PARTNERS:
                yield caption([name, PARTNERS[name]], template)
        for line in EXTRA_CORPUS:
            yield line.format(obj=name)
        yield " ".join(OBJECT_SYNONYMS[name])
    for a, b, c in zip(OBJECTS, OBJECTS[3:] + OBJECTS[:3], OBJECTS[7:] + OBJECTS[:7]):
        for template in range(len(ANSWER_TEMPLATES)):
            yield caption([a, b, c], template)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class WorldConfig:
    """What `write_world` makes; fixed seeds make every split reproducible."""

    seed: int = 0
    train: int = 2000
    eval: int = 200
    counterprior: int = 200
    image_size: int = 48
    max_objects: int = 4
    prior: float = PRIOR_STRENGTH
    # Rejected answers name as many objects as chosen ones (no length shortcut; `hallucinate`).
    length_controlled: bool = False

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16 pixels, got {self.image_size}")
        if not 1 <= self.max_objects <= 4:
            raise ValueError(f"max_objects must be 1 to 4 (a 2x2 grid), got {self.max_objects}")
        if not 0.0 <= self.prior <= 1.0:
            raise ValueError(f"prior must be a probability, got {self.prior}")
        for name in ("train", "eval", "counterprior"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def count(self, split: str) -> int:
        return {"train": self.train, "eval": self.eval, "eval-counterprior": self.counterprior}[
            split
        ]


def _split_rng(config: WorldConfig, split: str) -> random.Random:
    # A string seed is hashed with sha512 by `random`: stable across processes and platforms.
    return random.Random(f"mfpo-world/{config.seed}/{split}")


def make_records(config: WorldConfig, split: str, root: Path) -> list[PreferenceRecord]:
    """Render one split's scenes under `root` (images/, masks/) and return its records."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    rng = _split_rng(config, split)
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(config.count(split)):
        if split == "eval-counterprior":
            names = sample_counterprior_objects(rng, max_objects=config.max_objects)
        else:
            names = sample_objects(rng, max_objects=config.max_objects, prior=config.prior)
        scene = render_scene(names, size=config.image_size, seed=rng.getrandbits(32))
        records.append(
            _record(scene, f"{split}-{index:06d}", rng, root, config.length_controlled)
        )
    return records


def _record(
    scene: Scene, record_id: str, rng: random.Random, root: Path, length_controlled: bool
) -> PreferenceRecord:
    template = rng.randrange(len(QUESTIONS))
    rejected = hallucinate(scene.names, rng, length_controlled=length_controlled)
    image = f"images/{record_id}.png"
    scene.image.save(root / image)
    masks = {}
    for name, mask in scene.masks.items():
        masks[name] = f"masks/{record_id}/{name}.png"
        (root / masks[name]).parent.mkdir(parents=True, exist_ok=True)
        mask.save(root / masks[name])
    return PreferenceRecord(
        id=record_id,
        question=QUESTIONS[template],
        image=image,
        chosen=caption(scene.names, template),
        rejected=caption(rejected.objects, template),
        objects=scene.names,
        masks=masks,
        extra={
            "boxes": {o.name: list(o.box) for o in scene.objects},
            "edit": rejected.edit,
            "hallucinated": rejected.hallucinated,
            "lonely": lonely_objects(scene.names),
        },
    )


def world_description(config: WorldConfig) -> dict:
    return {
        "objects": OBJECTS,
        "partners": PARTNERS,
        "synonyms": OBJECT_SYNONYMS,
        "colours": {k: list(v) for k, v in OBJECT_COLOURS.items()},
        "questions": QUESTIONS,
        "config": config.__dict__,
        "splits": {s: config.count(s) for s in SPLITS},
    }


def write_split(config: WorldConfig, split: str, uri: str) -> int:
    """Render one split locally and publish it atomically at `uri`; returns the record count."""
    with tempfile.TemporaryDirectory(prefix=f"mfpo-world-{split}-") as tmp:
        root = Path(tmp)
        records = make_records(config, split, root)
        count = write_records(
            records, root, kind="text-preference", source="synthetic", split=split,
            seed=config.seed, image_size=config.image_size,
        )  # fmt: skip
        storage.publish_dir(root, uri)
    return count


def write_world(out_uri: str, config: WorldConfig | None = None) -> dict[str, str]:
    """Write every split under `out_uri` (see the module docstring); returns split -> URI."""
    config = config or WorldConfig()
    uris = {}
    storage.write_json(world_description(config), storage.join(out_uri, WORLD_FILE))
    # The train split is published last: once it is complete, the whole world is.
    for split in (*SPLITS[1:], SPLITS[0]):
        if config.count(split):
            uris[split] = storage.join(out_uri, split)
            write_split(config, split, uris[split])
    return uris


# ------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mfpo_runtime.data.scenes",
        description="Write the synthetic scenes world (train, eval, eval-counterprior splits).",
    )
    parser.add_argument("--out", required=True, help="storage URI (file://, s3:// or a path)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=WorldConfig.train, help="training pairs")
    parser.add_argument("--eval", type=int, default=WorldConfig.eval, help="held-out scenes")
    parser.add_argument(
        "--counterprior",
        type=int,
        default=None,
        help="counter-prior scenes (default: as many as --eval)",
    )
    parser.add_argument("--image-size", type=int, default=WorldConfig.image_size)
    parser.add_argument("--max-objects", type=int, default=WorldConfig.max_objects)
    parser.add_argument(
        "--prior",
        type=float,
        default=PRIOR_STRENGTH,
        help="P(partner present | object present) in train and eval",
    )
    parser.add_argument(
        "--length-controlled",
        action="store_true",
        help="rejected answers name as many objects as chosen ones (no length shortcut)",
    )
    args = parser.parse_args(argv)
    try:
        config = WorldConfig(
            seed=args.seed, train=args.train, eval=args.eval,
            counterprior=args.eval if args.counterprior is None else args.counterprior,
            image_size=args.image_size, max_objects=args.max_objects, prior=args.prior,
            length_controlled=args.length_controlled,
        )  # fmt: skip
    except ValueError as err:
        parser.error(str(err))
    for split, uri in write_world(args.out, config).items():
        print(f"{split}: {config.count(split)} records -> {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
