"""A tiny in-memory executor for planner tests: it applies StartAttempt/StopAttempt and lets a
test (or hypothesis) decide how each live attempt ends. Mirrors what the kube adapter and the
local runner do, without I/O."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from mfpo_core.api import MFPORunSpec, MFPORunStatus
from mfpo_core.contract import TerminationSummary
from mfpo_operator.plan import (
    Attempt,
    AttemptState,
    Plan,
    StartAttempt,
    StopAttempt,
    plan,
)

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def make_spec(**overrides) -> MFPORunSpec:
    doc = {
        "model": {"uri": "file:///models/tiny"},
        "data": {"uri": "file:///data/train", "format": "synthetic"},
        "storage": {"uri": "file:///runs"},
        "curriculum": {"stages": 2},
        "retries": {"maxAttempts": 3, "backoffSeconds": 10, "backoffMultiplier": 2},
    }
    for key, value in overrides.items():
        doc[key] = {**doc.get(key, {}), **value} if isinstance(value, dict) else value
    return MFPORunSpec.model_validate(doc)


@dataclass
class World:
    spec: MFPORunSpec
    run: str = "r"
    now: datetime = T0
    status: MFPORunStatus | None = None
    jobs: dict[str, Attempt] = field(default_factory=dict)  # job name -> attempt
    started: list[StartAttempt] = field(default_factory=list)
    retry_token: str | None = None
    generation: int = 1
    last: Plan | None = None

    def reconcile(self, *, persist: bool = True, hold: tuple[str, str] | None = None) -> Plan:
        result = plan(
            self.spec,
            self.status,
            list(self.jobs.values()),
            run=self.run,
            now=self.now,
            generation=self.generation,
            retry_token=self.retry_token,
            hold=hold,
        )
        for action in result.actions:
            self.apply(action)
        if persist:
            self.status = result.status
        self.last = result
        return result

    def apply(self, action: StartAttempt | StopAttempt) -> None:
        if isinstance(action, StartAttempt):
            assert action.job not in self.jobs, f"duplicate job {action.job}"
            self.jobs[action.job] = Attempt(
                action.stage, action.attempt, AttemptState.running, started_at=self.now
            )
            self.started.append(action)
        else:
            # Like deleting the Job: it disappears from the observations.
            self.jobs.pop(action.job, None)

    def live(self) -> list[str]:
        return [name for name, a in self.jobs.items() if a.state == AttemptState.running]

    def finish(
        self,
        job: str,
        *,
        exit_code: int = 0,
        message: str | None = None,
        disrupted: bool = False,
        metrics: dict[str, float] | None = None,
    ) -> None:
        attempt = self.jobs[job]
        if exit_code == 0:
            summary = TerminationSummary(
                stage=attempt.stage, status="succeeded", metrics=metrics or {}
            )
            state = AttemptState.succeeded
        else:
            status = "bad-input" if exit_code == 65 else "retryable"
            summary = TerminationSummary(stage=attempt.stage, status=status, message=message)
            state = AttemptState.failed
        self.jobs[job] = replace(
            attempt,
            state=state,
            exit_code=exit_code,
            summary=summary,
            finished_at=self.now,
            disrupted=disrupted,
        )

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def stage(self, name: str):
        return self.status.stage(name)
