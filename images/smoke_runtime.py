"""Run inside the runtime image by images/smoke.sh (as its non-root user).

prepare DIR: write a tiny synthetic world, a tiny LLaVA and a datagen stage config under DIR.
zero2:       DeepSpeed ZeRO-2 on the CPU accelerator (gloo) initialises and takes a step with
             its ops prebuilt: no compiler is in the image, and TORCH_EXTENSIONS_DIR (where a
             just-in-time build would go) must stay empty.
"""

import json
import os
import shutil
import sys
from pathlib import Path


def prepare(root: Path) -> None:
    from mfpo_core.contract import StageConfig
    from mfpo_runtime.data.scenes import WorldConfig, write_world
    from mfpo_runtime.models import build_tiny_model

    write_world(str(root / "world"), WorldConfig(seed=0, train=8, eval=4, counterprior=4, image_size=32))
    model = build_tiny_model("llava", root / "model", seed=0, image_size=32)
    spec = {
        "model": {"uri": f"file://{model}", "family": "llava"},
        "data": {"uri": f"file://{root}/world/train", "format": "synthetic"},
        "storage": {"uri": f"file://{root}/artifacts"},
        "curriculum": {"stages": 1},
        "training": {"deepspeedStage": 2, "precision": "fp32"},
        "resources": {"gpusPerNode": 0},
    }
    config = StageConfig(uid="uid-test", runner="operator", run="smoke", stage="datagen", run_uri=f"file://{root}/artifacts/smoke",
                         spec=spec, shard_index=0)
    (root / "datagen.json").write_text(config.model_dump_json(by_alias=True))
    print("prepared", root)


def zero2() -> None:
    import deepspeed
    import torch

    assert shutil.which("g++") is None and shutil.which("c++") is None, "a compiler is in the image"
    extensions = Path(os.environ["TORCH_EXTENSIONS_DIR"])
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29571", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    deepspeed.init_distributed(dist_backend="gloo")
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 2},
              "zero_allow_untested_optimizer": True}
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    engine.backward(engine(torch.randn(1, 4)).sum())
    engine.step()
    built = sorted(p.name for p in extensions.iterdir()) if extensions.exists() else []
    assert not built, f"DeepSpeed compiled at run time: {built}"
    from deepspeed.git_version_info import installed_ops

    print(json.dumps({"accelerator": deepspeed.get_accelerator().device_name(),
                      "prebuilt_ops": sorted(k for k, v in installed_ops.items() if v),
                      "jit_built": built}))


if __name__ == "__main__":
    prepare(Path(sys.argv[2])) if sys.argv[1] == "prepare" else zero2()
