"""Datagen throughput on one CPU core: the per-record path, phase by phase, against the goal.

    python benchmarks/bench_datagen.py [--images 64] [--size 336] [--rounds 5] [--baseline]
                                       [--grounding-images 16]

The per-record path of the datagen stage without grounding (issue 14: >= 200 images/s/core
at 336 px): decode the source JPEG (`formats.decode_image`), rank the chosen answer's
keywords, noise the region (DDPM t=500), write the original and the perturbed PNG
(`datagen.write_png`) to a local folder. Two regions: a centred box covering a quarter of
the image, and the whole image (the fallback every RLAIF-V record takes without masks).

Each phase is timed in CPU seconds of this process (time.process_time), so images/s/core is
records per CPU second, and also in wall seconds; best of --rounds rounds, because the
machine may be shared: the load average (os.getloadavg) is printed beside every figure.
--baseline runs the previous implementation (kept below: numpy's ziggurat eps gathered over
the region's pixels, Pillow's PNG encoder, glibc's default heap trimming) side by side in
the same run, before the current one.

Then the keyword ranker alone, before issue 25 (every content word a candidate: the module
at commit 5960f0d, read from git by at_revision.py) and now (object noun phrases, tagged), side by side in CPU
milliseconds per answer, on the free-form answers above and on synthetic-world captions.

Then grounding, not part of the goal: the tiny random-weight CLIPSeg (the segmenter's cost
per image with three keywords) and annotation masks. torch is held to one thread.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from mfpo_runtime.data import formats, grounding, keywords, noise, scenes
from mfpo_runtime.stages.datagen import keep_freed_memory, write_png
from PIL import Image

GOAL = 200.0  # images/s/core, issue 14 point 4
PHASES = ("decode", "keywords", "noise", "encode")
ANSWERS = [
    "The image shows a red apple next to a banana on a wooden table, and a cup behind them.",
    "There is a cat sleeping on a sofa while a dog sits on the carpet near the window.",
    "A man is riding a horse along the beach; two birds fly above the waves at sunset.",
    "The kitchen has a white refrigerator, a microwave on the counter and a bowl of oranges.",
]


# ---------------------------------------------------------------- the previous implementation


def baseline_region_noise(image: Image.Image, boxes_or_mask, *, step: int, seed: int):
    """region_noise before issue 14: ziggurat eps for the whole image, gathered by the mask."""
    mask = noise.region_mask(image.size, boxes_or_mask)
    abar = noise.alpha_bar(step)
    original = np.asarray(image.convert("RGB"))
    eps = np.random.default_rng(seed).standard_normal(original.shape, dtype=np.float32)[mask]
    x0 = original[mask].astype(np.float32) / 127.5 - 1.0
    out = original.copy()
    out[mask] = np.asarray(noise.from_unit(noise.forward_diffuse(x0, abar, eps)[None]))[0]
    return Image.fromarray(out, mode="RGB")


def baseline_write_png(image: Image.Image, path: Path) -> None:
    image.save(path)  # Pillow's zlib encoder, level 6


# ---------------------------------------------------------------- inputs


def photo_like(size: int, seed: int) -> Image.Image:
    """Gradients, flat rectangles and sensor-like noise: compresses like a photo, not like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    pixels = np.stack([200 * x + 30, 180 * y + 40, 120 * (x + y) / 2 + 60], axis=-1)
    for _ in range(6):
        x0, y0 = rng.integers(0, size * 3 // 4, 2)
        w, h = rng.integers(size // 10, size // 3, 2)
        pixels[y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 256, 3)
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def centred_box(size: int) -> list[list[int]]:
    return [[size // 4, size // 4, 3 * size // 4, 3 * size // 4]]


# ---------------------------------------------------------------- the per-record path


@contextlib.contextmanager
def phase(spent: dict[str, list[float]], name: str):
    """Adds the block's CPU and wall seconds to spent[name]."""
    cpu, wall = time.process_time(), time.perf_counter()
    yield
    spent[name][0] += time.process_time() - cpu
    spent[name][1] += time.perf_counter() - wall


def run_round(sources, region, out_dir: Path, *, region_noise, write) -> dict[str, list[float]]:
    """One pass over the records: per phase, [cpu seconds, wall seconds]."""
    spent = {name: [0.0, 0.0] for name in PHASES}
    for index, data in enumerate(sources):
        record_id = f"bench-{index:06d}"
        with phase(spent, "decode"):
            image = formats.decode_image(data, record_id)
        with phase(spent, "keywords"):
            keywords.rank_keywords(ANSWERS[index % len(ANSWERS)], top_k=3)
        with phase(spent, "noise"):
            seed = noise.seed_for(0, record_id)
            perturbed = region_noise(image, region, step=500, seed=seed)
        with phase(spent, "encode"):
            write(image, out_dir / f"{index:08d}.png")
            write(perturbed, out_dir / f"{index:08d}-perturbed.png")
    return spent


def measure(sources, region, rounds: int, **impl) -> tuple[dict[str, list[float]], tuple]:
    """The best round by CPU time, and the load average when it ended."""
    best, load = None, None
    with tempfile.TemporaryDirectory() as tmp:
        run_round(sources[:2], region, Path(tmp), **impl)  # warm-up: tables, imports, caches
        for _ in range(rounds):
            spent = run_round(sources, region, Path(tmp), **impl)
            if best is None or total(spent, 0) < total(best, 0):
                best, load = spent, os.getloadavg()
    return best, load


def total(spent: dict[str, list[float]], which: int) -> float:
    return sum(times[which] for times in spent.values())


def report(name: str, spent, load, count: int) -> float:
    cpu, wall = total(spent, 0), total(spent, 1)
    rate = count / cpu
    shares = "  ".join(f"{p} {100 * spent[p][0] / cpu:4.1f}%" for p in PHASES)
    print(
        f"{name:<26} {rate:7.1f} images/s/core (cpu)  {count / wall:7.1f} /s wall  "
        f"x{rate / GOAL:4.2f} of {GOAL:.0f}  load {load[0]:.2f}"
    )
    print(f"{'':<26} {shares}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=336)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", action="store_true", help="also the previous implementation")
    parser.add_argument("--grounding-images", type=int, default=16, help="0: skip grounding")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sources = [jpeg_bytes(photo_like(args.size, seed)) for seed in range(args.images)]
    current = {"region_noise": noise.region_noise, "write": write_png}
    previous = {"region_noise": baseline_region_noise, "write": baseline_write_png}

    print(
        f"datagen per record at {args.size}px, {args.images} records, best of {args.rounds} "
        f"rounds, 1 thread; goal {GOAL:.0f} images/s/core"
    )
    regions = {"box": centred_box(args.size), "whole": None}
    previous_rates = {}
    if args.baseline:  # first: keep_freed_memory() below changes the whole process
        for label, region in regions.items():
            spent, load = measure(sources, region, args.rounds, **previous)
            previous_rates[label] = report(f"previous, {label}", spent, load, args.images)
    keep_freed_memory()  # as the datagen stage does
    for label, region in regions.items():
        spent, load = measure(sources, region, args.rounds, **current)
        rate = report(f"keywords+noise {label}", spent, load, args.images)
        if label in previous_rates:
            print(f"{'':<26} speed-up x{rate / previous_rates[label]:.2f} over the previous")
    bench_keywords(args.rounds)
    if args.grounding_images:
        bench_grounding(args.size, args.images, args.grounding_images)


def rate(work: Callable[[int], object], count: int) -> float:
    """Items per CPU second over `count` calls, after one warm-up call."""
    work(0)
    start = time.process_time()
    for i in range(count):
        work(i)
    return count / (time.process_time() - start)


def bench_keywords(rounds: int) -> None:
    """CPU ms per answer of the ranker before issue 25 and of the current one, best of rounds."""
    from at_revision import module_at  # beside this script
    from keyword_precision import RANKER_BEFORE

    before = module_at(*RANKER_BEFORE)

    captions = [scenes.caption(scenes.OBJECTS[i : i + 1 + i % 4], i % 4) for i in range(12)]
    for label, answers in (("free-form", ANSWERS), ("synthetic", captions)):
        times = {}
        for name, rank in (("before", before.rank_keywords), ("current", keywords.rank_keywords)):
            rank(answers[0], top_k=3)  # warm-up: the tagger's lexicon loads on first use
            best = min(_cpu_seconds(rank, answers) for _ in range(rounds))
            times[name] = 1000 * best / len(answers)
        print(
            f"keywords {label:<17} before {times['before']:5.2f} ms/answer  current "
            f"{times['current']:5.2f} ms/answer  ratio current/before "
            f"{times['current'] / times['before']:4.2f}  load {os.getloadavg()[0]:.2f}"
        )


def _cpu_seconds(rank, answers, repeats: int = 20) -> float:
    start = time.process_time()
    for _ in range(repeats):
        for answer in answers:
            rank(answer, top_k=3)
    return (time.process_time() - start) / repeats


def bench_grounding(size: int, count: int, segmenter_count: int) -> None:
    pics = [photo_like(size, seed) for seed in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        clipseg = grounding.CLIPSegGrounder.from_uri(
            grounding.build_tiny_clipseg(tmp, image_size=64).as_posix()
        )
        mask = np.zeros((size, size), np.uint8)
        mask[: size // 2, : size // 2] = 255
        masks = {"apple": Image.fromarray(mask, mode="L")}
        annotation = grounding.AnnotationGrounder()
        words = ["apple", "banana", "table"]
        seg = rate(lambda i: grounding.ground(clipseg, pics[i % len(pics)], words), segmenter_count)
        ann = rate(lambda i: grounding.ground(annotation, pics[i % len(pics)], words, masks), count)
    load = os.getloadavg()[0]
    print(
        f"grounding tiny CLIPSeg     {seg:7.1f} images/s/core (3 keywords, {size}px)  load {load:.2f}"
    )
    print(f"grounding annotation       {ann:7.1f} images/s/core  load {load:.2f}")
    print(f"ratio annotation/clipseg   {ann / seg:7.2f}")


if __name__ == "__main__":
    main()
