"""The local executor: runs an MFPORun's stages as subprocesses on this machine.

The same planner as the operator (`mfpo_operator.plan`) decides what to do; this module only
turns its `StartAttempt` actions into `mfpo-stage --config ...` subprocesses (one per datagen
shard) and their exit codes and termination summaries back into `Attempt` observations.
The run's status and every attempt are kept under `<storage.uri>/<run>/_local/state.json`, so a
run stopped at any moment (Ctrl-C, SIGTERM, a crash, a reboot) continues where it stopped when
started again: finished stages are not redone (their result documents exist) and the stage
that was running resumes from its last checkpoint.

Called by `mfpo run` and `mfpo demo` (mfpo_operator.cli).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from mfpo_core import cpus, storage
from mfpo_core.api import MFPORun, MFPORunStatus, RunPhase
from mfpo_core.contract import ExitCode, StageConfig, TerminationSummary

from mfpo_operator.plan import Attempt, AttemptState, StartAttempt, plan

# How long a stage gets to save its checkpoint after SIGTERM (as a pod's grace period).
GRACE_SECONDS = 60.0
STATE_FILE = "_local/state.json"


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _Recorded:
    """An attempt as persisted in the local state file."""

    stage: str
    attempt: int
    state: str
    exit_code: int | None = None
    summary: str | None = None  # the encoded termination summary
    started_at: str | None = None
    finished_at: str | None = None
    message: str | None = None
    disrupted: bool = False
    processes: list[list[int]] | None = None  # [pid, start time in clock ticks] of each process

    def observation(self) -> Attempt:
        return Attempt(
            stage=self.stage,
            attempt=self.attempt,
            state=AttemptState(self.state),
            exit_code=self.exit_code,
            summary=TerminationSummary.decode(self.summary),
            started_at=datetime.fromisoformat(self.started_at) if self.started_at else None,
            finished_at=datetime.fromisoformat(self.finished_at) if self.finished_at else None,
            message=self.message,
            disrupted=self.disrupted,
        )


class LocalRunner:
    """Runs one manifest to completion (or until stopped) with the shared planner."""

    def __init__(
        self,
        manifest: MFPORun,
        *,
        progress: bool = True,
        stage_command: Sequence[str] = (sys.executable, "-m", "mfpo_runtime.stage"),
        out: TextIO = sys.stdout,
        max_parallel_shards: int | None = None,
    ) -> None:
        self.name = manifest.metadata.name
        self.namespace = manifest.metadata.namespace or "default"
        self.spec = manifest.spec
        self.run_uri = storage.join(self.spec.storage.uri, self.name)
        self.state_uri = storage.join(self.run_uri, STATE_FILE)
        # The manifest's endpoint, never the shell's: for the stages and for the state alike.
        self.env = storage.run_environment(self.spec.storage, os.environ)
        self.progress = progress
        self.stage_command = list(stage_command)
        self.out = out
        self.max_parallel_shards = max_parallel_shards or cpus.available_cpus()
        cpus.threads_per_process()  # a bad MFPO_THREADS / OMP_NUM_THREADS fails here, before any stage
        self._stop = threading.Event()
        self._children: list[subprocess.Popen] = []
        self._status: MFPORunStatus | None = None
        self._recorded: list[_Recorded] = []

    # ----------------------------------------------------------------- state

    def _load(self) -> tuple[MFPORunStatus | None, list[_Recorded]]:
        with storage.using_env(self.env):
            if not storage.exists(self.state_uri):
                return None, []
            doc = storage.read_json(self.state_uri)
        status = MFPORunStatus.model_validate(doc["status"]) if doc.get("status") else None
        return status, [_Recorded(**a) for a in doc.get("attempts", [])]

    def _save(self) -> None:
        doc = {
            "status": self._status.to_wire() if self._status else None,
            "attempts": [asdict(a) for a in self._recorded],
        }
        with storage.using_env(self.env):
            storage.write_json(doc, self.state_uri)

    def status(self) -> MFPORunStatus | None:
        return self._load()[0]

    # ------------------------------------------------------------------ loop

    def run(self) -> MFPORunStatus:
        """Run until the run succeeds, fails, is suspended, or this process is asked to stop."""
        self._status, self._recorded = self._load()
        self._recover_interrupted(self._recorded)
        previous_handlers = self._install_signal_handlers()
        self._say(f"run {self.name}: {len(self.spec.stage_names())} stages, artifacts in {self.run_uri}")
        try:
            while not self._stop.is_set():
                decision = plan(
                    self.spec,
                    self._status,
                    [r.observation() for r in self._recorded],
                    run=self.name,
                    now=_now(),
                    generation=1,
                )
                self._status = status = decision.status
                self._save()
                for event in decision.events:
                    self._say(f"  {event.reason}: {event.message}")
                if status.phase in (RunPhase.succeeded, RunPhase.failed, RunPhase.suspended):
                    break
                # StopAttempt needs no work here: a local attempt is live only inside _execute,
                # which has already ended when the planner runs.
                starts = [a for a in decision.actions if isinstance(a, StartAttempt)]
                if starts:
                    self._execute(starts[0])
                elif decision.requeue_after:
                    self._say(f"  waiting {decision.requeue_after:.0f}s before the next attempt")
                    self._stop.wait(decision.requeue_after)
                else:
                    break
        finally:
            self._restore_signal_handlers(previous_handlers)
        if self._stop.is_set():
            # The stopped attempt is recorded; the next run's planner folds it in (as a
            # disruption) and resumes the stage from its checkpoint.
            self._say(f"stopped; run the same command again to continue run {self.name}")
        self._say(self.summary(self._status))
        return self._status

    def _recover_interrupted(self, recorded: list[_Recorded]) -> None:
        """An attempt recorded as running belongs to a runner that died: end it as disrupted."""
        for record in recorded:
            if record.state != AttemptState.running.value:
                continue
            for pid, started in record.processes or []:
                _stop_stale(pid, started)
            record.state = AttemptState.failed.value
            record.disrupted = True
            record.finished_at = _now().isoformat()
            record.message = "the local runner stopped while this attempt ran"

    # -------------------------------------------------------------- attempts

    def _config(self, stage: str, attempt: int, shard_index: int | None) -> StageConfig:
        return StageConfig(
            run=self.name,
            namespace=self.namespace,
            stage=stage,
            attempt=attempt,
            run_uri=self.run_uri,
            spec=self.spec,
            shard_index=shard_index,
        )

    def _execute(self, start: StartAttempt) -> None:
        """Run one attempt to its end and record it (recorded as running first, for recovery)."""
        shards = self.spec.image_preference.shards if start.stage == "datagen" else 1
        stages = self._status.stages if self._status else []
        done = sum(1 for s in stages if s.phase == "Succeeded")
        self._say(
            f"[{done + 1}/{len(stages)}] {start.stage} attempt {start.attempt}"
            + (f" ({shards} shards)" if shards > 1 else "")
        )
        began = time.monotonic()
        record = _Recorded(start.stage, start.attempt, AttemptState.running.value, started_at=_now().isoformat())
        self._recorded.append(record)
        with tempfile.TemporaryDirectory(prefix=f"mfpo-{start.job}-") as tmp:
            configs = []
            for index in range(shards):
                config = self._config(start.stage, start.attempt, index if start.stage == "datagen" else None)
                path = Path(tmp, f"config-{index}.json")
                path.write_text(config.to_json())
                configs.append((path, Path(tmp, f"termination-{index}.log")))
            outcomes = self._run_processes(configs, record)
        self._finish(record, outcomes)
        self._save()
        self._say(_attempt_line(record, time.monotonic() - began))

    def _run_processes(
        self, configs: list[tuple[Path, Path]], record: _Recorded
    ) -> list[tuple[int, TerminationSummary | None]]:
        """Run the attempt's processes (shards in parallel up to max_parallel_shards)."""
        outcomes: list[tuple[int, TerminationSummary | None]] = []
        pending = list(configs)
        while pending and not self._stop.is_set():
            batch, pending = pending[: self.max_parallel_shards], pending[self.max_parallel_shards :]
            threads = cpus.threads_per_process(len(batch))
            self._children = [self._spawn(config, log, threads) for config, log in batch]
            record.processes = [[c.pid, _start_ticks(c.pid)] for c in self._children]
            self._save()
            for child, (_, log) in zip(self._children, batch):
                code = _wait(child, self._stop)
                text = log.read_text() if log.exists() else None
                outcomes.append((code, TerminationSummary.decode(text)))
            self._children = []
        if pending:  # stopped before every shard ran
            outcomes.append((ExitCode.PREEMPTED, None))
        return outcomes

    def _spawn(self, config: Path, log: Path, threads: int) -> subprocess.Popen:
        env = {
            **self.env,
            # Shards running side by side share the CPUs: more threads than CPUs makes
            # torch's OpenMP workers wait on each other (measured: tens of times slower).
            "MFPO_THREADS": str(threads),
            "OMP_NUM_THREADS": str(threads),
            "MFPO_TERMINATION_LOG": str(log),
            "MFPO_PROGRESS": "1" if self.progress else "0",
            "PYTHONUNBUFFERED": "1",
        }
        # A new session: Ctrl-C reaches the runner only, which forwards SIGTERM so that the
        # stage saves its checkpoint as it would on preemption.
        return subprocess.Popen([*self.stage_command, "--config", str(config)], env=env, start_new_session=True)

    def _finish(self, record: _Recorded, outcomes: list[tuple[int, TerminationSummary | None]]) -> None:
        record.finished_at = _now().isoformat()
        record.processes = None
        failed = [(code, summary) for code, summary in outcomes if code != ExitCode.DONE]
        if not failed:
            record.state = AttemptState.succeeded.value
            record.exit_code = 0
            summaries = [s for _, s in outcomes if s]
            record.summary = _merge_summaries(summaries).encode() if summaries else None
            return
        code, summary = next(((c, s) for c, s in failed if c == ExitCode.BAD_INPUT), failed[0])
        record.state = AttemptState.failed.value
        record.exit_code = code
        record.summary = summary.encode() if summary else None
        # Stopped by us (Ctrl-C / SIGTERM to the runner): a disruption, not the stage's fault.
        record.disrupted = self._stop.is_set()
        record.message = None if summary else f"exit code {code}"

    # --------------------------------------------------------------- signals

    def _install_signal_handlers(self) -> dict[int, object]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)
        return previous

    def _restore_signal_handlers(self, previous: dict[int, object]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self._stop.is_set():
            self._say(f"\n{signal.Signals(signum).name}: stopping the running stage (it saves a checkpoint)")
        self.request_stop()

    def request_stop(self) -> None:
        """Stop the run: the running stage gets SIGTERM and saves its checkpoint."""
        self._stop.set()
        for child in self._children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    # ---------------------------------------------------------------- output

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def describe(self) -> str:
        status = self.status()
        if status is None:
            return f"run {self.name}: not started (no state at {self.state_uri})"
        lines = [f"run {self.name}: {status.phase} ({status.progress or '-'}), artifacts in {self.run_uri}"]
        for stage in status.stages:
            lines.append(f"  {stage.name:<10} {stage.phase:<10} attempts={stage.attempts} {stage.message or ''}".rstrip())
        return "\n".join(lines)

    def summary(self, status: MFPORunStatus) -> str:
        """The end-of-run summary: phase, hallucination scores before and after, the report."""
        lines = [self.describe()]
        eval_stage = status.stage("eval")
        if eval_stage and eval_stage.metrics:
            lines.append(format_eval_table(eval_stage.metrics))
        if eval_stage and eval_stage.outputs.get("report"):
            lines.append(f"report: {eval_stage.outputs['report']}")
        return "\n".join(lines)


def format_eval_table(metrics: dict[str, float]) -> str:
    """`eval.<policy>.<benchmark>.<metric>` metrics as a table: one row per benchmark metric."""
    table: dict[tuple[str, str], dict[str, float]] = {}
    policies: list[str] = []
    for key, value in metrics.items():
        parts = key.split(".", 3)
        if len(parts) != 4 or parts[0] != "eval":
            continue
        _, policy, benchmark, metric = parts  # metric may be dotted: counterprior.chair_s
        if policy not in policies:
            policies.append(policy)
        table.setdefault((benchmark, metric), {})[policy] = value
    if not table:
        return ""
    policies.sort(key=lambda p: (p != "base", p))
    header = f"  {'benchmark':<16}{'metric':<26}" + "".join(f"{p:>12}" for p in policies)
    rows = [header]
    for (benchmark, metric), values in sorted(table.items()):
        cells = "".join(f"{values[p]:>12.3f}" if p in values else f"{'-':>12}" for p in policies)
        rows.append(f"  {benchmark:<16}{metric:<26}{cells}")
    return "\n".join(rows)


def _merge_summaries(summaries: list[TerminationSummary]) -> TerminationSummary:
    """One summary for a sharded attempt: counts add up, outputs are kept per shard."""
    if len(summaries) == 1:
        return summaries[0]
    metrics: dict[str, float] = {}
    outputs: dict[str, str] = {}
    for index, summary in enumerate(summaries):
        for key, value in summary.metrics.items():
            metrics[key] = metrics.get(key, 0.0) + value
        for key, value in summary.outputs.items():
            outputs[f"{key}.{index}"] = value
    stage = summaries[0].stage if summaries else "datagen"
    return TerminationSummary(stage=stage, status="succeeded", metrics=metrics, outputs=outputs)


def _wait(child: subprocess.Popen, stop: threading.Event) -> int:
    """Wait for a child; after a stop request give it GRACE_SECONDS, then kill it."""
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if stop.is_set():
                try:
                    return child.wait(timeout=GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    child.kill()
                    return child.wait()


def _stop_stale(pid: int, started: int | None) -> None:
    """Stop a stage process left behind by a runner that died, and wait for it to save its
    checkpoint so that the next attempt never races it. The pid must still belong to the
    same process (same start time), never to an unrelated one that reused the number."""
    if started is None or _start_ticks(pid) != started:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + GRACE_SECONDS
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22 of stat: start time since boot


def _alive(pid: int) -> bool:
    """True while the process runs (a zombie waiting for its parent counts as gone)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def _attempt_line(record: _Recorded, seconds: float) -> str:
    summary = TerminationSummary.decode(record.summary)
    if record.state == AttemptState.succeeded.value:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in list((summary.metrics if summary else {}).items())[:6])
        return f"  {record.stage} succeeded in {seconds:.1f}s" + (f": {shown}" if shown else "")
    why = (summary.message if summary else None) or record.message or ""
    kind = "stopped" if record.disrupted else "failed"
    return f"  {record.stage} attempt {record.attempt} {kind} after {seconds:.1f}s (exit {record.exit_code}) {why}"


def load_state(run_uri: str) -> dict:
    """The raw local state document of a run (for tests and `mfpo status`)."""
    return json.loads(storage.read_text(storage.join(run_uri, STATE_FILE)))
