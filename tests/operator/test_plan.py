"""Readable examples of the planner (tier 1: pure, hand-worked expectations)."""

from __future__ import annotations

from mfpo_operator.plan import (
    JOB_NAME_LIMIT,
    RETRY_ANNOTATION,
    StartAttempt,
    StopAttempt,
    job_name,
)
from planner_world import T0, World, make_spec


def conditions(status) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_a_new_run_starts_datagen_attempt_one():
    world = World(make_spec())
    result = world.reconcile()
    assert result.actions == (StartAttempt("datagen", 1, "r-datagen-a1"),)
    assert result.status.phase == "Running"
    assert result.status.current_stage == "datagen"
    assert result.status.progress == "0/5"
    assert [s.name for s in result.status.stages] == [
        "datagen",
        "score",
        "align-1",
        "align-2",
        "eval",
    ]
    assert result.status.stage("datagen").phase == "Running"
    assert result.status.stage("datagen").job == "r-datagen-a1"
    assert result.status.start_time == T0
    assert result.status.observed_generation == 1
    assert conditions(result.status)["Progressing"] == ("True", "Started")
    assert [e.reason for e in result.events] == ["AttemptStarted"]


def test_waits_while_an_attempt_runs_and_starts_nothing_twice():
    world = World(make_spec())
    world.reconcile()
    again = world.reconcile()
    assert again.actions == ()
    assert again.events == ()
    assert again.requeue_after is None


def test_stages_follow_each_other_to_success_with_metrics_in_status():
    world = World(make_spec())
    world.reconcile()
    order = []
    for _ in range(5):
        (job,) = world.live()
        order.append(job)
        world.finish(job, metrics={"eval.align-2.synthetic.chair_s": 0.25} if "eval" in job else {})
        world.advance(1)
        world.reconcile()
    assert order == ["r-datagen-a1", "r-score-a1", "r-align-1-a1", "r-align-2-a1", "r-eval-a1"]
    status = world.status
    assert status.phase == "Succeeded"
    assert status.progress == "5/5"
    assert status.current_stage is None
    assert status.completion_time == T0.replace(second=5)
    assert status.stage("eval").metrics == {"eval.align-2.synthetic.chair_s": 0.25}
    assert conditions(status)["Ready"] == ("True", "Succeeded")
    assert conditions(status)["Progressing"][0] == "False"
    assert world.last.events[-1].reason == "RunSucceeded"


def test_failed_attempt_backs_off_then_resumes_as_a_new_attempt():
    world = World(make_spec())  # maxAttempts 3, backoff 10 s then 20 s
    world.reconcile()
    world.finish("r-datagen-a1", exit_code=1, message="CUDA error")
    result = world.reconcile()
    stage = result.status.stage("datagen")
    assert stage.phase == "BackOff"
    assert stage.message == "attempt 1 failed (exit code 1): CUDA error"
    assert result.actions == ()
    assert result.requeue_after == 10.0
    assert result.events[0].reason == "AttemptFailed"
    world.advance(9.5)
    assert world.reconcile().actions == ()
    world.advance(0.5)
    assert world.reconcile().actions == (StartAttempt("datagen", 2, "r-datagen-a2"),)
    world.finish("r-datagen-a2", exit_code=1, message="again")
    assert world.reconcile().requeue_after == 20.0


def test_attempts_exhausted_fails_the_run_with_a_clear_condition():
    world = World(make_spec(retries={"maxAttempts": 2, "backoffSeconds": 0}))
    world.reconcile()
    world.finish("r-datagen-a1", exit_code=1, message="boom")
    world.reconcile()
    world.finish("r-datagen-a2", exit_code=137, message="OOMKilled")
    result = world.reconcile()
    assert result.actions == ()
    assert result.status.phase == "Failed"
    assert result.status.stage("datagen").reason == "AttemptsExhausted"
    failed = next(c for c in result.status.conditions if c.type == "Failed")
    assert (failed.status, failed.reason) == ("True", "AttemptsExhausted")
    assert failed.message == "datagen: attempt 2 failed (exit code 137): OOMKilled"
    assert [e.reason for e in result.events] == ["StageFailed", "RunFailed"]


def test_bad_input_fails_at_once_and_stays_failed():
    world = World(make_spec())
    world.reconcile()
    world.finish("r-datagen-a1", exit_code=65, message="record 7: no image")
    result = world.reconcile()
    assert result.status.phase == "Failed"
    assert result.status.stage("datagen").reason == "BadInput"
    assert conditions(result.status)["Failed"] == ("True", "BadInput")
    world.advance(3600)
    later = world.reconcile()
    assert later.actions == () and later.status.phase == "Failed"


def test_manual_retry_after_permanent_failure_gives_a_fresh_budget():
    world = World(make_spec(), retry_token="x")  # a token seen while running is only recorded
    world.reconcile()
    world.finish("r-datagen-a1", exit_code=65, message="bad")
    world.reconcile()
    assert world.reconcile().actions == ()  # same token: nothing
    world.retry_token = "y"
    result = world.reconcile()
    assert result.actions == (StartAttempt("datagen", 2, "r-datagen-a2"),)
    assert result.status.phase == "Running"
    assert result.status.stage("datagen").retried_from == 1
    assert result.status.retry_token == "y"
    assert "RetryRequested" in [e.reason for e in result.events]
    assert RETRY_ANNOTATION in result.status.stage("datagen").message
    assert conditions(result.status)["Failed"][0] == "False"


def test_suspend_stops_the_live_attempt_and_resume_starts_a_new_one():
    world = World(make_spec())
    world.reconcile()
    world.spec = make_spec(suspend=True)
    result = world.reconcile()
    assert result.actions == (StopAttempt("datagen", 1, "r-datagen-a1", "Suspended"),)
    assert result.status.phase == "Suspended"
    assert conditions(result.status)["Suspended"] == ("True", "SpecSuspend")
    assert result.status.stage("datagen").disrupted_attempts == [1]
    assert world.reconcile().actions == ()  # the Job is gone, nothing more to do
    world.spec = make_spec()
    resumed = world.reconcile()
    assert resumed.actions == (StartAttempt("datagen", 2, "r-datagen-a2"),)
    assert "Resumed" in [e.reason for e in resumed.events]
    # the stopped attempt did not use the budget: two real failures still leave one attempt
    for attempt in (2, 3):
        world.finish(f"r-datagen-a{attempt}", exit_code=1)
        world.advance(100)
        world.reconcile()
        world.advance(100)
        world.reconcile()
    assert world.live() == ["r-datagen-a4"]


def test_disrupted_attempt_restarts_at_once_without_counting():
    world = World(make_spec(retries={"maxAttempts": 1}))
    world.reconcile()
    world.finish("r-datagen-a1", exit_code=143, message="evicted", disrupted=True)
    result = world.reconcile()
    assert result.actions == (StartAttempt("datagen", 2, "r-datagen-a2"),)
    assert result.status.stage("datagen").disrupted_attempts == [1]
    assert "Disrupted" in [e.reason for e in result.events]


def test_a_vanished_job_is_replaced():
    world = World(make_spec())
    world.reconcile()
    del world.jobs["r-datagen-a1"]  # someone deleted the Job
    result = world.reconcile()
    assert result.actions == (StartAttempt("datagen", 2, "r-datagen-a2"),)
    assert result.events[0].reason == "Vanished"


def test_lost_status_write_creates_no_duplicate():
    world = World(make_spec())
    world.reconcile(persist=False)  # the Job was created, the status patch was lost
    result = world.reconcile()
    assert result.actions == ()
    assert result.status.stage("datagen").attempts == 1
    assert result.status.stage("datagen").phase == "Running"


def test_old_live_attempt_is_stopped_as_superseded():
    world = World(make_spec())
    world.reconcile()
    world.finish("r-datagen-a1")
    world.reconcile()
    world.apply(StartAttempt("datagen", 2, "r-datagen-a2"))  # e.g. created by hand
    result = world.reconcile()
    assert StopAttempt("datagen", 2, "r-datagen-a2", "Superseded") in result.actions


def test_conditions_keep_their_transition_time_while_unchanged():
    world = World(make_spec())
    world.reconcile()
    first = {c.type: c.last_transition_time for c in world.status.conditions}
    world.advance(60)
    world.reconcile()
    assert {c.type: c.last_transition_time for c in world.status.conditions} == first


def test_job_names_are_deterministic_and_short():
    assert job_name("r", "align-3", 2) == "r-align-3-a2"
    long = job_name("a" * 40, "align-16", 100)
    assert len(long) <= JOB_NAME_LIMIT
    assert long == job_name("a" * 40, "align-16", 100)
    assert long != job_name("a" * 40, "align-16", 101)
    assert long.endswith("-align-16-a100-" + long.rsplit("-", 1)[1])


def test_status_round_trips_through_the_wire_form():
    world = World(make_spec())
    world.reconcile()
    world.finish("r-datagen-a1", exit_code=1, message="x")
    world.reconcile()
    wire = world.status.to_wire()
    assert wire["stages"][0]["phase"] == "BackOff"
    from mfpo_core.api import MFPORunStatus

    world.status = MFPORunStatus.model_validate(wire)
    world.advance(10)
    assert world.reconcile().actions == (StartAttempt("datagen", 2, "r-datagen-a2"),)


def progressing(status):
    return next((c.reason, c.message) for c in status.conditions if c.type == "Progressing")


def test_the_progressing_condition_says_which_attempt_and_why_a_run_failed():
    # What `kubectl get mfpo -o wide` shows in its Reason and Message columns.
    world = World(make_spec(retries={"maxAttempts": 3, "backoffSeconds": 0}))
    world.reconcile()
    world.finish("r-datagen-a1", exit_code=1)
    world.reconcile()
    assert progressing(world.status) == ("Started", "stage datagen attempt 2: Running")
    world.finish("r-datagen-a2", exit_code=65, message="record 3: no image")
    world.reconcile()
    reason, message = progressing(world.status)
    assert reason == "BadInput"
    assert message.startswith("stage datagen attempt 2: Failed: attempt 2 failed (exit code 65)")
    assert "record 3: no image" in message


def test_a_held_start_waits_with_the_executors_reason_and_says_it_once():
    world = World(make_spec())
    hold = ("ServiceAccountMissing", "serviceaccount 'trainer' not found")
    first = world.reconcile(hold=hold)
    assert first.actions == () and first.requeue_after == 15.0
    assert progressing(first.status) == (
        "ServiceAccountMissing", "stage datagen: Pending: serviceaccount 'trainer' not found"
    )  # fmt: skip
    assert [e.reason for e in first.events] == ["ServiceAccountMissing"]
    assert world.reconcile(hold=hold).events == ()
    assert world.reconcile().actions == (StartAttempt("datagen", 1, "r-datagen-a1"),)


def test_an_edit_after_stages_succeeded_is_said_and_each_stage_keeps_the_spec_it_ran_with():
    # Found by a cluster admin: editing a live run's spec after stages had succeeded moved
    # observedGeneration with no word, so one run silently mixed two specs. The edit applies
    # to the stages still to run (the documented fix flow); the ones done are not rerun.
    world = World(make_spec())
    world.reconcile()
    world.finish("r-datagen-a1")
    world.reconcile()
    assert world.status.stage("datagen").generation == 1
    world.generation = 2  # `kubectl edit`: e.g. training.learningRate
    result = world.reconcile()
    (said,) = [e for e in result.events if e.reason == "SpecChangedMidRun"]
    assert said.type == "Warning"
    assert said.message == (
        "spec generation 2 applies to the attempts started from now on; datagen (generation 1) "
        "succeeded with an earlier spec and will not run again (a new run reruns them); the "
        "running attempt of score (generation 1) goes on as it started"
    )
    assert world.status.stage("score").generation == 1  # started before the edit
    world.finish("r-score-a1")
    world.reconcile()
    assert world.status.stage("align-1").generation == 2
    assert not [e for e in world.reconcile().events if e.reason == "SpecChangedMidRun"]  # said once


def test_an_edit_before_any_stage_succeeded_says_nothing():
    world = World(make_spec())
    world.reconcile()
    world.generation = 2
    assert not [e for e in world.reconcile().events if e.reason == "SpecChangedMidRun"]


def test_an_edit_that_stops_the_running_attempt_does_not_say_it_goes_on():
    # Seen on the lab: `spec.suspend: true` after datagen succeeded said score's running
    # attempt "goes on as it started" in the same plan that stopped it.
    world = World(make_spec())
    world.reconcile()
    world.finish("r-datagen-a1")
    world.reconcile()
    world.spec, world.generation = make_spec(suspend=True), 2
    result = world.reconcile()
    (said,) = [e for e in result.events if e.reason == "SpecChangedMidRun"]
    assert "goes on" not in said.message
    assert any(e.reason == "AttemptStopped" for e in result.events)
