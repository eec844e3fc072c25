"""How far apart are the bootstrap captioner's weights at 1 and 2 threads, same seed?

    python benchmarks/bench_thread_spread.py

Trains three small captioners (30 steps) with `threads` 1, 2 and 2 again and prints, per
pair, whether the weights are identical and their largest absolute difference: the same
thread count must give identical weights; another count shows the spread a machine with
other defaults would see.
"""

from __future__ import annotations

import tempfile

import torch
from mfpo_runtime import bootstrap
from mfpo_runtime.data.scenes import WorldConfig, write_world
from mfpo_runtime.models import TinySize, load_vlm


def main() -> None:
    tmp = tempfile.mkdtemp(prefix="mfpo-thread-spread-")
    write_world(f"{tmp}/w", WorldConfig(seed=0, train=64, eval=0, counterprior=0, image_size=32))
    weights = {}
    for name, threads in (("t1", 1), ("t2", 2), ("t2b", 2)):
        config = bootstrap.BootstrapConfig(
            world=f"{tmp}/w", out=f"{tmp}/{name}", steps=30, batch_size=16, eval_samples=0,
            threads=threads, size=TinySize(vision_hidden=32, text_hidden=64, heads=4),
        )  # fmt: skip
        bootstrap.bootstrap(config, progress=False)
        weights[name] = load_vlm(f"{tmp}/{name}").model.state_dict()
    for a, b in (("t1", "t2"), ("t2", "t2b")):
        diff = max((weights[a][k].float() - weights[b][k].float()).abs().max().item() for k in weights[a])
        same = all(torch.equal(weights[a][k], weights[b][k]) for k in weights[a])
        print(f"{a} vs {b}: identical={same} max|dw|={diff:.3e}")


if __name__ == "__main__":
    main()
