"""The GPU preset of benchmarks/bench_train_step.py, run on the CPU at a tiny width.

The llava-7b preset only runs where a GPU is lent; this test runs the very same code path
(model build, LoRA, gradient checkpointing, packed triples, MFU arithmetic) with the config
shrunk, so the command cannot be broken unnoticed on machines without one.
"""

import importlib.util
import sys
from pathlib import Path

import pytest
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

BENCH = Path(__file__).parents[2] / "benchmarks" / "bench_train_step.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_train_step", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def shrunk_llava_config():
    """The 7B config's structure (336 px / patch 14 -> 576 image tokens, image token 32000) at a tiny width."""
    return LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=336, patch_size=14, projection_dim=32),
        text_config=LlamaConfig(vocab_size=32064, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                                pad_token_id=0),
        image_token_index=32000, projector_hidden_act="gelu", vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )


@pytest.mark.slow
def test_gpu_preset_runs_on_cpu_at_a_tiny_width(monkeypatch, capsys):
    bench = load_bench()
    monkeypatch.setattr(bench, "llava_7b_config", shrunk_llava_config)
    bench.main(["--preset", "llava-7b", "--device", "cpu", "--dtype", "fp32", "--batch-size", "1", "--rounds", "1"])
    out = capsys.readouterr().out
    for variant in ("dpo-shaped", "mfpo-online", "mfpo-precomputed"):
        assert variant in out and "MFU" in out


def test_training_flops_by_hand():
    bench = load_bench()
    # 1e9 parameters, 1000 policy tokens (forward + input gradients: 4N each), 500 reference tokens (2N)
    assert bench.training_flops(10**9, 1000, 500) == 4e12 + 1e12
