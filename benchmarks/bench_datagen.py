"""Datagen throughput on one CPU core: keyword ranking + region noise, and grounding.

    python benchmarks/bench_datagen.py [--images 64] [--size 336] [--grounding-images 16]

Prints images per second per core for
  1. keyword ranking (multipartite PageRank) of a chosen answer,
  2. region noise (DDPM t=500) on a size x size image, and both together,
  3. grounding with the tiny random-weight CLIPSeg (the segmenter's cost per image with
     three keywords) and with annotation masks,
and the ratios measured side by side (noise / keywords, clipseg / annotation). torch is held to
one thread so the figures are per core.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from mfpo_runtime.data import grounding, keywords, noise
from PIL import Image

ANSWERS = [
    "The image shows a red apple next to a banana on a wooden table, and a cup behind them.",
    "There is a cat sleeping on a sofa while a dog sits on the carpet near the window.",
    "A man is riding a horse along the beach; two birds fly above the waves at sunset.",
    "The kitchen has a white refrigerator, a microwave on the counter and a bowl of oranges.",
]


def rate(work: Callable[[int], object], count: int) -> float:
    """Items per second over `count` calls, after one warm-up call."""
    work(0)
    start = time.perf_counter()
    for i in range(count):
        work(i)
    return count / (time.perf_counter() - start)


def images(count: int, size: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)
    ]


def half_box(size: int) -> list[list[int]]:
    return [[size // 4, size // 4, 3 * size // 4, 3 * size // 4]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=336)
    parser.add_argument("--grounding-images", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pics = images(8, args.size)
    boxes = half_box(args.size)

    def rank(i: int) -> list[str]:
        return keywords.rank_keywords(ANSWERS[i % len(ANSWERS)], top_k=3)

    def perturb(i: int) -> Image.Image:
        return noise.region_noise(pics[i % len(pics)], boxes, step=500, seed=i)

    def both(i: int) -> Image.Image:
        rank(i)
        return perturb(i)

    kw, nz, full = (rate(f, args.images) for f in (rank, perturb, both))
    print(f"keyword ranking            {kw:9.1f} answers/s/core")
    print(f"region noise {args.size}px          {nz:9.1f} images/s/core")
    print(f"keywords + noise {args.size}px      {full:9.1f} images/s/core")
    print(f"ratio noise/keywords cost  {kw / nz:9.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        clipseg = grounding.CLIPSegGrounder.from_uri(
            grounding.build_tiny_clipseg(tmp, image_size=64).as_posix()
        )
        mask = np.zeros((args.size, args.size), np.uint8)
        mask[: args.size // 2, : args.size // 2] = 255
        masks = {"apple": Image.fromarray(mask, mode="L")}
        annotation = grounding.AnnotationGrounder()
        words = ["apple", "banana", "table"]
        seg = rate(
            lambda i: grounding.ground(clipseg, pics[i % len(pics)], words), args.grounding_images
        )
        ann = rate(
            lambda i: grounding.ground(annotation, pics[i % len(pics)], words, masks), args.images
        )
    print(f"grounding tiny CLIPSeg     {seg:9.1f} images/s/core (3 keywords, {args.size}px)")
    print(f"grounding annotation       {ann:9.1f} images/s/core")
    print(f"ratio annotation/clipseg   {ann / seg:9.2f}")


if __name__ == "__main__":
    main()
