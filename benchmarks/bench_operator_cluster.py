"""The operator under load on a real cluster: N concurrent MFPORuns, each stage a real Job.

    KUBECONFIG=... python benchmarks/bench_operator_cluster.py --runs 1000 \\
        --runtime-image <an image whose mfpo-stage succeeds at once> [--tree DIR]

Where `benchmarks/bench_operator.py` plays the Job controller and the kubelet on kmock, this
one leaves them to the cluster: kube-apiserver, the Job controller, the garbage collector and
a kubelet. The stage image must succeed at once (an `mfpo-stage` that writes a succeeded
termination summary for the stage named in its config and exits 0; docs/performance.md shows
the one used on the lab). The CRD must be installed; the kubeconfig's user needs to create
namespaces and MFPORuns, and is the operator's (cluster-wide, a single replica).

Creates --namespaces namespaces `<prefix>-<i>`, starts the operator of --tree (default: this
checkout) as a subprocess, creates the runs at once and waits until every run succeeded.
Prints the reconcile latency (the operator's histogram, interpolated within buckets as
Prometheus' histogram_quantile does), the reaction latency (a Job's Complete condition to the
next stage's Job, both as seen by this script's watch of the Jobs: the delay of the watch
cancels out), the operator's CPU seconds and peak RSS (/proc), and the load average. Leaves the
namespaces (--cleanup deletes them): compare two operators on a fresh cluster each.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kubernetes
from bench_operator import histogram_quantile, operator_command, request_table, sample
from kubernetes.client.rest import ApiException

HERE = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "mfpo.dev", "v1alpha1", "mfporuns"
OURS = "app.kubernetes.io/managed-by=mfpo-operator"


def manifest(name: str, namespace: str, args: argparse.Namespace) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "MFPORun",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"uri": "file:///models/tiny"},
            "data": {"uri": "file:///data/train", "format": "synthetic"},
            "storage": {"uri": "file:///runs"},
            "curriculum": {"stages": args.align_stages},
            "resources": {"gpusPerNode": 0},
            "runtimeImage": args.runtime_image,
        },
    }  # fmt: skip


class JobWatch:
    """When each Job was first seen and first seen Complete, from one watch of the Jobs."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.batch = kubernetes.client.BatchV1Api(api)
        self.seen: dict[tuple[str, str], float] = {}
        self.complete: dict[tuple[str, str], float] = {}
        self.labels: dict[tuple[str, str], dict[str, str]] = {}
        self.events = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        version = None
        while not self.stop.is_set():
            try:
                response = self.batch.list_job_for_all_namespaces(
                    label_selector=OURS, watch=True, resource_version=version,
                    timeout_seconds=60, _preload_content=False,
                )  # fmt: skip
                for line in response:  # one JSON watch event per line
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        version = None  # e.g. 410 Gone: start again from now
                        break
                    job = event["object"]
                    version = job["metadata"].get("resourceVersion", version)
                    self.events += 1
                    self._note(job)
            except (ApiException, OSError, ValueError):
                time.sleep(1)

    def _note(self, job: dict) -> None:
        meta = job["metadata"]
        key = (meta["namespace"], meta["name"])
        now = time.monotonic()
        self.seen.setdefault(key, now)
        self.labels[key] = meta.get("labels") or {}
        conditions = (job.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Complete" and c.get("status") == "True" for c in conditions):
            self.complete.setdefault(key, now)

    def reactions(self) -> list[float]:
        """Seconds from a Job seen Complete to the next stage's Job seen, per transition."""
        by_run: dict[tuple[str, str], list[tuple[float, tuple[str, str]]]] = {}
        for key, labels in self.labels.items():
            run = (key[0], labels.get("mfpo.dev/run", ""))
            by_run.setdefault(run, []).append((self.seen[key], key))
        out = []
        for jobs in by_run.values():
            jobs.sort()
            for (_, before), (seen, _) in itertools.pairwise(jobs):
                if before in self.complete:
                    out.append(seen - self.complete[before])
        return out


def succeeded_runs(custom, namespaces: list[str]) -> int:
    total = 0
    for ns in namespaces:
        runs = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
        total += sum((r.get("status") or {}).get("phase") == "Succeeded" for r in runs)
    return total


def main(args: argparse.Namespace) -> None:
    kubernetes.config.load_kube_config()
    api = kubernetes.client.ApiClient()
    core, custom = kubernetes.client.CoreV1Api(api), kubernetes.client.CustomObjectsApi(api)
    namespaces = [f"{args.prefix}-{i}" for i in range(args.namespaces)]
    for ns in namespaces:
        try:
            core.create_namespace({"metadata": {"name": ns}})
        except ApiException as err:
            if err.status != 409:
                raise
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    tree = Path(args.tree).resolve()
    log_path = Path(tempfile.mkdtemp(prefix="mfpo-bench-cluster-")) / "operator.log"
    env = {**os.environ, "PYTHONPATH": f"{tree}/core:{tree}/operator"}
    command = operator_command(tree, args.metrics_port)
    with log_path.open("w") as log:
        operator = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                sample(args.metrics_port, operator.pid)
                break
            except OSError:
                time.sleep(0.1)
        watch = JobWatch(api)
        time.sleep(2.0)
        started = time.monotonic()

        def create(i: int) -> None:
            ns = namespaces[i % len(namespaces)]
            custom.create_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, manifest(f"run-{i}", ns, args)
            )

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(args.runs)))
        print(f"{args.runs} runs created in {time.monotonic() - started:.1f} s", flush=True)
        done = 0
        while time.monotonic() - started < args.timeout:
            time.sleep(args.poll_seconds)
            done = succeeded_runs(custom, namespaces)
            print(f"  {time.monotonic() - started:.0f} s: {done} succeeded, "
                  f"{len(watch.seen)} Jobs seen, load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
            if done == args.runs:
                break
        elapsed = time.monotonic() - started
        end = sample(args.metrics_port, operator.pid)
    finally:
        operator.terminate()
        operator.wait(60)
    watch.stop.set()
    stages = args.align_stages + 3
    print(f"\n== operator from {tree}: {args.runs} runs x {stages} stages over "
          f"{args.namespaces} namespaces: {done} succeeded in {elapsed:.0f} s")  # fmt: skip
    print(f"reconcile latency: median {histogram_quantile(0.5, end.buckets) * 1000:.0f} ms, "
          f"p95 {histogram_quantile(0.95, end.buckets) * 1000:.0f} ms, "
          f"mean {end.total / max(end.count, 1) * 1000:.0f} ms over {end.count:.0f} reconciles")  # fmt: skip
    if end.requests:
        print("the operator's requests, as its client timed them:")
        print(request_table(end, reconciles=end.count))
    reactions = watch.reactions()
    if len(reactions) >= 2:
        print(f"reaction latency (Job Complete -> next Job): median "
              f"{statistics.median(reactions) * 1000:.0f} ms, p95 "
              f"{statistics.quantiles(reactions, n=20)[-1] * 1000:.0f} ms over {len(reactions)}")  # fmt: skip
    print(f"operator: CPU {end.cpu:.1f} s, peak RSS {end.rss_mib:.0f} MiB; log {log_path}")
    print(f"Job watch events: {watch.events} for {len(watch.seen)} Jobs; reconciles per Job: "
          f"{end.count / max(len(watch.seen), 1):.2f}")  # fmt: skip
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.cleanup:
        for ns in namespaces:
            core.delete_namespace(ns)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--align-stages", type=int, default=1)
    parser.add_argument("--runtime-image", required=True)
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--tree", default=str(HERE), help="checkout whose operator is measured")
    parser.add_argument("--metrics-port", type=int, default=19190)
    parser.add_argument("--poll-seconds", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--cleanup", action="store_true", help="delete the namespaces at the end")
    main(parser.parse_args())
