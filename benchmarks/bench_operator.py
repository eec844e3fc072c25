"""The operator under load: N concurrent MFPORuns on kmock (kopf's Kubernetes API emulator).

    python benchmarks/bench_operator.py [--runs 200] [--namespaces 20] [--align-stages 1]
        [--idle-seconds 30 --resync-seconds 10] [--compare /work/main]

Starts kmock in this process and the real operator (`python -m mfpo_operator.kube`, the same
entry point as the image) as a subprocess pointed at it by a kubeconfig, importing the operator
from `--tree` (default: this checkout). With `--compare DIR` the whole scenario runs twice, first
with the operator of DIR (e.g. a worktree at main), then with --tree's, each on a fresh kmock,
and the two are printed side by side.

The driver plays the Job controller and the kubelet: every Job the operator creates gets its
pods, Running and Ready, and its status (startTime, active, ready), as the Job controller
writes it. Three phases:

1. start: create the runs; wait until every run's first Job runs and its status says so
   (then until the operator made no reconcile for 2 s);
2. idle (--idle-seconds, 0 to skip): nothing changes; every reconcile is the operator's own
   periodic work (its ticker), every API call it makes is the cost of waiting runs;
3. progress: every running Job finishes (pods Succeeded with a termination summary, Job
   condition Complete) after --stage-seconds on average (jittered, the same draws for every
   operator; 0: all at once, a burst that measures throughput); each next Job runs, then
   finishes likewise; until every run succeeded.

Prints, per phase: the operator's API calls by verb and resource (told apart from kopf's own and
the driver's by their User-Agent: the kubernetes client's `OpenAPI-Generator` is the operator's
reconcile code, `kopf/` is kopf's watches and patches), reconciles (the operator's histogram
count) and calls per reconcile; these counts are deterministic, unlike the timings. Then the
reconcile latency (mfpo_reconcile_duration_seconds, median and p95 interpolated within buckets
as Prometheus' histogram_quantile does), the reaction latency (a Job's completion to the
creation of the next stage's Job, as seen by the driver polling every 50 ms), the operator's
CPU seconds (from /proc) and peak RSS. kmock serves every request by scanning all its
objects, so at hundreds of runs the emulator, not the operator, sets the wall time.

kmock ignores label selectors, so the operator's Job listings return every Job of a
namespace: runs are spread over --namespaces namespaces, as in a shared cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import kmock
from mfpo_core.contract import TerminationSummary

VERBS = {"get", "list", "watch", "create", "patch", "delete"}
HERE = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _pods(job: dict) -> int:
    return (job.get("spec") or {}).get("parallelism") or 1


PODS, JOBS = kmock.resource("v1/pods"), kmock.resource("batch/v1/jobs")


async def write(server, resource, namespace: str, name: str, changes: dict) -> None:
    """Create or patch an object in kmock's store and send its watch event, as kmock does for
    a request (k8s.py `_handle`), without an HTTP round trip through the emulator: the
    driver's writes would otherwise queue behind the operator's requests and time the driver.
    Private attributes: this is a benchmark, not a test."""
    key = (resource, namespace, name)
    async with server._lock:
        if key not in server._objects:
            server._objects[key] = changes
            kind = "ADDED"
        elif server._objects[key].deleted:
            server._objects[key].create(changes)
            kind = "ADDED"
        else:
            server._objects[key].patch(changes)
            kind = "MODIFIED"
        raw = server._objects[key].raw
        await server._buses[resource].put({"type": kind, "object": raw})


async def start(server, job: dict) -> None:
    """What the Job controller and the kubelet do once a Job's pods run and are Ready."""
    meta = job["metadata"]
    ns, name = meta["namespace"], meta["name"]
    for index in range(_pods(job)):
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-{index}", "namespace": ns,
                         "labels": {"batch.kubernetes.io/job-name": name, **meta["labels"]},
                         "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "stage", "ready": True,
                                              "state": {"running": {"startedAt": _now()}}}]},
        }  # fmt: skip
        await write(server, PODS, ns, pod["metadata"]["name"], pod)
    status = {"startTime": _now(), "active": _pods(job), "ready": _pods(job)}
    await write(server, JOBS, ns, name, {"status": status})


async def finish(server, job: dict) -> None:
    """What the kubelet and the Job controller do when the Job's pods succeed."""
    meta = job["metadata"]
    ns, name = meta["namespace"], meta["name"]
    summary = TerminationSummary(stage=meta["labels"]["mfpo.dev/stage"], status="succeeded")
    for index in range(_pods(job)):
        status = {"phase": "Succeeded", "conditions": [{"type": "Ready", "status": "False"}],
                  "containerStatuses": [{"name": "stage", "ready": False, "state": {"terminated": {
                      "exitCode": 0, "message": summary.encode(), "reason": "Completed"}}}]}  # fmt: skip
        await write(server, PODS, ns, f"{name}-{index}", {"status": status})
    now = _now()
    status = {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now}],
              "completionTime": now, "succeeded": _pods(job), "active": 0, "ready": 0}  # fmt: skip
    await write(server, JOBS, ns, name, {"status": status})


def live(server, plural: str) -> list[dict]:
    return [obj.raw for obj in server.objects_of(plural) if not obj.deleted]


def who(request) -> str:
    agent = request.headers.get("User-Agent", "")
    if agent.startswith("OpenAPI-Generator"):
        return "operator"  # the kubernetes client: the operator's reconcile code
    return "kopf" if agent.startswith("kopf/") else "driver"


def verb(request) -> str:
    method = str(request.method).upper().rsplit(".", 1)[-1]
    if method == "GET":
        if request.params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if request.name else "list"
    return {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(
        method, method.lower()
    )


def resource_of(request) -> str:
    plural = getattr(request.resource, "plural", None) or request.url.path
    return f"{plural}/{request.subresource}" if request.subresource else plural


@dataclass
class Tally:
    """API requests by (client, verb, resource)."""

    calls: collections.Counter = field(default_factory=collections.Counter)

    def count(self, request) -> None:
        self.calls[(who(request), verb(request), resource_of(request))] += 1


def counting_emulator(tally: Tally) -> kmock.KubernetesEmulator:
    """kmock, counting every request, and made to serve in time independent of the objects it
    holds. Private attributes: this is a benchmark, not a test.

    - kmock logs every request, per server and per reaction, and scans those logs to route each
      request (quadratic in the requests served): a request is forgotten once served;
    - kmock finds the objects of a request, and the resources it serves, by scanning all the
      objects it holds: here they are indexed by (resource, namespace) (kmock never removes an
      object from `_objects`, it marks it deleted, and a dict keeps insertion order: new keys
      are those past the last count)."""

    class CountingEmulator(kmock.KubernetesEmulator):
        async def _handle(self, request):
            tally.count(request)
            try:
                return await super()._handle(request)
            finally:
                logs = [self._requests]
                logs += [getattr(p, "_requests", []) for r in self._walk(kmock.Root)
                         for p in r._payloads]  # fmt: skip
                for log in logs:
                    for index in range(len(log) - 1, -1, -1):
                        if log[index] is request:
                            del log[index]
                            break

        def places(self) -> dict:
            """{(resource, namespace): {name: object}}, brought up to date."""
            places = self.__dict__.setdefault("_places", {})
            everything = self._objects._objects
            indexed = self.__dict__.get("_indexed", 0)
            for key in itertools.islice(everything, indexed, None):
                places.setdefault((key[0], key[1]), {})[key[2]] = everything[key]
            self.__dict__["_indexed"] = len(everything)
            return places

        def objects_of(self, plural: str) -> list:
            return [obj for (resource, _), objects in self.places().items()
                    if resource.plural == plural for obj in objects.values()]  # fmt: skip

        def _get_resources(self) -> list:
            # kmock's adds the resource of every object it holds, scanning them all.
            declared = kmock.KubernetesScaffold._get_resources(self)
            return list({*declared, *(resource for resource, _ in self.places())})

        def _KubernetesEmulator__get_objs(self, request, strict: bool) -> list:
            places = self.places()
            if request.namespace is None and not strict:  # cluster-wide: every namespace
                wanted = [p for p in places if p[0] == request.resource]
            else:
                wanted = [(request.resource, request.namespace)]
            found = []
            for place in wanted:
                objects = places.get(place, {})
                if request.name is None:
                    found += objects.values()
                elif request.name in objects:
                    found.append(objects[request.name])
            return found

    return CountingEmulator()


@dataclass
class Driver:
    """The Job controller and the kubelet, polling kmock's objects every 50 ms. A Job runs
    for stage_seconds x uniform(0.5, 1.5) (the Jobs running when the progress phase begins:
    x uniform(0, 1) from then), drawn from a seeded generator: the same for every operator."""

    server: object
    stage_seconds: float
    # (namespace, Job) -> (when it finishes, None once finished; the Job)
    started: dict[tuple[str, str], tuple[float | None, dict]] = field(default_factory=dict)
    finished_at: dict[tuple[str, str], float] = field(default_factory=dict)  # (ns, run) -> when
    reactions: list[float] = field(default_factory=list)
    finishing: bool = False
    draw: random.Random = field(default_factory=lambda: random.Random(0))

    def begin_finishing(self) -> None:
        now = time.monotonic()
        for key, (due, job) in sorted(self.started.items()):
            if due is not None:
                self.started[key] = (now + self.stage_seconds * self.draw.uniform(0, 1), job)
        self.finishing = True

    async def step(self) -> None:
        for job in live(self.server, "jobs"):
            meta = job["metadata"]
            key = (meta["namespace"], meta["name"])
            if key in self.started or (job.get("status") or {}).get("conditions"):
                continue
            run = (meta["namespace"], meta["labels"]["mfpo.dev/run"])
            if run in self.finished_at:
                self.reactions.append(time.monotonic() - self.finished_at.pop(run))
            await start(self.server, job)
            lasts = self.stage_seconds * self.draw.uniform(0.5, 1.5)
            self.started[key] = (time.monotonic() + lasts, job)
        if not self.finishing:
            return
        now = time.monotonic()
        for key, (due, job) in list(self.started.items()):
            if due is not None and now >= due:
                await finish(self.server, job)
                self.started[key] = (None, job)
                meta = job["metadata"]
                self.finished_at[(meta["namespace"], meta["labels"]["mfpo.dev/run"])] = (
                    time.monotonic()
                )

    async def until(self, done, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.step()
            if done():
                return True
            await asyncio.sleep(0.05)
        return False


def operator_command(tree: Path, metrics_port: int) -> list[str]:
    """`python -m mfpo_operator.kube` as the image runs it, cluster-wide, without a liveness
    endpoint. Older operators took --standalone (no peering); later ones are standalone."""
    command = [sys.executable, "-m", "mfpo_operator.kube", "--liveness", "",
               "--metrics-port", str(metrics_port)]  # fmt: skip
    if '"--standalone"' in (tree / "operator/mfpo_operator/kube/main.py").read_text():
        command.append("--standalone")
    return command


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) buckets."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return float("nan")
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


@dataclass
class Sample:
    """The operator's reconcile histogram and its process counters at one moment."""

    buckets: list[tuple[float, float]]
    total: float
    count: float
    cpu: float  # seconds, user + system
    rss_mib: float
    driver_cpu: float  # this process: kmock and the driver
    # The operator's own API requests (mfpo_operator_api_request_duration_seconds, absent from
    # older operators): (verb, resource) -> (cumulative buckets, sum, count).
    requests: dict[tuple[str, str], tuple[list[tuple[float, float]], float, float]] = field(
        default_factory=dict
    )


def sample(port: int, pid: int) -> Sample:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    buckets, total, count = [], 0.0, 0.0
    requests: dict[tuple[str, str], tuple[list[tuple[float, float]], float, float]] = {}
    for line in text.splitlines():
        if line.startswith("mfpo_operator_api_request_duration_seconds_"):
            labels = dict(_LABEL.findall(line))
            key = (labels.get("verb", ""), labels.get("resource", ""))
            series_buckets, series_sum, series_count = requests.get(key, ([], 0.0, 0.0))
            value = float(line.rsplit(" ", 1)[1])
            if "_bucket{" in line:
                series_buckets.append((float(labels["le"]), value))
            elif "_sum{" in line:
                series_sum = value
            elif "_count{" in line:
                series_count = value
            requests[key] = (series_buckets, series_sum, series_count)
            continue
        if line.startswith("mfpo_reconcile_duration_seconds_bucket"):
            upper = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(upper), float(line.rsplit(" ", 1)[1])))
        elif line.startswith("mfpo_reconcile_duration_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("mfpo_reconcile_duration_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
    own = resource.getrusage(resource.RUSAGE_SELF)
    return Sample(buckets, total, count, cpu, int(hwm[0]) / 1024 if hwm else float("nan"),
                  own.ru_utime + own.ru_stime, requests)  # fmt: skip


_LABEL = re.compile(r'(\w+)="([^"]*)"')


def request_table(end: Sample, start: Sample | None = None, reconciles: float | None = None) -> str:
    """The operator's API requests between two samples: count, per reconcile, mean, p50, p95."""
    rows = ["| request | count | per reconcile | mean | p50 | p95 |", "|---|---:|---:|---:|---:|---:|"]
    for key, (buckets, total, count) in sorted(end.requests.items(), key=lambda kv: -kv[1][2]):
        before = start.requests.get(key, ([], 0.0, 0.0)) if start else ([], 0.0, 0.0)
        was = dict(before[0])
        buckets = [(upper, value - was.get(upper, 0.0)) for upper, value in buckets]
        count, total = count - before[2], total - before[1]
        if count <= 0:
            continue
        per = f"{count / reconciles:.2f}" if reconciles else "-"
        rows.append(
            f"| {key[0]} {key[1]} | {count:.0f} | {per} | {total / count * 1000:.0f} ms | "
            f"{histogram_quantile(0.5, buckets) * 1000:.0f} ms | "
            f"{histogram_quantile(0.95, buckets) * 1000:.0f} ms |"
        )
    return "\n".join(rows)


@dataclass
class Phase:
    name: str
    seconds: float
    before: Sample
    after: Sample
    calls: collections.Counter

    @property
    def reconciles(self) -> float:
        return self.after.count - self.before.count

    def quantile(self, q: float) -> float:
        delta = [(u, c - b) for (u, c), (_, b) in zip(self.after.buckets, self.before.buckets)]
        return histogram_quantile(q, delta)

    def mean(self) -> float:
        return (self.after.total - self.before.total) / max(self.reconciles, 1)


@dataclass
class Result:
    tree: Path
    runs: int
    succeeded: int
    phases: list[Phase]
    reactions: list[float]
    peak_rss_mib: float


async def scenario(args: argparse.Namespace, tree: Path, metrics_port: int) -> Result:
    tally = Tally()
    async with counting_emulator(tally) as server, kmock.Server(server):
        declare_resources(server)
        tmp = Path(tempfile.mkdtemp(prefix="mfpo-bench-"))
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig(tmp / "kubeconfig", str(server.url).rstrip("/"))),
            "PYTHONPATH": f"{tree}/core:{tree}/operator",
            "MFPO_OPERATOR_RESYNC_SECONDS": str(args.resync_seconds),
        }
        command = operator_command(tree, metrics_port)
        log = (tmp / "operator.log").open("w")
        operator = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        driver = Driver(server, args.stage_seconds)
        phases: list[Phase] = []
        snap = lambda: asyncio.to_thread(sample, metrics_port, operator.pid)

        async def phase(name: str, run_it) -> None:
            before, calls, clock = await snap(), tally.calls.copy(), time.monotonic()
            await run_it()
            after = await snap()
            phases.append(Phase(name, time.monotonic() - clock, before, after,
                                tally.calls - calls))  # fmt: skip

        def runs_with(predicate) -> int:
            return sum(1 for r in live(server, "mfporuns") if predicate(r.get("status") or {}))

        def all_running() -> bool:
            running = lambda s: s.get("phase") == "Running" and (s.get("stages") or [{}])[0].get(
                "reason"
            ) == "Started"
            return runs_with(running) == args.runs

        succeeded = lambda: runs_with(lambda s: s.get("phase") == "Succeeded")
        try:
            await _wait_started(metrics_port, operator, tmp / "operator.log")

            async def create_and_start() -> None:
                for i in range(args.runs):
                    ns = f"team-{i % args.namespaces}"
                    response = await server.post(
                        f"/apis/mfpo.dev/v1alpha1/namespaces/{ns}/mfporuns",
                        json=manifest(f"run-{i}", ns, args.align_stages),
                    )
                    assert response.status < 300, await response.text()
                if not await driver.until(all_running, args.timeout):
                    seen = collections.Counter(
                        ((r.get("status") or {}).get("phase"),
                         ((r.get("status") or {}).get("stages") or [{}])[0].get("reason"))
                        for r in live(server, "mfporuns")
                    )  # fmt: skip
                    raise SystemExit(f"{tree}: not every run started within {args.timeout} s: "
                                     f"(phase, first stage's reason): {dict(seen)}")  # fmt: skip

            async def settle() -> None:
                """Until the operator has made no reconcile for 2 s: the reconciles of the
                start phase's last Job events end before the idle window opens."""
                count, since = -1.0, time.monotonic()
                while time.monotonic() - since < 2.0:
                    now = (await snap()).count
                    if now != count:
                        count, since = now, time.monotonic()
                    await driver.until(lambda: False, 0.2)

            async def stay_idle() -> None:
                await driver.until(lambda: False, args.idle_seconds)

            async def progress() -> None:
                driver.begin_finishing()
                await driver.until(lambda: succeeded() == args.runs, args.timeout)

            await phase("start", create_and_start)
            if args.idle_seconds:
                await settle()
                await phase("idle", stay_idle)
            await phase("progress", progress)
            done = succeeded()
        finally:
            operator.terminate()
            await asyncio.wait_for(operator.wait(), 60)
            log.close()
    return Result(tree, args.runs, done, phases, driver.reactions, phases[-1].after.rss_mib)


async def _wait_started(port: int, operator, log: Path) -> None:
    """Until the operator serves its metrics, then 2 s more to begin watching."""
    for _ in range(600):
        if operator.returncode is not None:
            raise SystemExit(f"the operator exited: see {log}")
        try:
            await asyncio.to_thread(
                urllib.request.urlopen, f"http://127.0.0.1:{port}/metrics", timeout=5
            )
            break
        except OSError:
            await asyncio.sleep(0.1)
    await asyncio.sleep(2.0)


def _calls_table(phase: Phase, client: str) -> str:
    mine = {(v, r): n for (c, v, r), n in phase.calls.items() if c == client}
    if not mine:
        return "none"
    return ", ".join(f"{v} {r} {n}" for (v, r), n in sorted(mine.items()))


def report(result: Result, args: argparse.Namespace) -> dict[str, float]:
    """Print one scenario; return its headline figures for the comparison."""
    stages = args.align_stages + 3
    print(f"\n== operator from {result.tree}: {result.runs} runs x {stages} stages over "
          f"{args.namespaces} namespaces on kmock, {result.succeeded} succeeded")  # fmt: skip
    figures: dict[str, float] = {}
    for phase in result.phases:
        ops = sum(n for (c, _, _), n in phase.calls.items() if c == "operator")
        per = ops / max(phase.reconciles, 1)
        cpu = phase.after.cpu - phase.before.cpu
        kmock_cpu = phase.after.driver_cpu - phase.before.driver_cpu
        print(f"-- {phase.name}: {phase.seconds:.1f} s, {phase.reconciles:.0f} reconciles, "
              f"{ops} operator API calls ({per:.2f} per reconcile), CPU: operator {cpu:.1f} s, "
              f"kmock + driver {kmock_cpu:.1f} s")  # fmt: skip
        print(f"   operator calls: {_calls_table(phase, 'operator')}")
        print(f"   kopf's calls:   {_calls_table(phase, 'kopf')}")
        if phase.reconciles:
            print(f"   reconcile latency: median {phase.quantile(0.5) * 1000:.1f} ms, "
                  f"p95 {phase.quantile(0.95) * 1000:.1f} ms, mean {phase.mean() * 1000:.1f} ms")  # fmt: skip
            if phase.after.requests:
                print("   the operator's requests, as its client timed them:")
                print(request_table(phase.after, phase.before, phase.reconciles))
        if phase.name == "idle":
            periods = phase.seconds / args.resync_seconds
            figures["idle calls per run per resync period"] = ops / result.runs / periods
            figures["idle reconciles per run per resync period"] = (
                phase.reconciles / result.runs / periods
            )
            figures["idle operator CPU s per run per hour"] = cpu / result.runs * 3600 / phase.seconds
            print(f"   per run and resync period ({args.resync_seconds:g} s): "
                  f"{figures['idle calls per run per resync period']:.2f} API calls, "
                  f"{figures['idle reconciles per run per resync period']:.2f} reconciles")  # fmt: skip
        if phase.name == "progress":
            figures["progress wall s"] = phase.seconds
            figures["progress calls per reconcile"] = per
            figures["progress reconcile p95 ms"] = phase.quantile(0.95) * 1000
            figures["progress operator CPU s"] = cpu
    reactions = result.reactions
    if len(reactions) >= 2:
        p95 = statistics.quantiles(reactions, n=20)[-1]
        figures["reaction p95 ms"] = p95 * 1000
        print(f"reaction latency (Job done -> next Job created): median "
              f"{statistics.median(reactions) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms over "
              f"{len(reactions)} transitions")  # fmt: skip
    total_cpu = result.phases[-1].after.cpu - result.phases[0].before.cpu
    figures["operator CPU s"] = total_cpu
    figures["peak RSS MiB"] = result.peak_rss_mib
    print(f"operator: CPU {total_cpu:.1f} s over all phases, peak RSS {result.peak_rss_mib:.0f} MiB")
    return figures


async def main(args: argparse.Namespace) -> None:
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    trees = [Path(args.compare).resolve()] if args.compare else []
    trees.append(Path(args.tree).resolve())
    figures = []
    for index, tree in enumerate(trees):
        result = await scenario(args, tree, args.metrics_port + index)
        figures.append(report(result, args))
        print(f"load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if len(figures) == 2:
        before, after = figures
        print(f"\n== side by side ({trees[0]} -> {trees[1]})")
        for key in before:
            if key in after:
                ratio = after[key] / before[key] if before[key] else float("nan")
                print(f"{key}: {before[key]:.2f} -> {after[key]:.2f} ({ratio:.2f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--align-stages", type=int, default=1)
    parser.add_argument("--idle-seconds", type=float, default=30.0,
                        help="how long to watch the runs wait (0: skip the idle phase)")  # fmt: skip
    parser.add_argument("--resync-seconds", type=float, default=10.0,
                        help="the operator's MFPO_OPERATOR_RESYNC_SECONDS (default 60 in production)")  # fmt: skip
    parser.add_argument("--stage-seconds", type=float, default=0.0,
                        help="how long a Job runs in the progress phase, on average (0: finished "
                        "at once, all together: a burst)")  # fmt: skip
    parser.add_argument("--tree", default=str(HERE), help="checkout whose operator is measured")
    parser.add_argument("--compare", default=None,
                        help="another checkout (e.g. a worktree at main) measured first")  # fmt: skip
    parser.add_argument("--metrics-port", type=int, default=19090)
    parser.add_argument("--timeout", type=float, default=900.0)
    asyncio.run(main(parser.parse_args()))
