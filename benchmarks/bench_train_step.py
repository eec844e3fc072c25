"""The MFPO training step against TRL's DPOTrainer step: same model, batch and machine.

    python benchmarks/bench_train_step.py                         # every CPU preset, one table
    python benchmarks/bench_train_step.py --preset llava-like     # one preset
    python benchmarks/bench_train_step.py --preset llava-7b --device cuda --dtype bf16   # GPU

CPU presets (tiny LLaVA of the real class, LoRA r=8 on the language model's attention, fp32):

    preset      image tokens  text hidden/layers  batch  answers
    tiny                  36              64 / 2      4  the world's (~10 tokens)
    small                 64             256 / 4      8  the world's
    llava-like           256             256 / 4      4  ~40 tokens (LLaVA's rows: image tokens >= 4x text)

Each preset runs in its own process (so its peak RSS is its own) and times, interleaved round
by round after two warm-up steps, one optimizer step (forward, backward, AdamW) of:

    trl-dpo                   TRL's DPOTrainer.training_step, reference = adapters disabled
    mfpo-online               our step: 3 sequences per sample in 2B packed rows (prefix sharing)
    mfpo-precomputed          the same with the reference log-probs read from the batch
    mfpo-online-unpacked      the 3 sequences as 3B separate rows (the step before prefix sharing)
    mfpo-precomputed-unpacked

It prints per variant the median ms/step, the ratio to trl-dpo, tokens/s (tokens of the
sequences scored: 2 per sample for DPO, 3 for MFPO, prefixes counted in each), the token
positions one forward computes (padding included) and its step memory: the peak resident set
sampled during its steps above the resident set before them. Goals on llava-like: mfpo-online
<= 1.0x trl-dpo, mfpo-precomputed <= 0.75x; beside them, the ratios that time proportional to
token positions would give.

llava-7b (a GPU machine): a LLaVA-1.5-7B-shaped model (CLIP ViT-L/14-336 + a Llama-2-7B-shaped
language model) with random weights, LoRA r=16 on the language model's attention, gradient
checkpointing, hand-made rows (576 image tokens + 40 prompt + 40 answer tokens); prints step
time, MFU (model FLOPs / step time / --peak-tflops) and peak GPU memory of mfpo-online,
mfpo-precomputed and a two-sequence DPO-shaped step through the same code (TRL needs a real
tokenizer, which is not downloaded here).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

CPU_PRESETS = ("tiny", "small", "llava-like")


@dataclass(frozen=True)
class Preset:
    image_size: int
    text_hidden: int
    text_layers: int
    batch_size: int
    answer_tokens: int | None  # None: the world's answers as they are
    vision_hidden: int = 32
    heads: int = 4


PRESETS = {
    "tiny": Preset(image_size=48, text_hidden=64, text_layers=2, batch_size=4, answer_tokens=None),
    "small": Preset(image_size=64, text_hidden=256, text_layers=4, batch_size=8, answer_tokens=None, vision_hidden=64),
    "llava-like": Preset(image_size=128, text_hidden=256, text_layers=4, batch_size=4, answer_tokens=40, vision_hidden=64),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=[*CPU_PRESETS, "llava-7b", "all"], default="all")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--batch-size", type=int, help="override the preset's batch size")
    parser.add_argument("--rounds", type=int, default=6, help="timed steps per variant (after 2 warm-ups)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU only)")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the accelerator's dense bf16 peak, for MFU (H100/H200 SXM: 989)")
    parser.add_argument("--json", action="store_true", help="one JSON line per preset (used by 'all')")
    return parser.parse_args(argv)


class PeakRSS:
    """Samples this process's resident set every millisecond while a step runs; `growth` is its
    peak above the resident set at the start (the step's own working memory)."""

    def __init__(self) -> None:
        self.peak = self.start = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self._page

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.start)

    def __enter__(self) -> PeakRSS:  # noqa: PYI034
        self.start = self.peak = self._rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def timed(step, rounds: int, sync) -> list[float]:
    times = []
    for _ in range(rounds):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------------- CPU presets


def long_answer(text: str, tokens: int, tokenizer) -> str:
    """`text` extended with the world's own sentences to about `tokens` tokens."""
    sentences = [text, "Nothing else is visible in the picture.", "The background is plain.",
                 "Each object stands apart from the others.", "The colours are bright and flat."]
    out, i = text, 1
    while len(tokenizer(" " + out)["input_ids"]) < tokens:
        out += " " + sentences[i % len(sentences)]
        i += 1
    return out


def setup_preset(tmp: Path, preset: Preset, batch_size: int):
    from mfpo_runtime.data.records import read_records, write_records
    from mfpo_runtime.data.scenes import WorldConfig, write_world
    from mfpo_runtime.models import TinySize, build_tiny_model, load_vlm
    from mfpo_runtime.train.config import (
        LoopConfig,
        LoraSettings,
        ObjectiveConfig,
        PolicyConfig,
        TrainConfig,
    )

    size = TinySize(image_size=preset.image_size, text_hidden=preset.text_hidden, text_layers=preset.text_layers,
                    vision_hidden=preset.vision_hidden, heads=preset.heads, max_positions=1024)
    write_world(str(tmp / "world"), WorldConfig(seed=0, train=4 * batch_size, eval=0, counterprior=0,
                                                image_size=preset.image_size))
    model_dir = build_tiny_model("llava", tmp / "model", size=size)
    train = tmp / "world" / "train"
    tokenizer = load_vlm(str(model_dir)).processor.tokenizer
    records = []
    for r in read_records(train):
        update = {"perturbed_image": r.image, "bin": 1}  # timing does not depend on the pixels of m'
        if preset.answer_tokens:
            update["chosen"] = long_answer(r.chosen, preset.answer_tokens, tokenizer)
            update["rejected"] = long_answer(r.rejected, preset.answer_tokens, tokenizer)
        records.append(r.model_copy(update=update))
    write_records(records, train)
    lora = LoraSettings(r=8, alpha=16, dropout=0.0, target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)$")
    config = TrainConfig(
        policy=PolicyConfig(base_uri=str(model_dir), family="llava", finetune="lora", lora=lora,
                            merge_adapters=False, reference="base"),
        loop=LoopConfig(epochs=1, max_steps=None, learning_rate=1e-4, lr_scheduler="constant", warmup_ratio=0.0,
                        weight_decay=0.0, max_grad_norm=1.0, batch_size=batch_size, gradient_accumulation=1,
                        precision="fp32", deepspeed_stage=0, gradient_checkpointing=False,
                        checkpoint_every_steps=50, reference_mode="online", max_length=1024, seed=0),
        objective=ObjectiveConfig(beta=0.1, eta=0.0, weights={"text": 1.0, "image": 1.0, "anchor": 1.0}),
    )
    return config, model_dir, train, records


def unpacked_forward_loss(job, loss_fn, batch3):
    """The step before prefix sharing, kept here as the baseline: 3B separate rows."""
    from mfpo_runtime.train.logprobs import TripleLogps, image_path_frozen, sequence_logps, unwrap
    from mfpo_runtime.train.losses import PreferenceLogps
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    model, b = job.model, batch3["input_ids"].size(0) // 3
    features = None
    if image_path_frozen(model):
        with torch.no_grad():
            rows = list(range(b)) + list(range(2 * b, 3 * b))
            out = unwrap(model).model.get_image_features(pixel_values=batch3["pixel_values"][rows], return_dict=True)
        m, m_prime = list(out.pooler_output[:b]), list(out.pooler_output[b:])
        features = {"image": BaseModelOutputWithPooling(pooler_output=[*m, *m, *m_prime])}
    policy = TripleLogps.split(sequence_logps(model, batch3, features))
    if "ref_logps" in batch3:
        ref = TripleLogps(*batch3["ref_logps"].unbind(1))
    else:
        with torch.no_grad(), model.disable_adapter():
            ref = TripleLogps.split(sequence_logps(model, batch3, features))
    return loss_fn(PreferenceLogps(policy.chosen, policy.rejected, policy.perturbed,
                                   ref.chosen, ref.rejected, ref.perturbed))


def mfpo_step_fn(config, train_dir, records, *, precomputed: bool, packed: bool):
    from mfpo_runtime.train import data as train_data
    from mfpo_runtime.train import policy as policies
    from mfpo_runtime.train.logprobs import count_tokens
    from mfpo_runtime.train.losses import MFPOLoss
    from mfpo_runtime.train.reference import PrecomputedReference, as_batch_tensor, precompute
    from mfpo_runtime.train.trainer import TrainJob, build_optimizer, forward_loss

    policy = policies.prepare(config, 1, None)
    indices = list(range(config.loop.batch_size))
    training_set = train_data.TrainingSet(train_dir, records)
    packed_batch = train_data.collate(training_set, indices, policy.processor, policy.family, 1024)
    reference = policy.reference
    ref_logps = None
    if precomputed:
        values = precompute(policy.reference, [packed_batch])
        ref_logps = as_batch_tensor(values)
        packed_batch["ref_logps"] = ref_logps
        reference = PrecomputedReference()
    job = TrainJob(config=config, model=policy.model, reference=reference, processor=policy.processor,
                   family=policy.family, training_set=training_set, stage_uri="file:///unused",
                   work_dir=Path(tempfile.mkdtemp()))
    optimizer, _ = build_optimizer(job, 100)
    loss_fn = MFPOLoss.from_config(config.objective)
    policy.model.train()
    tokens = count_tokens(packed_batch)
    positions = packed_positions(packed_batch)
    if packed:
        def loss():
            return forward_loss(job, loss_fn, packed_batch, nullcontext)
    else:
        batch3 = unpacked_batch(training_set, indices, policy, ref_logps)
        positions = batch3["input_ids"].numel()

        def loss():
            return unpacked_forward_loss(job, loss_fn, batch3)

    def step():
        loss().objective.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, tokens, positions


def packed_positions(packed: dict) -> int:
    """Token positions one forward over a packed batch computes, padding included: its two
    halves (shared-prefix rows, m' rows) each run at their own longest row."""
    from mfpo_runtime.train.packing import PAD

    segments = packed["segment_ids"]
    half = segments.size(0) // 2
    lengths = (segments != PAD).sum(dim=1)
    return half * int(lengths[:half].max()) + half * int(lengths[half:].max())


def unpacked_batch(training_set, indices, policy, ref_logps):
    from mfpo_runtime.models import encode
    from mfpo_runtime.train.data import open_image
    from mfpo_runtime.train.logprobs import triple_texts_and_images

    records = [training_set.records[i] for i in indices]
    args = triple_texts_and_images(
        [r.question for r in records], [r.chosen for r in records], [r.rejected for r in records],
        [open_image(training_set.root, r.image) for r in records],
        [open_image(training_set.root, r.perturbed_image) for r in records],
    )
    batch = dict(encode(policy.processor, policy.family, *args))
    if ref_logps is not None:
        batch["ref_logps"] = ref_logps
    return batch


def trl_step_fn(model_dir: Path, train_dir: Path, records, batch_size: int, tmp: Path):
    from datasets import Dataset
    from mfpo_runtime.models import load_vlm, prompt_text
    from peft import LoraConfig
    from PIL import Image
    from trl import DPOConfig, DPOTrainer

    loaded = load_vlm(str(model_dir))
    rows = {
        "images": [[Image.open(train_dir / r.image).convert("RGB")] for r in records],
        "prompt": [prompt_text("llava", r.question) for r in records],
        "chosen": [" " + r.chosen for r in records],
        "rejected": [" " + r.rejected for r in records],
    }
    args = DPOConfig(
        output_dir=str(tmp / "trl"), per_device_train_batch_size=batch_size, learning_rate=1e-4,
        max_steps=10, report_to=[], logging_steps=10**6, save_strategy="no", use_cpu=True,
        bf16=False, dataloader_num_workers=0, remove_unused_columns=False, max_length=1024,
    )
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                      target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)$")
    trainer = DPOTrainer(model=loaded.model, args=args, train_dataset=Dataset.from_dict(rows),
                         processing_class=loaded.processor, peft_config=lora)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(), which we do not run
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    # the tokens of the chosen and rejected sequences TRL scores (prompt and image tokens in each)
    masks = [v for k, v in batch.items() if k.endswith("attention_mask") and torch.is_tensor(v)]
    tokens = int(sum(m.sum() for m in masks))
    positions = batch["input_ids"].numel()  # chosen and rejected rows after TRL's flush_left

    def step():
        trainer.training_step(trainer.model, batch)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)

    return step, tokens, positions


def run_preset(name: str, args) -> dict:
    preset = PRESETS[name]
    torch.set_num_threads(args.threads)
    batch_size = args.batch_size or preset.batch_size
    with tempfile.TemporaryDirectory(prefix="mfpo-bench-") as tmp_name:
        tmp = Path(tmp_name)
        config, model_dir, train_dir, records = setup_preset(tmp, preset, batch_size)
        variants = {"trl-dpo": trl_step_fn(model_dir, train_dir, records, batch_size, tmp)}
        for precomputed in (False, True):
            for packed in (True, False):
                label = "mfpo-" + ("precomputed" if precomputed else "online") + ("" if packed else "-unpacked")
                variants[label] = mfpo_step_fn(config, train_dir, records, precomputed=precomputed, packed=packed)
        times = {label: [] for label in variants}
        peaks = {label: 0 for label in variants}
        for step, *_ in variants.values():  # warm-up
            timed(step, 2, lambda: None)
        for _ in range(args.rounds):  # interleaved, so that machine load hits all variants alike
            for label, (step, *_) in variants.items():
                with PeakRSS() as sampler:
                    times[label] += timed(step, 1, lambda: None)
                peaks[label] = max(peaks[label], sampler.growth)
    medians = {label: statistics.median(t) for label, t in times.items()}
    return {
        "preset": name, "batch_size": batch_size, "rounds": args.rounds, "threads": args.threads,
        "load": os.getloadavg()[0], "process_peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "variants": {
            label: {"ms": medians[label] * 1e3, "ratio": medians[label] / medians["trl-dpo"],
                    "tokens_per_s": variants[label][1] / medians[label], "positions": variants[label][2],
                    "step_rss": peaks[label]}
            for label in variants
        },
    }


def print_preset(result: dict) -> None:
    print(f"{result['preset']}: batch {result['batch_size']}, {result['threads']} thread(s), "
          f"median of {result['rounds']} interleaved steps, load average {result['load']:.1f}")
    for label, v in result["variants"].items():
        print(f"  {label:26s} {v['ms']:8.1f} ms/step  {v['ratio']:5.2f}x trl-dpo  "
              f"{v['tokens_per_s']:9.0f} tokens/s  {v['positions']:6d} positions  "
              f"step memory +{v['step_rss'] / 2**20:5.0f} MiB")
    print(f"  peak RSS of the whole process (all variants loaded): {result['process_peak_rss'] / 2**20:.0f} MiB")


GOALS = {"mfpo-online": 1.0, "mfpo-precomputed": 0.75}


def print_goals(result: dict) -> None:
    v = result["variants"]
    for label, goal in GOALS.items():
        verdict = "met" if v[label]["ratio"] <= goal else "NOT met"
        print(f"  goal {label} <= {goal:.2f}x trl-dpo on {result['preset']}: {v[label]['ratio']:.2f}x, {verdict}")
    gain = v["mfpo-online-unpacked"]["ms"] / v["mfpo-online"]["ms"]
    print(f"  prefix sharing: mfpo-online {gain:.2f}x faster than without it")
    # A step is forward + backward (~3 forwards) of the policy plus, on-line, a reference forward,
    # each over the same rows: if time followed token positions alone, these would be the ratios.
    positions = v["mfpo-online"]["positions"] / v["trl-dpo"]["positions"]
    print(f"  token positions per forward: mfpo {v['mfpo-online']['positions']}, trl-dpo "
          f"{v['trl-dpo']['positions']} ({positions:.2f}x); time proportional to positions would give "
          f"mfpo-online {positions:.2f}x, mfpo-precomputed {positions * 3 / 4:.2f}x")


def run_all(args) -> None:
    """Each CPU preset in its own process, one after the other; one table at the end."""
    results = []
    for name in CPU_PRESETS:
        command = [sys.executable, __file__, "--preset", name, "--rounds", str(args.rounds),
                   "--threads", str(args.threads), "--json"]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print_preset(results[-1])
    print_goals(results[-1])


# ------------------------------------------------------------------ LLaVA-1.5-7B shape


def llava_7b_config():
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    return LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
            image_size=336, patch_size=14, projection_dim=768,
        ),
        text_config=LlamaConfig(
            vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, pad_token_id=0,
        ),
        image_token_index=32000, projector_hidden_act="gelu", vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )


IMAGE_TOKENS_7B, PROMPT_7B, ANSWER_7B = (336 // 14) ** 2, 40, 40


def hand_triples(batch_size: int, device, dtype) -> dict:
    """A triple batch of 3B rows [y_w|m, y_l|m, y_w|m'] of 576 image + 40 prompt + 40 answer tokens."""
    g = torch.Generator().manual_seed(0)
    length = IMAGE_TOKENS_7B + PROMPT_7B + ANSWER_7B
    prompt = torch.randint(1, 32000, (batch_size, IMAGE_TOKENS_7B + PROMPT_7B), generator=g)
    prompt[:, :IMAGE_TOKENS_7B] = 32000
    chosen, rejected = (torch.randint(1, 32000, (batch_size, ANSWER_7B), generator=g) for _ in range(2))
    input_ids = torch.cat([torch.cat([prompt, chosen], 1), torch.cat([prompt, rejected], 1),
                           torch.cat([prompt, chosen], 1)])
    response = torch.zeros(3 * batch_size, length, dtype=torch.bool)
    response[:, IMAGE_TOKENS_7B + PROMPT_7B:] = True
    images = torch.randn(2 * batch_size, 3, 336, 336, generator=g)
    pixels = torch.cat([images[:batch_size], images[:batch_size], images[batch_size:]])
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "pixel_values": pixels.to(dtype), "response_mask": response}


def training_flops(params: int, policy_tokens: int, reference_tokens: int) -> float:
    """Model FLOPs of one LoRA step over the tokens the hardware processes (PaLM's convention:
    2N per token forward; frozen weights need no weight gradients, so backward is the input
    gradients, 2N per token; gradient checkpointing's recomputation is not counted, as in MFU).
    Attention scores (~3% at 700 tokens and hidden 4096) and LoRA's own FLOPs are left out."""
    return 4 * params * policy_tokens + 2 * params * reference_tokens


def run_7b(args) -> None:
    from mfpo_runtime.train.logprobs import sequence_logps, shared_image_features, triple_logps
    from mfpo_runtime.train.losses import MFPOLoss, PreferenceLogps, dpo_loss
    from mfpo_runtime.train.packing import pack_triples
    from peft import LoraConfig, get_peft_model
    from transformers import LlavaForConditionalGeneration

    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    torch.set_default_dtype(dtype)
    with device:
        model = LlavaForConditionalGeneration(llava_7b_config())
    torch.set_default_dtype(torch.float32)
    params = sum(p.numel() for p in model.model.language_model.parameters())
    model.requires_grad_(False)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                      target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)$")
    model = get_peft_model(model, lora)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    loss_fn = MFPOLoss()
    b = args.batch_size or 4
    triple = hand_triples(b, device, dtype)
    packed = {k: v.to(device) for k, v in pack_triples(triple, pad_id=0).items()}
    pair = {k: v[: 2 * b].to(device) for k, v in triple.items()}  # [y_w|m, y_l|m]: DPO's two rows
    stored = torch.zeros(b, 3, device=device)
    mfpo_tokens = int((packed["segment_ids"] >= 0).sum())  # tokens in the packed rows
    dpo_tokens = int(pair["attention_mask"].sum())

    def mfpo(precomputed: bool):
        def step():
            features = shared_image_features(model, packed)
            policy = triple_logps(model, packed, features)
            if precomputed:
                ref = stored.unbind(1)
            else:
                with torch.no_grad(), model.disable_adapter():
                    r = triple_logps(model, packed, features)
                ref = (r.chosen, r.rejected, r.perturbed)
            loss_fn(PreferenceLogps(policy.chosen, policy.rejected, policy.perturbed, *ref)).objective.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return step

    def dpo_shaped():
        pol = sequence_logps(model, pair).chunk(2)
        with torch.no_grad(), model.disable_adapter():
            ref = sequence_logps(model, pair).chunk(2)
        dpo_loss(pol[0], pol[1], ref[0], ref[1], 0.1).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    variants = {
        "dpo-shaped": (dpo_shaped, dpo_tokens, dpo_tokens),
        "mfpo-online": (mfpo(False), mfpo_tokens, mfpo_tokens),
        "mfpo-precomputed": (mfpo(True), mfpo_tokens, 0),
    }
    print(f"llava-7b shape: {params / 1e9:.2f}B language-model parameters, batch {b}, {args.dtype}, "
          f"LoRA r=16, gradient checkpointing; MFU against {args.peak_tflops:.0f} TFLOP/s")
    base = None
    for name, (step, policy_tokens, reference_tokens) in variants.items():
        timed(step, 2, sync)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds = statistics.median(timed(step, args.rounds, sync))
        base = base or seconds
        flops = training_flops(params, policy_tokens, reference_tokens)
        mfu = flops / seconds / (args.peak_tflops * 1e12)
        memory = f"  peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else ""
        print(f"  {name:18s} {seconds * 1e3:9.1f} ms/step  {seconds / base:5.2f}x dpo-shaped  MFU {mfu:6.1%}{memory}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.preset == "llava-7b":
        run_7b(args)
    elif args.preset == "all":
        run_all(args)
    else:
        result = run_preset(args.preset, args)
        if args.json:
            print(json.dumps(result))
        else:
            print_preset(result)
            if args.preset == "llava-like":
                print_goals(result)


if __name__ == "__main__":
    main()
