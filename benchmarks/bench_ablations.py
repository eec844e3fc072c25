"""The paper's ablations on the synthetic world: does each part of MFPO earn its place?

    python benchmarks/bench_ablations.py --quick          # <= 10 min on 2 idle cores
    python benchmarks/bench_ablations.py                  # the whole benchmark, <= 90 min
    python benchmarks/bench_ablations.py --report-only    # tables and plots from finished runs
    python benchmarks/bench_ablations.py --repeat mfpo-d-lr1-s0   # rerun one from scratch, compare
    python benchmarks/bench_ablations.py --variants top-1,step-200   # only these (and MFPO)

Variants (MFPO = text + image + anchor terms, keyword-region noise, 3-stage curriculum):
text-only DPO; DPO + anchor (= MFPO without the image term: the same objective, run once);
MFPO; random-region noise of equal area; global noise; without the anchor; one stage instead
of the curriculum; m' made from the top-1 keyword's region only, with noise step 200 instead
of 500, and the anchor at weight 2 (issue 26: do answers stop naming objects because m'
erases them all?). Each
over the profile's seeds; text-only DPO and MFPO also over three learning rates (their
CHAIR-vs-recall frontiers), the others at MFPO's. Everything runs twice: on the default world
(rejected answers one object longer: the length shortcut) and on the length-controlled one
(`scenes.WorldConfig.length_controlled`).

Every run is an MFPORun executed by the local runner (`LocalRunner(manifest).run()`), as the
demo does. Runs that differ only in the objective or the seed share one datagen and score
(copied from the group's first run, as `mfpo demo` does); variants with another m' (noise region,
keywords, step) make their own datagen (their own score gives the same bins: sampling is
seeded); one-stage makes its own score. All runs train the same number of steps (one epoch
of the same training pairs).

Resumable: a run whose final evaluation exists is never run again; a half-finished one
continues through the local runner's own resume. One progress line per run, with an estimate
of the time left. Writes under --out: report.md (tables), frontier-<world>.png,
results.json (every run's metrics and seconds, thread count, versions, load average).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path

from mfpo_core import storage
from mfpo_core.api import MFPORun
from mfpo_core.contract import eval_result_uri
from mfpo_operator.local import LocalRunner


@dataclass(frozen=True)
class Profile:
    """How big the world, the captioner and the evaluation are: the benchmark's time budget."""

    train: int  # preference pairs per run (one epoch, batch 4); the captioner sees the whole world
    eval: int  # images per evaluation split (eval and eval-counterprior)
    bootstrap_steps: int
    seeds: tuple[int, ...]
    learning_rates: tuple[float, ...]  # the frontier of text-only DPO and MFPO
    mfpo_lr: float  # every other variant's learning rate
    entropy_samples: int = 4
    eval_tokens: int = 24
    lengths: tuple[str, ...] = ("default", "length-controlled")
    variants: tuple[str, ...] | None = None  # None: all


PROFILES = {
    # 120 steps a run: learning rates 2.5x those of the quickstart (500 steps at 2e-4), so that
    # rate x steps spans the quickstart's; set before any run, never tuned on the results.
    "full": Profile(train=480, eval=100, bootstrap_steps=900, seeds=(0, 1, 2),
                    learning_rates=(2.5e-4, 5e-4, 1e-3), mfpo_lr=5e-4),
    "quick": Profile(train=160, eval=40, bootstrap_steps=400, seeds=(0,), learning_rates=(5e-4,),
                     mfpo_lr=5e-4, eval_tokens=20,
                     variants=("mfpo", "text-dpo", "dpo-anchor", "global-noise")),
    # For trying the script itself (seconds of training; numbers mean nothing).
    "smoke": Profile(train=24, eval=8, bootstrap_steps=20, seeds=(0,), learning_rates=(2e-4,),
                     mfpo_lr=2e-4, entropy_samples=2, eval_tokens=8, lengths=("default",),
                     variants=("mfpo", "one-stage")),
}  # fmt: skip


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    weights: tuple[float, float, float]  # text, image, anchor
    grounding: str = "annotation"
    stages: int = 3
    frontier: bool = False  # run over every learning rate of the profile
    top_k: int = 3  # imagePreference.keywords.topK
    noise_step: int = 500  # imagePreference.noise.step (of 1000)

    @property
    def datagen_group(self) -> str:
        """Runs of one datagen group make the same m' (grounding, keywords, noise step)."""
        if (self.top_k, self.noise_step) == (3, 500):
            return "keyword" if self.grounding == "annotation" else self.grounding
        return f"{self.grounding}-top{self.top_k}-t{self.noise_step}"

    @property
    def data_group(self) -> str:
        """Runs of one group share datagen and score: they differ in objective or seed only."""
        return self.datagen_group if self.stages == 3 else f"{self.datagen_group}-{self.stages}-stages"


VARIANTS = [
    Variant("mfpo", "MFPO (keyword regions)", (1, 1, 1), frontier=True),
    Variant("text-dpo", "text-only DPO", (1, 0, 0), frontier=True),
    Variant("dpo-anchor", "DPO + anchor = MFPO without L_image", (1, 0, 1)),
    Variant("random-region", "MFPO, random region of equal area", (1, 1, 1), grounding="random-region"),
    Variant("global-noise", "MFPO, global noise", (1, 1, 1), grounding="whole-image"),
    Variant("no-anchor", "MFPO without L_anchor", (1, 1, 0)),
    Variant("one-stage", "MFPO, one stage (no curriculum)", (1, 1, 1), stages=1),
    # Issue 26 (why MFPO's answers name nothing): m' that removes less -- one keyword's region
    # instead of three, milder noise (t = 200 instead of 500) -- and a stronger anchor.
    Variant("top-1", "MFPO, top-1 keyword region", (1, 1, 1), top_k=1),
    Variant("step-200", "MFPO, noise step 200", (1, 1, 1), noise_step=200),
    Variant("anchor-2", "MFPO, anchor weight 2", (1, 1, 2)),
]
REFERENCE = "mfpo"
WORLD_TRAIN = 2000  # scenes of the train split (the demo's world): the captioner's captions
LENGTH_TAG = {"default": "d", "length-controlled": "lc"}
SPLITS = {"eval": "", "eval-counterprior": "counterprior."}  # split -> metric prefix


@dataclass(frozen=True)
class PlannedRun:
    variant: Variant
    length: str
    lr: float
    lr_index: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.variant.name}-{LENGTH_TAG[self.length]}-lr{self.lr_index}-s{self.seed}"

    @property
    def policy(self) -> str:
        return f"align-{self.variant.stages}"


def plan(profile: Profile) -> list[PlannedRun]:
    """Every run, MFPO at its learning rate and seed 0 first in each world (the group sources)."""
    chosen = [v for v in VARIANTS if profile.variants is None or v.name in profile.variants]
    runs = []
    for length in profile.lengths:
        for variant in chosen:
            rates = profile.learning_rates if variant.frontier else (profile.mfpo_lr,)
            for seed in profile.seeds:
                for rate in rates:
                    index = profile.learning_rates.index(rate) if rate in profile.learning_rates else 0
                    runs.append(PlannedRun(variant, length, rate, index, seed))
    return sorted(runs, key=lambda r: (profile.lengths.index(r.length), r.lr != profile.mfpo_lr))


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    out: Path

    def world(self, length: str) -> str:
        return f"file://{self.out}/world-{length}"

    @property
    def base_model(self) -> str:
        return f"file://{self.out}/base-model"

    @property
    def artifacts(self) -> str:
        return f"file://{self.out}/runs"

    def run_uri(self, run: PlannedRun) -> str:
        return storage.join(self.artifacts, run.name)

    def result(self, run: PlannedRun) -> str:
        return eval_result_uri(self.run_uri(run), run.policy, "synthetic")


def manifest(run: PlannedRun, profile: Profile, layout: Layout, *, evaluate_base: bool) -> MFPORun:
    """The quickstart recipe (examples/quickstart.yaml) under this run's variant, rate and seed."""
    text, image, anchor = run.variant.weights
    return MFPORun.model_validate({
        "apiVersion": "mfpo.dev/v1alpha1", "kind": "MFPORun", "metadata": {"name": run.name},
        "spec": {
            "model": {"uri": layout.base_model, "family": "llava", "finetune": "lora",
                      "lora": {"r": 8, "alpha": 16, "dropout": 0.0}},
            "data": {"uri": layout.world(run.length) + "/train", "format": "synthetic",
                     "maxSamples": profile.train},
            "storage": {"uri": layout.artifacts},
            "imagePreference": {"keywords": {"topK": run.variant.top_k},
                                "grounding": {"method": run.variant.grounding, "fallbackWholeImage": True},
                                "noise": {"step": run.variant.noise_step, "scheduleSteps": 1000},
                                "shards": 1, "seed": 0},
            "curriculum": {"stages": run.variant.stages, "entropySamples": profile.entropy_samples,
                           "temperature": 1.0, "maxNewTokens": 16, "reference": "base"},
            "objective": {"beta": 0.1, "eta": 0.0, "weights": {"text": text, "image": image, "anchor": anchor}},
            "training": {"epochs": 1, "learningRate": run.lr, "lrScheduler": "constant", "warmupRatio": 0.0,
                         "batchSize": 4, "gradientAccumulation": 1, "precision": "fp32",
                         "checkpointEverySteps": 25, "maxLength": 256, "seed": run.seed},
            "evaluation": {"benchmarks": [{"name": "synthetic", "uri": layout.world(run.length),
                                           "maxSamples": profile.eval}],
                           "evaluateBase": evaluate_base, "everyStage": False,
                           "maxNewTokens": profile.eval_tokens, "batchSize": 20},
            "resources": {"gpusPerNode": 0, "cpu": "2", "memory": "4Gi", "shmSize": "1Gi"},
            "retries": {"maxAttempts": 2, "backoffSeconds": 1},
        },
    })  # fmt: skip


def share_stages(run: PlannedRun, runs: list[PlannedRun], layout: Layout) -> None:
    """Copy datagen (and score) from the first run of the same data group, once it has them;
    datagen alone from the first run with the same m' (one-stage: the same data, its own bins)."""
    world = [r for r in runs if r.length == run.length]
    same_group = [r for r in world if r.variant.data_group == run.variant.data_group]
    same_datagen = [r for r in world if r.variant.datagen_group == run.variant.datagen_group]
    parts = []
    if same_group[0] is not run:
        parts = [(same_group[0], "datagen"), (same_group[0], "score")]
    elif same_datagen[0] is not run:
        parts = [(same_datagen[0], "datagen")]
    for source, part in parts:
        src, dst = storage.join(layout.run_uri(source), part), storage.join(layout.run_uri(run), part)
        if storage.list_files(src) and not storage.list_files(dst):
            storage.copy_dir(src, dst)


# ---------------------------------------------------------------------- preparation


def prepare(profile: Profile, layout: Layout, threads: int) -> None:
    """Both worlds (same scenes and evaluation splits) and one captioner for all runs, trained
    on the whole default-size train split as the demo's is (runs use its first `train` pairs)."""
    import subprocess

    for length in profile.lengths:
        if storage.exists(layout.world(length) + "/train") and storage.is_complete(layout.world(length) + "/train"):
            continue
        command = [sys.executable, "-m", "mfpo_runtime.data.scenes", "--out", layout.world(length),
                   "--train", str(max(profile.train, WORLD_TRAIN)), "--eval", str(profile.eval)]  # fmt: skip
        subprocess.run(command + (["--length-controlled"] if length == "length-controlled" else []), check=True)
    if storage.exists(layout.base_model) and storage.is_complete(layout.base_model):
        return
    print(f"== bootstrapping the captioner ({profile.bootstrap_steps} steps) ==", flush=True)
    subprocess.run(
        [sys.executable, "-m", "mfpo_runtime.bootstrap", "--world", layout.world(profile.lengths[0]),
         "--out", layout.base_model, "--steps", str(profile.bootstrap_steps), "--threads", str(threads),
         "--eval-samples", "0", "--no-progress"],
        check=True,
    )  # fmt: skip


# ---------------------------------------------------------------------------- running


@dataclass
class Ledger:
    """What this benchmark measured about itself: seconds per run and the machine's load."""

    seconds: dict[str, float] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)  # 1-minute load average after each run
    started: float = field(default_factory=time.monotonic)


def start_run(
    run: PlannedRun, runs: list[PlannedRun], profile: Profile, layout: Layout, *, evaluate_base: bool
) -> LocalRunner:
    """The run's local runner, its prefix claimed, then the stages it shares copied in (copied
    first, they would be artifacts no ownership record says are its own: mfpo_core.ownership)."""
    runner = LocalRunner(manifest(run, profile, layout, evaluate_base=evaluate_base), progress=False)
    runner.claim()
    share_stages(run, runs, layout)
    return runner


def run_all(runs: list[PlannedRun], profile: Profile, layout: Layout, ledger: Ledger) -> bool:
    base_run = runs[0]
    total = len(runs)
    for number, run in enumerate(runs, 1):
        if storage.exists(layout.result(run)):
            print(f"[{number:>2}/{total}] {run.name}: done earlier", flush=True)
            continue
        began = time.monotonic()
        status = start_run(run, runs, profile, layout, evaluate_base=run is base_run).run()
        if status.phase != "Succeeded":
            print(f"[{number:>2}/{total}] {run.name}: {status.phase}; see {layout.run_uri(run)}", file=sys.stderr)
            return False
        ledger.seconds[run.name] = round(time.monotonic() - began, 1)
        ledger.load.append(os.getloadavg()[0])
        print(progress_line(number, total, run, ledger, layout), flush=True)
    return True


def progress_line(number: int, total: int, run: PlannedRun, ledger: Ledger, layout: Layout) -> str:
    metrics = storage.read_json(layout.result(run))["metrics"]
    timed = list(ledger.seconds.values())
    left = (total - number) * sum(timed) / len(timed)
    return (
        f"[{number:>2}/{total}] {run.name}: {timed[-1]:.0f} s  CHAIRs {metrics['chair_s']:.3f} "
        f"recall {metrics['recall']:.3f} | elapsed {(time.monotonic() - ledger.started) / 60:.1f} min, "
        f"~{left / 60:.0f} min left ({sum(timed) / len(timed):.0f} s/run, load {ledger.load[-1]:.1f})"
    )


def repeat(name: str, runs: list[PlannedRun], profile: Profile, layout: Layout) -> int:
    """Run finished run `name` again from scratch (its own datagen, score, training and
    evaluation) as `<name>-repeat`, and compare every evaluation metric digit for digit: the
    determinism the results rely on (same seed, same thread count, same numbers)."""
    run = next((r for r in runs if r.name == name), None)
    if run is None:
        print(f"--repeat: no run named {name!r} in this profile", file=sys.stderr)
        return 2
    if not storage.exists(layout.result(run)):
        print(f"--repeat: {name} has not finished; run the benchmark first", file=sys.stderr)
        return 2
    again = manifest(run, profile, layout, evaluate_base=False)
    again = again.model_copy(update={"metadata": again.metadata.model_copy(update={"name": f"{name}-repeat"})})
    began = time.monotonic()
    status = LocalRunner(again, progress=False).run()
    if status.phase != "Succeeded":
        print(f"{name}-repeat: {status.phase}", file=sys.stderr)
        return 1
    first = storage.read_json(layout.result(run))["metrics"]
    second = storage.read_json(
        eval_result_uri(storage.join(layout.artifacts, f"{name}-repeat"), run.policy, "synthetic")
    )["metrics"]
    differing = sorted(k for k in first.keys() | second.keys() if first.get(k) != second.get(k))
    print(f"{name}-repeat: {time.monotonic() - began:.0f} s, {len(first)} metrics, "
          f"{len(differing)} differ from the first run{': ' + ', '.join(differing) if differing else ''}")
    for key in differing:
        print(f"  {key}: {first.get(key)!r} then {second.get(key)!r}")
    return 1 if differing else 0


def environment(threads: int) -> dict[str, object]:
    """Thread count and versions every result is recorded with (without importing torch)."""
    versions = {name: metadata.version(name) for name in ("torch", "transformers", "peft", "numpy")}
    return {"threads": threads, **versions, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}  # fmt: skip


def _earlier_timing(layout: Layout) -> dict | None:
    path = layout.out / "results.json"
    if not path.exists():
        return None
    earlier = json.loads(path.read_text())
    return {k: earlier[k] for k in ("seconds_total", "seconds_per_run", "load_average") if k in earlier}


def variant_names(text: str) -> tuple[str, ...]:
    """--variants: known names, MFPO (the reference and every group's first run) always in."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = [v.name for v in VARIANTS]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"--variants: unknown {unknown or 'empty list'}; expected some of {known}")
    return tuple(n for n in known if n in names or n == REFERENCE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the <= 10 minute profile")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None)
    parser.add_argument("--out", default=None, help="default: runs/ablations/<profile>")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every stage process")
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds")
    parser.add_argument("--report-only", action="store_true", help="no runs: tables from finished ones")
    parser.add_argument("--repeat", metavar="RUN", help="run a finished run again from scratch and compare its metrics")
    parser.add_argument("--variants", type=variant_names, default=None,
                        help=f"comma-separated, of {', '.join(v.name for v in VARIANTS)}: only these (and "
                             f"{REFERENCE}, the reference of every table); default: the profile's")  # fmt: skip
    args = parser.parse_args(argv)
    name = args.profile or ("quick" if args.quick else "full")
    profile = PROFILES[name]
    if args.variants:
        profile = replace(profile, variants=args.variants)
    layout = Layout(Path(args.out or f"runs/ablations/{name}").resolve())
    # The stage processes inherit both; MFPO_THREADS wins over OMP_NUM_THREADS in a stage
    # (mfpo_core.cpus), so one left in the caller's environment would override --threads.
    os.environ["MFPO_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)
    # OpenMP threads that sleep instead of spinning while they wait for each other: on a machine
    # whose CPUs are shared, a spinning thread burns the time its partner needs. Same threads,
    # same work split, same numbers (measured: a 40-step bootstrap at 2 threads under load ~11
    # gave identical weights in 24-30 s instead of 352-367 s; benchmarks/bench_wait_policy.py).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    ledger = Ledger()
    runs = plan(profile)
    if args.repeat:
        return repeat(args.repeat, runs, profile, layout)
    print(f"{len(runs)} runs ({name} profile) under {layout.out}, {args.threads} threads", flush=True)
    load_before = os.getloadavg()[0]
    if not args.report_only:
        prepare(profile, layout, args.threads)
        if not run_all(runs, profile, layout, ledger):
            return 1
    from ablation_report import write_report  # the statistics import numpy and the runtime

    timing = {"seconds_total": round(time.monotonic() - ledger.started, 1), "seconds_per_run": ledger.seconds,
              "load_average": {"before": load_before, "after_each_run": ledger.load}}  # fmt: skip
    if args.report_only:  # the timings are those of the session that ran the runs, if it finished
        timing = _earlier_timing(layout) or {"seconds_total": None}
    write_report(
        runs, layout, profile, rounds=args.rounds,
        meta={"profile": name, "settings": asdict(profile), "environment": environment(args.threads), **timing},
    )  # fmt: skip
    print(f"report: {layout.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
