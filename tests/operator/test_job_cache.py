"""The operator's watch-fed view of its Jobs (`kube.job_cache`): what a late or missed watch
event may and may not do to it; and kopf's per-event diff base, built for runs only. The Job controller never removes a Job's Complete or Failed
condition (a finished Job is final: pkg/controller/job), and a deleted object's uid is never
reused (metav1.ObjectMeta.uid)."""

from __future__ import annotations

import kopf
from kube_world import NS
from mfpo_operator.kube.handlers import RunsDiffBaseStorage
from mfpo_operator.kube.job_cache import JobCache
from mfpo_operator.validation import LAST_HANDLED_KEY, LAST_HANDLED_PREFIX


def _job(name: str, run: str = "demo", uid: str | None = None, **status) -> dict:
    meta = {"name": name, "namespace": NS, "labels": {"mfpo.dev/run": run, "mfpo.dev/stage": "datagen",
            "mfpo.dev/attempt": "1"}, "resourceVersion": "1"}  # fmt: skip
    if uid:
        meta["uid"] = uid
    return {"metadata": meta, "spec": {"template": {"spec": {}}}, "status": status}


COMPLETE = [{"type": "Complete", "status": "True"}]


def test_the_job_cache_says_when_a_reconcile_has_something_new_to_read():
    cache = JobCache()
    assert cache.observe(_job("a", uid="u1"))  # new
    echo = _job("a", uid="u1")
    echo["metadata"]["resourceVersion"] = "2"
    assert not cache.observe(echo)  # only the version moved
    assert cache.observe(_job("a", uid="u1", active=1))
    assert "template" not in cache.jobs(NS, "demo")[0]["spec"]  # kept without its pod template


def test_a_late_event_never_undoes_a_jobs_end_nor_its_deletion():
    cache = JobCache()
    cache.observe(_job("a", uid="u1", conditions=COMPLETE))
    assert not cache.observe(_job("a", uid="u1", active=1))  # an older version, seen late
    assert cache.jobs(NS, "demo")[0]["status"]["conditions"] == COMPLETE
    assert cache.forget(_job("a", uid="u1"))
    assert not cache.observe(_job("a", uid="u1", conditions=COMPLETE))  # deleted stays deleted
    cache.replace(NS, "demo", [_job("a", uid="u1"), _job("b", uid="u2", active=1)])
    assert [j["metadata"]["name"] for j in cache.jobs(NS, "demo")] == ["b"]
    cache.replace(NS, "demo", [])  # a listing without b: b is gone
    assert cache.jobs(NS, "demo") == [] and cache.live(NS, "demo") == []
    cache.forget_run(NS, "demo")  # a new run of the same name starts from nothing
    assert cache.observe(_job("a", uid="u1"))


def test_a_run_is_seeded_by_its_first_listing_and_forgotten_with_it():
    cache = JobCache()
    cache.observe(_job("a", uid="u1"))
    assert not cache.seeded(NS, "demo")  # watch events alone may have missed a Job
    cache.replace(NS, "demo", [_job("a", uid="u1")])
    assert cache.seeded(NS, "demo")
    cache.forget_run(NS, "demo")
    assert not cache.seeded(NS, "demo")


def test_a_job_the_operator_deleted_is_gone_before_its_event():
    cache = JobCache()
    cache.observe(_job("a", uid="u1", conditions=COMPLETE))
    cache.forget_name(NS, "demo", "a")
    assert cache.jobs(NS, "demo") == []
    assert not cache.observe(_job("a", uid="u1", conditions=COMPLETE))  # its late events


def test_kopf_builds_a_diff_base_for_runs_only():
    # kopf deep-copies every event's body into a diff base (processing.py `_detect_causes`)
    # and compares it only where a change-detecting handler watches: the runs' deletion.
    storage = RunsDiffBaseStorage(prefix=LAST_HANDLED_PREFIX, key=LAST_HANDLED_KEY)
    plain = kopf.AnnotationsDiffBaseStorage(prefix=LAST_HANDLED_PREFIX, key=LAST_HANDLED_KEY)
    job = {"apiVersion": "batch/v1", "kind": "Job", **_job("a", uid="u1")}
    run = {"apiVersion": "mfpo.dev/v1alpha1", "kind": "MFPORun", "metadata": {"name": "demo"},
           "spec": {"suspend": False}}  # fmt: skip
    assert storage.build(body=kopf.Body(job)) == {}
    assert storage.build(body=kopf.Body(run)) == plain.build(body=kopf.Body(run)) != {}
