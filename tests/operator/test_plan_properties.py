"""Property-based tests of the planner over random event sequences (hypothesis).

Each example drives `plan()` through the in-memory executor of planner_world: jobs end in
success, failure, bad input, disruption or vanish; the run is suspended and resumed; a manual
retry arrives; time passes; status writes are lost. After every reconcile the invariants of
the module docstring must hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mfpo_operator.plan import AttemptState, StartAttempt, StopAttempt
from planner_world import World, make_spec


@dataclass(frozen=True)
class Op:
    kind: str
    arg: int = 0


OPS = st.one_of(
    st.builds(
        Op,
        st.sampled_from(["succeed"] * 4 + ["fail", "bad", "disrupt", "vanish"]),
        st.integers(0, 3),
    ),
    st.builds(Op, st.just("suspend")),
    st.builds(Op, st.just("resume")),
    st.builds(Op, st.just("retry")),
    st.builds(Op, st.just("wait"), st.integers(0, 700)),
    st.builds(Op, st.just("lose-write")),
)


@dataclass
class Checked(World):
    """The world plus the bookkeeping the invariants need."""

    stopped: set[str] = field(default_factory=set)  # jobs stopped, disrupted or vanished
    tokens: int = 0

    def apply(self, action) -> None:
        if isinstance(action, StartAttempt):
            self._check_predecessors(action.stage)
            live = [n for n in self.live() if self.jobs[n].stage == action.stage]
            assert not live, f"{action} while {live} is live"
        if isinstance(action, StopAttempt):
            self.stopped.add(action.job)
        super().apply(action)

    def _check_predecessors(self, stage: str) -> None:
        names = self.spec.stage_names()
        for before in names[: names.index(stage)]:
            assert any(
                a.stage == before and a.state == AttemptState.succeeded for a in self.jobs.values()
            ), f"{stage} started before {before} succeeded"


def apply_op(world: Checked, op: Op) -> None:
    live = world.live()
    if op.kind in ("succeed", "fail", "bad", "disrupt", "vanish"):
        if not live:
            return
        job = live[op.arg % len(live)]
        if op.kind == "vanish":
            del world.jobs[job]
            world.stopped.add(job)
        elif op.kind == "disrupt":
            world.finish(job, exit_code=143, disrupted=True)
            world.stopped.add(job)
        else:
            world.finish(job, exit_code={"succeed": 0, "fail": 1, "bad": 65}[op.kind])
    elif op.kind in ("suspend", "resume"):
        world.spec = world.spec.model_copy(update={"suspend": op.kind == "suspend"})
    elif op.kind == "retry":
        world.tokens += 1
        world.retry_token = str(world.tokens)
    elif op.kind == "wait":
        world.advance(op.arg)


def check_invariants(world: Checked, before) -> None:
    status = world.status
    max_attempts = world.spec.retries.max_attempts
    for stage in world.spec.stage_names():
        live = [n for n in world.live() if world.jobs[n].stage == stage]
        assert len(live) <= 1, f"two live attempts of {stage}: {live}"
        record = status.stage(stage)
        counted = [
            n
            for n in range(record.retried_from + 1, record.attempts + 1)
            if f"r-{stage}-a{n}" not in world.stopped and n not in record.disrupted_attempts
        ]
        assert len(counted) <= max_attempts, f"{stage}: {len(counted)} attempts > {max_attempts}"
    if before is not None and before.phase == "Succeeded":
        assert status.phase == "Succeeded"
    if before is not None and before.phase == "Failed" and before.retry_token == world.retry_token:
        assert status.phase == "Failed"
    if status.phase in ("Succeeded", "Failed", "Suspended"):
        assert not world.live() or world.last.actions == ()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(OPS, min_size=1, max_size=60),
    max_attempts=st.integers(1, 3),
    stages=st.integers(1, 2),
)
def test_invariants_hold_over_random_event_sequences(ops, max_attempts, stages):
    spec = make_spec(curriculum={"stages": stages}, retries={"maxAttempts": max_attempts})
    world = Checked(spec)
    world.reconcile()
    lose_next = False
    for op in ops:
        if op.kind == "lose-write":
            lose_next = True
            continue
        apply_op(world, op)
        before = world.status
        world.reconcile(persist=not lose_next)
        if lose_next:
            lose_next = False
            world.reconcile()  # the next reconcile sees the stale status and fresh observations
        check_invariants(world, before)


@settings(max_examples=60, deadline=None)
@given(failures=st.lists(st.booleans(), max_size=4), stages=st.integers(1, 3))
def test_a_run_whose_attempts_end_well_enough_succeeds(failures, stages):
    """Liveness: with failures below the budget, every stage ends up succeeding."""
    spec = make_spec(curriculum={"stages": stages}, retries={"maxAttempts": 5, "backoffSeconds": 1})
    world = Checked(spec)
    world.reconcile()
    pending_failures = list(failures)
    for _ in range(200):
        if world.status.phase == "Succeeded":
            break
        for job in world.live():
            fail = pending_failures.pop() if pending_failures else False
            world.finish(job, exit_code=1 if fail else 0)
        world.advance(600)
        world.reconcile()
    assert world.status.phase == "Succeeded"
    assert world.status.progress == f"{stages + 3}/{stages + 3}"
