"""The device follows spec.resources, not whatever the machine has: gpusPerNode 0 trains and
evaluates on the CPU even where CUDA is present; gpusPerNode > 0 takes this process's GPU and
fails with a clear, not-retried error where there is none. torch.cuda is mocked where the
test machine's hardware would otherwise decide (these machines have no GPU)."""

from __future__ import annotations

import pytest
import torch
from conftest import align_spec
from mfpo_core.contract import BadInput
from mfpo_runtime.train.trainer import device_for


def spec_with(gpus: int) -> int:
    """resources.gpusPerNode of a validated spec: what the stages pass to `device_for`."""
    spec = align_spec("file:///unused")
    return spec.model_copy(
        update={"resources": spec.resources.model_copy(update={"gpus_per_node": gpus})}
    ).resources.gpus_per_node


def cuda_present(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_no_gpus_in_the_spec_means_the_cpu_even_where_cuda_is_present(monkeypatch):
    cuda_present(monkeypatch, 8)
    assert device_for(spec_with(0)) == torch.device("cpu")


def test_gpus_in_the_spec_take_this_processs_gpu(monkeypatch):
    cuda_present(monkeypatch, 8)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert device_for(spec_with(1)) == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "3")  # torchrun's fourth process on the node
    assert device_for(spec_with(8), rank=11) == torch.device("cuda", 3)


def test_gpus_in_the_spec_without_cuda_is_a_clear_error(monkeypatch):
    cuda_present(monkeypatch, 0)
    with pytest.raises(
        BadInput, match=r"resources.gpusPerNode is 1 .*no usable CUDA device.*gpusPerNode: 0"
    ):
        device_for(spec_with(1))


def test_a_process_beyond_the_visible_gpus_is_named(monkeypatch):
    cuda_present(monkeypatch, 2)
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(
        BadInput, match=r"process 2 of resources.gpusPerNode 4 has no GPU: this machine shows 2"
    ):
        device_for(spec_with(4))
