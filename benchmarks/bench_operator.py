"""The operator under load: N concurrent MFPORuns on kmock (kopf's Kubernetes API emulator).

    python benchmarks/bench_operator.py [--runs 200] [--namespaces 20] [--align-stages 1]

Starts kmock in this process and the real operator (`python -m mfpo_operator.kube`, the same
entry point as the image) as a subprocess pointed at it by a kubeconfig. Creates the runs at
once, then plays the kubelet: every Job the operator creates is finished (pods with a
termination summary, Job condition Complete) as soon as it is seen, until every run has
succeeded. Prints:

- reconcile latency, median and p95, from the operator's own histogram
  (mfpo_reconcile_duration_seconds, interpolated within buckets as Prometheus'
  histogram_quantile does) and its mean (sum / count);
- reaction latency, median and p95: from a Job's completion to the creation of the next
  stage's Job, as seen from outside (polling every 50 ms, so +-50 ms);
- the operator process's peak resident memory (getrusage of the child, ru_maxrss);
- CPU seconds of the operator beside those of kmock + the driver: on 2 cores the emulator,
  which re-filters its request logs on every request, saturates long before the operator.

kmock ignores label selectors, so the operator's Job listings return every Job of a
namespace: runs are spread over --namespaces namespaces, as in a shared cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import kmock
from mfpo_core.contract import TerminationSummary

VERBS = {"get", "list", "watch", "create", "patch", "delete"}


def declare_resources(server) -> None:
    info = kmock.ResourceInfo
    server.resources["mfpo.dev/v1alpha1/mfporuns"] = info(
        kind="MFPORun", singular="mfporun", namespaced=True, subresources={"status"}, verbs=VERBS
    )
    namespaced = [("batch/v1/jobs", "Job"), ("v1/pods", "Pod"), ("v1/configmaps", "ConfigMap"),
                  ("v1/services", "Service"), ("v1/events", "Event")]  # fmt: skip
    for path, kind in namespaced:
        server.resources[path] = info(kind=kind, namespaced=True, verbs=VERBS)
    server.resources["v1/namespaces"] = info(kind="Namespace", namespaced=False, verbs=VERBS)
    server.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = info(
        kind="CustomResourceDefinition", namespaced=False, verbs=VERBS
    )


def manifest(name: str, namespace: str, align_stages: int) -> dict:
    return {
        "apiVersion": "mfpo.dev/v1alpha1",
        "kind": "MFPORun",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": {
            "model": {"uri": "file:///models/tiny"},
            "data": {"uri": "file:///data/train", "format": "synthetic"},
            "storage": {"uri": "file:///runs"},
            "curriculum": {"stages": align_stages},
            "resources": {"gpusPerNode": 0},
        },
    }


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "bench", "user": {"token": "bench"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "bench"}}],
    }))  # fmt: skip
    return path


async def finish(server, job: dict) -> None:
    """What the kubelet and the Job controller do when the Job's only pod succeeds."""
    meta = job["metadata"]
    ns, name = meta["namespace"], meta["name"]
    summary = TerminationSummary(stage=meta["labels"]["mfpo.dev/stage"], status="succeeded")
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{name}-0", "namespace": ns,
                     "labels": {"batch.kubernetes.io/job-name": name}},
        "status": {"containerStatuses": [{"name": "stage", "state": {"terminated": {
            "exitCode": 0, "message": summary.encode(), "reason": "Completed"}}}]},
    }  # fmt: skip
    await server.post(f"/api/v1/namespaces/{ns}/pods", json=pod)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now}],
              "startTime": now, "completionTime": now, "succeeded": 1}  # fmt: skip
    await server.patch(
        f"/apis/batch/v1/namespaces/{ns}/jobs/{name}/status", json={"status": status}
    )


def live(server, plural: str) -> list[dict]:
    return [obj.raw for (res, _, _), obj in server.objects.items()
            if getattr(res, "plural", None) == plural and not obj.deleted]  # fmt: skip


def forget_requests(server) -> None:
    """kmock logs every request, per server and per reaction, and scans those logs on every
    request (quadratic in the requests served): keep them empty, so that the figures are the
    operator's, not the emulator's. Private attributes: this is a benchmark, not a test."""
    server._requests.clear()
    for root in server._walk(kmock.Root):
        for payload in root._payloads:
            getattr(payload, "_requests", []).clear()


async def drive(server, runs: int, timeout: float) -> tuple[list[float], int]:
    """Finish every Job as soon as it appears, until every run succeeded or the timeout;
    returns the reaction latencies in seconds and the runs that succeeded."""
    finished_at: dict[tuple[str, str], float] = {}  # (namespace, run) -> when its last Job ended
    done: set[tuple[str, str]] = set()
    reactions: list[float] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        forget_requests(server)
        for job in live(server, "jobs"):
            meta = job["metadata"]
            if (meta["namespace"], meta["name"]) in done:
                continue
            key = (meta["namespace"], meta["labels"]["mfpo.dev/run"])
            if key in finished_at:
                reactions.append(time.monotonic() - finished_at.pop(key))
            done.add((meta["namespace"], meta["name"]))
            await finish(server, job)
            finished_at[key] = time.monotonic()
        succeeded = sum(
            (r.get("status") or {}).get("phase") == "Succeeded" for r in live(server, "mfporuns")
        )
        if succeeded == runs:
            return reactions, succeeded
        await asyncio.sleep(0.05)
    return reactions, succeeded  # timed out: the figures so far are still printed


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) buckets."""
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower_bound
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / max(
                count - lower_count, 1e-12
            )
        lower_bound, lower_count = upper, count
    return lower_bound


def scrape(port: int) -> tuple[list[tuple[float, float]], float, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    buckets, total, count = [], 0.0, 0.0
    for line in text.splitlines():
        if line.startswith("mfpo_reconcile_duration_seconds_bucket"):
            upper = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(upper), float(line.rsplit(" ", 1)[1])))
        elif line.startswith("mfpo_reconcile_duration_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("mfpo_reconcile_duration_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])
    return buckets, total, count


async def main(args: argparse.Namespace) -> None:
    async with kmock.KubernetesEmulator() as server, kmock.Server(server):
        declare_resources(server)
        tmp = Path(tempfile.mkdtemp(prefix="mfpo-bench-"))
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig(tmp / "kubeconfig", str(server.url).rstrip("/"))),
        }
        command = [sys.executable, "-m", "mfpo_operator.kube", "--liveness", "",
                   "--metrics-port", str(args.metrics_port)]  # fmt: skip
        log = (tmp / "operator.log").open("w")
        operator = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            await asyncio.sleep(2.0)  # let it start and begin watching
            started = time.monotonic()
            for i in range(args.runs):
                ns = f"team-{i % args.namespaces}"
                response = await server.post(f"/apis/mfpo.dev/v1alpha1/namespaces/{ns}/mfporuns",
                                             json=manifest(f"run-{i}", ns, args.align_stages))  # fmt: skip
                assert response.status < 300, await response.text()
            reactions, succeeded = await drive(server, args.runs, args.timeout)
            elapsed = time.monotonic() - started
            buckets, total, count = await asyncio.to_thread(scrape, args.metrics_port)
        finally:
            operator.terminate()
            await asyncio.wait_for(operator.wait(), 30)
            log.close()
    child, own = (
        resource.getrusage(resource.RUSAGE_CHILDREN),
        resource.getrusage(resource.RUSAGE_SELF),
    )
    peak_mib = child.ru_maxrss / 1024
    operator_cpu, emulator_cpu = child.ru_utime + child.ru_stime, own.ru_utime + own.ru_stime
    stages = args.align_stages + 3
    print(
        f"{args.runs} runs x {stages} stages over {args.namespaces} namespaces on kmock: "
        f"{succeeded} succeeded in {elapsed:.1f} s"
    )
    print(
        f"reconcile latency: median {histogram_quantile(0.5, buckets) * 1000:.1f} ms, "
        f"p95 {histogram_quantile(0.95, buckets) * 1000:.1f} ms, "
        f"mean {total / max(count, 1) * 1000:.1f} ms over {count:.0f} reconciles"
    )
    print(
        f"reaction latency (Job done -> next Job created): median "
        f"{statistics.median(reactions) * 1000:.0f} ms, "
        f"p95 {statistics.quantiles(reactions, n=20)[-1] * 1000:.0f} ms over {len(reactions)} transitions"
    )
    print(f"operator peak memory (RSS of the operator process): {peak_mib:.0f} MiB")
    print(
        f"CPU: operator {operator_cpu:.1f} s, kmock + driver {emulator_cpu:.1f} s "
        f"(operator / emulator = {operator_cpu / max(emulator_cpu, 1e-9):.2f})"
    )
    print(f"operator log: {tmp / 'operator.log'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--align-stages", type=int, default=1)
    parser.add_argument("--metrics-port", type=int, default=19090)
    parser.add_argument("--timeout", type=float, default=600.0)
    asyncio.run(main(parser.parse_args()))
