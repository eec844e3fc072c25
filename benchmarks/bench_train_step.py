"""The MFPO training step against TRL's DPOTrainer step, same model, batch and machine.

    python benchmarks/bench_train_step.py                      # tiny LLaVA on CPU (default)
    python benchmarks/bench_train_step.py --model-preset llava-7b --device cuda --dtype bf16

Tiny path: builds the tiny LLaVA (`mfpo_runtime.models.build_tiny_model`) and a small
synthetic world, then times, interleaved round by round, one optimizer step (forward,
backward, AdamW step) of:
  trl-dpo          TRL's DPOTrainer.training_step with LoRA, reference = adapters disabled
  mfpo-online      our step: 3 sequences per sample, reference = adapters disabled
  mfpo-precomputed our step with the reference log-probs read from the batch
and prints the medians and the ratios to TRL. Goals: mfpo-online <= 1.3x trl-dpo (MFPO does
1.5x the sequences); mfpo-precomputed < 1.0x.

llava-7b path (for a GPU machine): a LLaVA-1.5-7B-shaped model (CLIP ViT-L/14-336 + a
Llama-2-7B-shaped language model) with random weights in bf16 and LoRA r=16 on the language
model's attention, batches of hand-made token rows (576 image tokens + prompt + answer); prints
the step time and peak GPU memory of mfpo-online, mfpo-precomputed and a two-sequence
DPO-shaped step through the same code (TRL needs a real tokenizer, which is not downloaded).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-preset", choices=["tiny", "llava-7b"], default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=8, help="timed steps per variant (after 2 warm-ups)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU only)")
    return parser.parse_args(argv)


def timed(step, rounds: int, sync) -> list[float]:
    times = []
    for _ in range(rounds):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------------- tiny CPU path


def tiny_setup(tmp: Path, batch_size: int):
    from mfpo_core.api import MFPORunSpec
    from mfpo_runtime.data.records import read_records, write_records
    from mfpo_runtime.data.scenes import WorldConfig, write_world
    from mfpo_runtime.models import build_tiny_model

    write_world(str(tmp / "world"), WorldConfig(seed=0, train=4 * batch_size, eval=0, counterprior=0, image_size=48))
    model_dir = build_tiny_model("llava", tmp / "model", image_size=48)
    train = tmp / "world" / "train"
    # the original image stands in for the perturbed one: timing does not depend on the pixels
    records = [r.model_copy(update={"perturbed_image": r.image, "bin": 1}) for r in read_records(train)]
    write_records(records, train)
    spec = MFPORunSpec.model_validate({
        "model": {"uri": str(model_dir), "family": "llava", "lora": {"r": 8, "alpha": 16, "dropout": 0.0}},
        "data": {"uri": "file:///unused", "format": "synthetic"},
        "storage": {"uri": "file:///unused"},
        "training": {"batchSize": batch_size, "gradientAccumulation": 1, "precision": "fp32",
                     "learningRate": 1e-4, "lrScheduler": "constant", "warmupRatio": 0.0},
    })
    return spec, model_dir, train, records


def mfpo_step_fn(spec, train_dir, records, precomputed: bool):
    from mfpo_runtime.train import policy as policies
    from mfpo_runtime.train.data import TrainingSet, collate
    from mfpo_runtime.train.losses import MFPOLoss
    from mfpo_runtime.train.reference import PrecomputedReference, precompute
    from mfpo_runtime.train.trainer import TrainJob, build_optimizer, forward_loss

    policy = policies.prepare(spec, 1, None)
    training_set = TrainingSet(train_dir, records)
    b = spec.training.batch_size
    indices = list(range(b))
    batch = collate(training_set, indices, policy.processor, policy.family, 1024)
    reference = policy.reference
    if precomputed:
        values = precompute(policy.reference, [batch])
        training_set = TrainingSet(train_dir, [r.model_copy(update={"ref_logps": v}) for r, v in zip(records, values)])
        batch = collate(training_set, indices, policy.processor, policy.family, 1024)
        reference = PrecomputedReference()
    job = TrainJob(spec=spec, model=policy.model, reference=reference, processor=policy.processor,
                   family=policy.family, training_set=training_set, stage_uri="file:///unused",
                   work_dir=Path(tempfile.mkdtemp()))
    optimizer, _ = build_optimizer(job, 100)
    loss_fn = MFPOLoss.from_spec(spec.objective)
    policy.model.train()

    def step():
        out = forward_loss(job, loss_fn, batch, nullcontext)
        out.objective.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


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

    def step():
        trainer.training_step(trainer.model, batch)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)

    return step


def run_tiny(args) -> None:
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="mfpo-bench-") as tmp_name:
        tmp = Path(tmp_name)
        spec, model_dir, train_dir, records = tiny_setup(tmp, args.batch_size)
        variants = {
            "trl-dpo": trl_step_fn(model_dir, train_dir, records, args.batch_size, tmp),
            "mfpo-online": mfpo_step_fn(spec, train_dir, records, precomputed=False),
            "mfpo-precomputed": mfpo_step_fn(spec, train_dir, records, precomputed=True),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for name, step in variants.items():  # warm-up
            timed(step, 2, lambda: None)
        for _ in range(args.rounds):  # interleaved, so that machine load hits all variants alike
            for name, step in variants.items():
                times[name] += timed(step, 1, lambda: None)
    report(times, base="trl-dpo", batch_size=args.batch_size)


def report(times: dict[str, list[float]], base: str, batch_size: int, extra: dict | None = None) -> None:
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"batch size {batch_size}, {len(next(iter(times.values())))} timed steps per variant (median)")
    for name, median in medians.items():
        line = f"  {name:18s} {median * 1e3:9.1f} ms/step  ratio to {base}: {median / medians[base]:.2f}x"
        if extra and name in extra:
            line += f"  peak memory {extra[name] / 2**30:.1f} GiB"
        print(line)


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


def hand_rows(batch_size: int, rows_per_sample: int, device, dtype, prompt_len=40, answer_len=120):
    """`rows_per_sample` rows per sample: 576 image tokens + prompt + answer (answer masked in)."""
    image_tokens = (336 // 14) ** 2
    length = image_tokens + prompt_len + answer_len
    rows = batch_size * rows_per_sample
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, 32000, (rows, length), generator=g)
    input_ids[:, :image_tokens] = 32000
    response = torch.zeros(rows, length, dtype=torch.bool)
    response[:, image_tokens + prompt_len:] = True
    pixels = torch.randn(rows, 3, 336, 336, generator=g)
    return {"input_ids": input_ids.to(device), "attention_mask": torch.ones_like(input_ids).to(device),
            "pixel_values": pixels.to(device, dtype), "response_mask": response.to(device)}


def run_7b(args) -> None:
    from mfpo_runtime.train.logprobs import image_path_frozen, sequence_logps, shared_image_features
    from mfpo_runtime.train.losses import MFPOLoss, PreferenceLogps, dpo_loss
    from peft import LoraConfig, get_peft_model
    from transformers import LlavaForConditionalGeneration

    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    torch.set_default_dtype(dtype)
    with device:
        model = LlavaForConditionalGeneration(llava_7b_config())
    torch.set_default_dtype(torch.float32)
    model.requires_grad_(False)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                      target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)$")
    model = get_peft_model(model, lora)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model.train()
    assert image_path_frozen(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    loss_fn = MFPOLoss()
    b = args.batch_size
    triple = hand_rows(b, 3, device, dtype)
    pair = hand_rows(b, 2, device, dtype)
    stored = torch.zeros(b, 3, device=device)

    def mfpo(precomputed: bool):
        def step():
            features = shared_image_features(model, triple)
            pol = sequence_logps(model, triple, features).chunk(3)
            if precomputed:
                ref = stored.unbind(1)
            else:
                with torch.no_grad(), model.disable_adapter():
                    ref = sequence_logps(model, triple, features).chunk(3)
            loss_fn(PreferenceLogps(*pol, *ref)).objective.backward()
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
    variants = {"dpo-shaped": dpo_shaped, "mfpo-online": mfpo(False), "mfpo-precomputed": mfpo(True)}
    times, peaks = {}, {}
    for name, step in variants.items():
        timed(step, 2, sync)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times[name] = timed(step, args.rounds, sync)
        peaks[name] = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    report(times, base="dpo-shaped", batch_size=b, extra=peaks if device.type == "cuda" else None)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.model_preset == "llava-7b":
        run_7b(args)
    else:
        run_tiny(args)


if __name__ == "__main__":
    main()
