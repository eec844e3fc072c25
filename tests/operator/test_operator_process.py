"""The operator as a process (`python -m mfpo_operator.kube`, the chart's arguments) against
kmock: it exits on SIGTERM in every state, and a restart after SIGKILL acts at once.

A pod's SIGTERM is followed by SIGKILL after terminationGracePeriodSeconds (30 s, the chart's
value). On a real control plane (the lab) the operator of main took 57 s to exit after a
SIGTERM while a watched namespace was gone (kopf's peering keep-alive retried its 403 under
asyncio.shield), and a restart after a SIGKILL waited 35-59 s (docs/install.md) for the dead operator's
KopfPeering record (lifetime 60 s) to expire before it acted.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from api_answers import rbac_forbidden
from kube_world import NS, Kube, eventually, run_manifest

REPO = Path(__file__).resolve().parents[2]
GRACE_SECONDS = 30  # charts/mfpo/templates/deployment.yaml terminationGracePeriodSeconds
# Every state here exits well within the grace period; the bound leaves room for a busy machine.
EXIT_BOUND_SECONDS = 10


def operator_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mfpo_operator.kube", "--metrics-port", "0", *args]


async def start(kube_dir: Path, args: list[str], **env: str) -> asyncio.subprocess.Process:
    log = (kube_dir / "operator.log").open("ab")
    environment = {**os.environ, "KUBECONFIG": str(kube_dir / "kubeconfig"),
                   "MFPO_OPERATOR_TICK_SECONDS": "0.5", **env}  # fmt: skip
    return await asyncio.create_subprocess_exec(
        *args, env=environment, stdout=log, stderr=subprocess.STDOUT
    )


async def sigterm_exit_seconds(process: asyncio.subprocess.Process) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), GRACE_SECONDS)
    except TimeoutError:
        process.kill()  # what the kubelet does after the grace period
        await process.wait()
        pytest.fail(f"still running {GRACE_SECONDS} s after SIGTERM (the kubelet would SIGKILL)")
    return time.monotonic() - started


# ------------------------------------------------------------------------ states at SIGTERM


async def serving(kube: Kube, tmp_path: Path) -> list[str]:
    await kube.create_run(run_manifest())
    return [NS]


async def serving_is_reached(kube: Kube, tmp_path: Path) -> None:
    await eventually(lambda: "demo-datagen-a1" in kube.jobs(), timeout=30, what="the run's Job")


async def namespace_lost(kube: Kube, tmp_path: Path) -> list[str]:
    kube.kmock[lambda r: "/namespaces/gone/" in r.url.path] << 403 << rbac_forbidden
    await kube.create_run(run_manifest())
    return [NS, "gone"]


async def namespace_lost_is_reached(kube: Kube, tmp_path: Path) -> None:
    await serving_is_reached(kube, tmp_path)
    retried = lambda: len([r for r in kube.kmock if "/namespaces/gone/" in r.url.path]) >= 4
    await eventually(retried, timeout=30, what="the lost namespace retried")


async def storage_not_answering(kube: Kube, tmp_path: Path) -> list[str]:
    # An S3 endpoint that accepts connections and never answers (a hung MinIO).
    connected = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # until the client goes away

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    kube.hung_storage = (server, connected)
    port = server.sockets[0].getsockname()[1]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3", "namespace": NS},
              "data": {"AWS_ACCESS_KEY_ID": "YQ==", "AWS_SECRET_ACCESS_KEY": "Yg=="}}  # fmt: skip
    assert (await kube.kmock.post(f"/api/v1/namespaces/{NS}/secrets", json=secret)).status < 300
    storage = {"uri": "s3://bucket/runs", "endpoint": f"127.0.0.1:{port}", "secure": False,
               "secretName": "s3", "deleteOnRunDeletion": True}  # fmt: skip
    await kube.create_run(run_manifest(storage=storage))
    return [NS]


async def storage_not_answering_is_reached(kube: Kube, tmp_path: Path) -> None:
    await eventually(lambda: kube.run().get("metadata", {}).get("finalizers"), timeout=30,
                     what="kopf's finalizer")  # fmt: skip
    response = await kube.kmock.delete(f"/apis/mfpo.dev/v1alpha1/namespaces/{NS}/mfporuns/demo")
    assert response.status < 300
    _, connected = kube.hung_storage
    await asyncio.wait_for(connected.wait(), 30)  # the deletion handler is in its request


async def api_not_answering(kube: Kube, tmp_path: Path) -> list[str]:
    # The API server accepts the request and never answers (overloaded, or a half-open
    # connection): the reconcile's read of the run hangs.
    async def hang() -> None:
        await asyncio.sleep(3600)

    path = f"/apis/mfpo.dev/v1alpha1/namespaces/{NS}/mfporuns/demo"
    kube.kmock[lambda r: r.url.path == path and r.method == "GET"] << hang
    await kube.create_run(run_manifest())
    return [NS]


async def api_not_answering_is_reached(kube: Kube, tmp_path: Path) -> None:
    path = f"/apis/mfpo.dev/v1alpha1/namespaces/{NS}/mfporuns/demo"
    await eventually(lambda: any(r.url.path == path for r in kube.kmock), timeout=30,
                     what="the reconcile's request")  # fmt: skip


async def starting(kube: Kube, tmp_path: Path) -> list[str]:
    # No API server behind the kubeconfig yet (connection refused): kopf is still starting.
    config = yaml.safe_load((tmp_path / "kubeconfig").read_text())
    config["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(config))
    return [NS]


async def starting_is_reached(kube: Kube, tmp_path: Path) -> None:
    log = tmp_path / "operator.log"
    await eventually(lambda: log.exists() and b"Connect call failed" in log.read_bytes(),
                     timeout=30, what="kopf retrying its first request")  # fmt: skip


State = Callable[[Kube, Path], Awaitable]
STATES: dict[str, tuple[State, State]] = {
    "serving": (serving, serving_is_reached),
    "namespace-lost": (namespace_lost, namespace_lost_is_reached),
    "deleting-artifacts-storage-hangs": (storage_not_answering, storage_not_answering_is_reached),
    "api-request-hangs": (api_not_answering, api_not_answering_is_reached),
    "starting-api-unreachable": (starting, starting_is_reached),
}


@pytest.mark.parametrize("state", STATES)
async def test_sigterm_exits_cleanly_within_the_grace_period(kube, tmp_path, state):
    prepare, reached = STATES[state]
    namespaces = await prepare(kube, tmp_path)
    args = [arg for ns in namespaces for arg in ("--namespace", ns)] + ["--liveness", ""]
    # The API read timeout is 20 s by default (kube/cluster.py); shortened for the hung API.
    process = await start(tmp_path, operator_command(*args), MFPO_OPERATOR_API_TIMEOUT_SECONDS="3")
    try:
        await reached(kube, tmp_path)
        seconds = await sigterm_exit_seconds(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log = (tmp_path / "operator.log").read_text(errors="replace")
    print(f"{state}: exit code {process.returncode}, {seconds:.2f} s after SIGTERM")
    assert process.returncode == 0, log[-3000:]
    assert seconds < EXIT_BOUND_SECONDS, f"exited {seconds:.1f} s after SIGTERM\n{log[-3000:]}"
    if state == "deleting-artifacts-storage-hangs":
        # Abandoned, not released: the finalizer stays for the next operator to delete again.
        assert kube.run().get("metadata", {}).get("finalizers"), "released without deleting"


def test_the_api_timeout_lets_a_sigtermed_operator_exit_within_the_grace_period():
    # A hung request holds kopf's exit for one read timeout (no read retries): the default
    # must leave the exit inside kopf's own deadline, itself inside the grace period.
    from mfpo_operator.kube.cluster import READ_TIMEOUT_SECONDS
    from mfpo_operator.kube.handlers import EXIT_TIMEOUT_SECONDS

    assert READ_TIMEOUT_SECONDS < EXIT_TIMEOUT_SECONDS < GRACE_SECONDS


# --------------------------------------------------------------------- restart after SIGKILL


def chart_operator_args(namespaces: list[str]) -> list[str]:
    """The operator's arguments as the chart renders them (namespaced mode)."""
    helm = shutil.which("helm") or str(REPO / ".tools" / "bin" / "helm")
    if not os.access(helm, os.X_OK):
        pytest.fail("helm not found on PATH or in .tools/bin: run `make tools`")
    sets = [f"--set=watch.namespaces[{i}]={ns}" for i, ns in enumerate(namespaces)]
    rendered = subprocess.run(
        [helm, "template", "mfpo", str(REPO / "charts" / "mfpo"), "-n", "mfpo-system", *sets],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    (deployment,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    # This machine's ports, not the pod's.
    return [a for a in args if not a.startswith(("--liveness", "--metrics"))] + ["--liveness", ""]


async def _dead_peer_record(kube: Kube) -> None:
    """What a SIGKILLed operator of an earlier chart version (kopf peering) leaves: its
    KopfPeering record, fresh, lifetime 60 s (kopf/_core/engines/peering.py `Peer`). The
    peering CRDs stay in a cluster after an upgrade (Helm never deletes CRDs)."""
    import kmock as kmock_lib

    for plural, kind, namespaced in (("kopfpeerings", "KopfPeering", True),
                                     ("clusterkopfpeerings", "ClusterKopfPeering", False)):  # fmt: skip
        kube.kmock.resources[f"kopf.dev/v1/{plural}"] = kmock_lib.ResourceInfo(
            kind=kind, namespaced=namespaced, verbs={"get", "list", "watch", "patch", "create"}
        )
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    dead = {"root@operator-pod/20260101000000/abc": {"priority": 0, "lifetime": 60, "lastseen": now}}
    for name in ("mfpo-operator", "default"):  # the chart's name, and kopf's auto-detected one
        peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                   "metadata": {"name": name, "namespace": NS}, "status": dead}  # fmt: skip
        response = await kube.kmock.post(f"/apis/kopf.dev/v1/namespaces/{NS}/kopfpeerings", json=peering)
        assert response.status < 300, await response.text()


async def test_a_restart_after_sigkill_acts_without_waiting_for_a_dead_peer(kube, tmp_path):
    await _dead_peer_record(kube)
    args = chart_operator_args([NS])
    await kube.create_run(run_manifest())  # created while no operator runs
    started = time.monotonic()
    process = await start(tmp_path, operator_command(*args))
    try:
        await eventually(lambda: "demo-datagen-a1" in kube.jobs(), timeout=45,
                         what="the first action of the restarted operator")  # fmt: skip
        seconds = time.monotonic() - started
        print(f"restart -> first action: {seconds:.2f} s")
    finally:
        process.kill()
        await process.wait()
    # Process start included (imports: a few seconds on a busy machine); main waited ~60 s.
    assert seconds < 15, f"first action {seconds:.1f} s after start"
