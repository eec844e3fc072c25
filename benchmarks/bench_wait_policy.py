"""Does OpenMP's wait policy change a 2-thread training's weights, and its time on a busy machine?

    python benchmarks/bench_wait_policy.py            # 2 rounds, 40 steps each

Trains the same small captioner (the bootstrap, 40 steps, 2 threads, deterministic kernels) in
fresh processes with OMP_WAIT_POLICY unset (libgomp's default: a waiting thread spins) and with
OMP_WAIT_POLICY=PASSIVE (it sleeps), alternating, and prints each one's wall and CPU seconds and
a hash of its weights. The wait policy only says what a thread does while it waits for its
partner, so the weights must be identical; on CPUs shared with other work the spinning thread
burns the time its partner needs (bench_ablations.py sets PASSIVE for its stage processes).
Timings are side by side, in one run: on a shared machine only their ratio means something.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import hashlib, json, sys, time
from mfpo_runtime import bootstrap
from mfpo_runtime.models import TinySize, load_vlm
world, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = bootstrap.BootstrapConfig(world=world, out=out, steps=steps, batch_size=16, eval_samples=0,
                                   threads=2, size=TinySize(vision_hidden=32, text_hidden=64, heads=4))
wall, cpu = time.monotonic(), time.process_time()
bootstrap.bootstrap(config, progress=False)
wall, cpu = time.monotonic() - wall, time.process_time() - cpu
state = load_vlm(out).model.state_dict()
digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()[:16]
print(json.dumps({"wall": wall, "cpu": cpu, "weights": digest}))
"""


def train(world: str, out: str, steps: int, policy: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "MFPO_THREADS")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    done = subprocess.run([sys.executable, "-c", CHILD, world, out, str(steps)], env=env, check=True,
                          capture_output=True, text=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    from mfpo_runtime.data.scenes import WorldConfig, write_world

    tmp = Path(tempfile.mkdtemp(prefix="mfpo-wait-policy-"))
    write_world(str(tmp / "world"), WorldConfig(seed=0, train=64, eval=0, counterprior=0, image_size=32))
    load = os.getloadavg()[0]
    print(f"{args.rounds} rounds of {args.steps} steps at 2 threads; load average {load:.1f} at the start")
    results = {"default": [], "PASSIVE": []}
    for round_ in range(args.rounds):
        for name, policy in (("default", None), ("PASSIVE", "PASSIVE")):
            got = train(str(tmp / "world"), str(tmp / f"{name}-{round_}"), args.steps, policy)
            results[name].append(got)
            print(f"  {name:>8}: wall {got['wall']:6.1f} s, cpu {got['cpu']:6.1f} s, weights {got['weights']}")
    hashes = {r["weights"] for runs in results.values() for r in runs}
    spin = sum(r["wall"] for r in results["default"])
    sleep = sum(r["wall"] for r in results["PASSIVE"])
    print(f"weights identical in all {2 * args.rounds} runs: {len(hashes) == 1}; "
          f"default / PASSIVE wall time: {spin / sleep:.1f}x; load average {os.getloadavg()[0]:.1f} at the end")
    return 0 if len(hashes) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
