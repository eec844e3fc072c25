"""Session fixtures shared by every test directory: the synthetic world and tiny models.

Each is built once per test session into a temporary directory (a few seconds in all):

    world_dir           a small synthetic world (train 24, eval 8, eval-counterprior 8) at 32 px
    tiny_llava_dir      a saved tiny LLaVA (model + processor), 32 px images
    tiny_model_dir      the same for any family: parametrize indirectly with
                        @pytest.mark.parametrize("tiny_model_dir", ["llava", "llava-next",
                        "qwen2-vl"], indirect=True)
    tiny_vlm            a loaded tiny LLaVA (LoadedVLM), shared by the session: do not train
                        it in place (load your own with load_vlm(tiny_llava_dir))
    scene_images        four RGB scene images from world_dir's train split
    moto_endpoint       host:port of moto's S3 server (ThreadedMotoServer) on 127.0.0.1, for
                        tests of s3:// with the real minio client; stopped at the session's end
    mlflow_server       a real MLflow tracking server (tests/mlflow_server.py) on 127.0.0.1,
                        SQLite, artifacts in a bucket of moto's server; started once (its start
                        takes seconds), stopped at the session's end; skipped where `make tools`
                        has not installed it, except in CI (CI=true), where its absence fails

"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TINY_IMAGE_SIZE = 32


@pytest.fixture(autouse=True)
def _stage_process_state_undone():
    """A test that runs a stage's entry point in this process (`stage.main`) gets what a stage
    process sets for itself -- deterministic kernels -- undone afterwards, so that no later test
    sees it (torch's default is off)."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None and torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mfpo_runtime.data.scenes import WorldConfig, write_world

    root = tmp_path_factory.mktemp("world")
    write_world(
        str(root), WorldConfig(seed=0, train=24, eval=8, counterprior=8, image_size=TINY_IMAGE_SIZE)
    )
    return root


def _build(tmp_path_factory: pytest.TempPathFactory, family: str) -> Path:
    from mfpo_runtime.models import build_tiny_model

    return build_tiny_model(
        family, tmp_path_factory.mktemp(f"tiny-{family}"), seed=0, image_size=TINY_IMAGE_SIZE
    )


_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def tiny_model_dir(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    family = getattr(request, "param", "llava")
    if family not in _BUILT:
        _BUILT[family] = _build(tmp_path_factory, family)
    return _BUILT[family]


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if "llava" not in _BUILT:
        _BUILT["llava"] = _build(tmp_path_factory, "llava")
    return _BUILT["llava"]


@pytest.fixture(scope="session")
def tiny_vlm(tiny_llava_dir: Path):
    from mfpo_runtime.models import load_vlm

    return load_vlm(str(tiny_llava_dir))


@pytest.fixture(scope="session")
def scene_images(world_dir: Path):
    from mfpo_runtime.data.records import read_records
    from PIL import Image

    records = read_records(world_dir / "train")[:4]
    return [Image.open(world_dir / "train" / r.image).convert("RGB") for r in records]


@pytest.fixture(scope="session")
def moto_endpoint():
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_server(moto_endpoint, tmp_path_factory: pytest.TempPathFactory):
    import os
    import socket

    from minio import Minio
    from mlflow_server import BUCKET, MLFLOW, MlflowServer

    if not MLFLOW.exists():
        message = f"no MLflow server at {MLFLOW}: `make tools` installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    access, secret = "mlflow-test-access", "mlflow-test-secret-never-logged"
    Minio(moto_endpoint, access_key=access, secret_key=secret, secure=False).make_bucket(BUCKET)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"), port, moto_endpoint, access, secret)
    server.start()
    try:
        yield server
    finally:
        server.stop()
