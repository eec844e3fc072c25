"""The `kube` fixture of the kmock tests: the emulated API server with the MFPORun and Job
resources declared, and the kubernetes client pointed at it."""

import kubernetes
import pytest
from kube_world import Kube, declare_resources, write_kubeconfig


@pytest.fixture
async def kube(kmock, tmp_path, monkeypatch):
    declare_resources(kmock)
    config = write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url).rstrip("/"))
    # The kubernetes client reads KUBECONFIG once, at import: point its default at ours.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(config))
    monkeypatch.setenv("MFPO_OPERATOR_TICK_SECONDS", "0.2")
    return Kube(kmock)
