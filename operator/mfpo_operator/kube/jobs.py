"""Pure builders of the Kubernetes objects of one stage attempt: ConfigMap, headless Service, Job.

Called by `kube.reconcile` when the planner says StartAttempt; tested without a cluster
(every manifest is validated against the Kubernetes OpenAPI schemas by kubernetes-validate).
Builders return plain dicts and never call the API.

One attempt = one batch/v1 Job named by `plan.job_name` and owned by the MFPORun:
- `backoffLimit: 0`: the operator retries, so that every retry is a new attempt it observes;
- `podFailurePolicy`: the bad-input exit code fails the Job at once, and a pod disrupted by
  preemption or eviction (condition DisruptionTarget) is ignored: the Job controller replaces
  the pod within the same attempt, which resumes from the stage's checkpoint;
- datagen is one Indexed Job with `imagePreference.shards` completions (each pod reads
  JOB_COMPLETION_INDEX); an align stage on several nodes is an Indexed Job with a headless
  Service, its pods run torchrun with the rendezvous on pod 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kubernetes.utils import parse_quantity
from mfpo_core.api import (
    API_VERSION,
    JUDGE_KEY_VARIABLE,
    KIND,
    TRACKING_CREDENTIAL_VARIABLES,
    MFPORunSpec,
)
from mfpo_core.contract import DEFAULT_TERMINATION_LOG, ExitCode, StageConfig
from mfpo_core.stages import kind_of
from mfpo_core.storage import CREDENTIAL_VARIABLES, storage_env

from mfpo_operator.plan import run_uri

MANAGED_BY = "mfpo-operator"
CONTAINER = "stage"
CONFIG_DIR = "/etc/mfpo"
CONFIG_KEY = "stage.json"
METRICS_PORT = 9400
RENDEZVOUS_PORT = 29500
# Long enough for an align stage to save its checkpoint after SIGTERM.
GRACE_SECONDS = 120
# An attempt's deadline when spec.resources.activeDeadlineSeconds is unset: the Job controller
# fails the Job (reason DeadlineExceeded) after this long, pending time included, so that an
# attempt stuck on a pull or the scheduler ends and is retried. Three days: longer than any
# stage of the flagship LLaVA-1.5-7B run on 8 GPUs.
DEFAULT_ATTEMPT_DEADLINE_SECONDS = 3 * 24 * 3600
# The least time a finished Job is kept (spec.resources.ttlSecondsAfterFinished is raised to it):
# the operator must see how an attempt ended before the TTL controller deletes the Job, or a
# failure it never saw would be restarted as vanished without counting, over and over (a
# success is recovered from its result document). It deletes a recorded attempt's Job itself.
MIN_FINISHED_JOB_TTL_SECONDS = 300
RUNTIME_UID = 1000
LABEL_RUN = "mfpo.dev/run"
LABEL_STAGE = "mfpo.dev/stage"
LABEL_ATTEMPT = "mfpo.dev/attempt"
LABEL_KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


@dataclass(frozen=True)
class RunRef:
    """Identity of the owning MFPORun (for names, labels and owner references)."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> RunRef:
        meta = body["metadata"]
        return cls(meta["name"], meta.get("namespace") or "default", meta.get("uid", ""))


def labels(run: str, stage: str | None = None, attempt: int | None = None) -> dict[str, str]:
    """Recommended app.kubernetes.io labels plus ours; the operator selects its objects by them."""
    result = {
        "app.kubernetes.io/name": "mfpo",
        "app.kubernetes.io/instance": run,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "mfpo",
        LABEL_RUN: run,
    }
    if stage is not None:
        result["app.kubernetes.io/component"] = kind_of(stage).name
        result[LABEL_STAGE] = stage
    if attempt is not None:
        result[LABEL_ATTEMPT] = str(attempt)
    return result


def owner_reference(run: RunRef) -> dict[str, Any]:
    """Jobs, pods, ConfigMaps and Services are garbage-collected with their MFPORun."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": run.name,
        "uid": run.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(run: RunRef, name: str, stage: str, attempt: int) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": run.namespace,
        "labels": labels(run.name, stage, attempt),
        "ownerReferences": [owner_reference(run)],
    }


# Where the parts of a Job's pod template a user writes come from in the MFPORun: an error the
# API server reports on one of them names the run's field too.
RUN_FIELDS = {
    "spec.template.spec.affinity": "spec.resources.affinity",
    "spec.template.spec.tolerations": "spec.resources.tolerations",
    "spec.template.spec.nodeSelector": "spec.resources.nodeSelector",
}


def run_field(job_field: str) -> str | None:
    """The MFPORun field a Job field comes from (`spec.template.spec.affinity.x` ->
    `spec.resources.affinity.x`), or None when the operator wrote it."""
    for prefix, field in RUN_FIELDS.items():
        if job_field == prefix or job_field.startswith((f"{prefix}.", f"{prefix}[")):
            return field + job_field[len(prefix):]
    return None


def config_map_name(job: str) -> str:
    return f"{job}-config"


def service_name(job: str) -> str:
    """Services are DNS-1035 labels (must start with a letter); job names may start with a digit."""
    return job if job[0].isalpha() else f"s{job}"


def is_multi_node(spec: MFPORunSpec, stage: str) -> bool:
    return kind_of(stage).distributed and spec.resources.nodes > 1


def stage_config(
    run: RunRef, spec: MFPORunSpec, stage: str, attempt: int, *, adopt_unowned: bool = False
) -> StageConfig:
    """The stage's config: with the run's uid, which its storage prefix's ownership record
    holds (`mfpo_core.ownership`); `adopt_unowned` for a run that completed stages before
    such records existed."""
    return StageConfig(
        run=run.name,
        namespace=run.namespace,
        uid=run.uid,
        runner="operator",
        adopt_unowned=adopt_unowned,
        stage=stage,
        attempt=attempt,
        run_uri=run_uri(spec, run.name),
        spec=spec,
    )


def config_map(
    run: RunRef, spec: MFPORunSpec, stage: str, attempt: int, job: str, *, adopt_unowned: bool = False
) -> dict[str, Any]:
    """The stage config document, mounted read-only at CONFIG_DIR. Holds no credentials."""
    config = stage_config(run, spec, stage, attempt, adopt_unowned=adopt_unowned)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(run, config_map_name(job), stage, attempt),
        "data": {CONFIG_KEY: config.to_json()},
    }


def headless_service(run: RunRef, stage: str, attempt: int, job: str) -> dict[str, Any]:
    """Gives each pod of a multi-node Job a DNS name `<job>-<index>.<service>` for torchrun."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(run, service_name(job), stage, attempt),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,  # the rendezvous happens before readiness
            "selector": {JOB_NAME_LABEL: job},
            "ports": [
                {"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}
            ],
        },
    }


def _parallelism(spec: MFPORunSpec, stage: str) -> int | None:
    """Pods of an Indexed Job, or None for a plain single-pod Job."""
    kind = kind_of(stage)
    if kind.shardable:
        return kind.shards(spec)
    if is_multi_node(spec, stage):
        return spec.resources.nodes
    return None


def _command(spec: MFPORunSpec, stage: str) -> list[str]:
    config = f"{CONFIG_DIR}/{CONFIG_KEY}"
    gpus = spec.resources.gpus_per_node
    if is_multi_node(spec, stage):
        # $(VAR) is expanded by the kubelet from the container's environment.
        return [
            "torchrun",
            "--nnodes=$(NNODES)",
            "--nproc-per-node=$(NPROC_PER_NODE)",
            "--node-rank=$(NODE_RANK)",
            "--master-addr=$(MASTER_ADDR)",
            "--master-port=$(MASTER_PORT)",
            "-m", "mfpo_runtime.stage", "--config", config, "--no-progress",
        ]  # fmt: skip
    if processes_per_pod(spec, stage) > 1:  # one process per GPU of the pod
        return [
            "torchrun", "--standalone", f"--nproc-per-node={gpus}",
            "-m", "mfpo_runtime.stage", "--config", config, "--no-progress",
        ]  # fmt: skip
    return ["mfpo-stage", "--config", config, "--no-progress"]


def processes_per_pod(spec: MFPORunSpec, stage: str) -> int:
    """Stage processes in one pod: one per GPU under torchrun, else one."""
    if is_multi_node(spec, stage) or (
        kind_of(stage).distributed and spec.resources.gpus_per_node > 1
    ):
        return max(spec.resources.gpus_per_node, 1)
    return 1


def threads_per_stage_process(spec: MFPORunSpec, stage: str) -> int:
    """The pod's CPU request shared among its stage processes (at least one thread each).

    Pods get no CPU limit, so the runtime would otherwise see every CPU of the node (no cgroup
    quota) and start that many OpenMP threads beside other tenants' pods; and torchrun sets
    OMP_NUM_THREADS=1 for its ranks when it is unset. Ray does the same: a task's OMP_NUM_THREADS
    is its CPU reservation. MFPO_THREADS wins over both in `mfpo_core.cpus.threads_per_process`.
    """
    cpus = float(parse_quantity(spec.resources.cpu))
    return max(1, math.floor(cpus / processes_per_pod(spec, stage)))


def _env(spec: MFPORunSpec, stage: str, job: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "MFPO_THREADS", "value": str(threads_per_stage_process(spec, stage))},
        {"name": "MFPO_METRICS_PORT", "value": str(METRICS_PORT)},
        {"name": "MFPO_PROGRESS", "value": "0"},
        {"name": "MFPO_TERMINATION_LOG", "value": DEFAULT_TERMINATION_LOG},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
    ]
    # Without credentials: those only ever travel as references to the Secret, never as values.
    env += [{"name": k, "value": v} for k, v in storage_env(spec.storage).items()]
    if spec.storage.secret_name:
        for key in CREDENTIAL_VARIABLES:
            ref = {"name": spec.storage.secret_name, "key": key}
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    env += _tracking_env(spec)
    env += _judge_env(spec, stage)
    if is_multi_node(spec, stage):
        index = f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"
        env += [
            {"name": "MASTER_ADDR", "value": f"{job}-0.{service_name(job)}"},
            {"name": "MASTER_PORT", "value": str(RENDEZVOUS_PORT)},
            {"name": "NNODES", "value": str(spec.resources.nodes)},
            {"name": "NPROC_PER_NODE", "value": str(max(spec.resources.gpus_per_node, 1))},
            {"name": "NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": index}}},
        ]
    return env


def _tracking_env(spec: MFPORunSpec) -> list[dict[str, Any]]:
    """The tracking server's credentials, as references to spec.tracking.mlflow.secretName's
    keys; each optional (username and password, or a token). The server's URI and experiment
    travel in the stage config (the spec), never as environment."""
    mlflow = spec.tracking.mlflow if spec.tracking else None
    if mlflow is None or not mlflow.secret_name:
        return []
    return [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": mlflow.secret_name, "key": key, "optional": True}}}
        for key in TRACKING_CREDENTIAL_VARIABLES
    ]


def _judge_env(spec: MFPORunSpec, stage: str) -> list[dict[str, Any]]:
    """The LLM judge's key (objectHalbench.judgeSecretRef, one per run), for the eval stage
    alone, in the one variable only the judge reads. `optional`: a Secret without the key starts
    the pod, whose stage then names the missing key as bad input (a required reference would
    leave it waiting in CreateContainerConfigError); the operator holds the run while the Secret
    itself is missing (reconcile's SecretMissing)."""
    secrets = spec.evaluation.judge_secrets()
    if kind_of(stage).name != "eval" or not secrets:
        return []
    _, ref = secrets[0]
    selector = {"name": ref.name, "key": ref.key, "optional": True}
    return [{"name": JUDGE_KEY_VARIABLE, "valueFrom": {"secretKeyRef": selector}}]


def _resources(spec: MFPORunSpec) -> dict[str, Any]:
    res = spec.resources
    requests: dict[str, str] = {"cpu": res.cpu, "memory": res.memory}
    # Memory limit = request: a stage that outgrows it is OOM-killed (retryable), not its neighbours.
    limits: dict[str, str] = {"memory": res.memory}
    if res.gpus_per_node:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(res.gpus_per_node)
    return {"requests": requests, "limits": limits}


def _container(spec: MFPORunSpec, stage: str, job: str) -> dict[str, Any]:
    ports = [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}]
    if is_multi_node(spec, stage):
        ports.append({"name": "rendezvous", "containerPort": RENDEZVOUS_PORT, "protocol": "TCP"})
    return {
        "name": CONTAINER,
        "image": spec.runtime_image,
        "imagePullPolicy": "IfNotPresent",
        "command": _command(spec, stage),
        "env": _env(spec, stage, job),
        "ports": ports,
        "resources": _resources(spec),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        "terminationMessagePath": DEFAULT_TERMINATION_LOG,
        # An OOM kill writes no summary: the log tail then tells what happened.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
        },
    }


def _pod_spec(spec: MFPORunSpec, stage: str, job: str) -> dict[str, Any]:
    res = spec.resources
    pod: dict[str, Any] = {
        "restartPolicy": "Never",  # required by podFailurePolicy; retries are new attempts
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "fsGroup": RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(spec, stage, job)],
        "volumes": [
            {"name": "config", "configMap": {"name": config_map_name(job)}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": res.shm_size}},
        ],
    }
    optional = {
        "serviceAccountName": res.service_account_name,
        "priorityClassName": res.priority_class_name,
        "nodeSelector": res.node_selector or None,
        "tolerations": [t.to_wire() for t in res.tolerations] or None,
        "affinity": res.affinity.to_wire() if res.affinity else None,
        "subdomain": service_name(job) if is_multi_node(spec, stage) else None,
    }
    pod.update({key: value for key, value in optional.items() if value is not None})
    return pod


def _pod_failure_policy() -> dict[str, Any]:
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER,
                    "operator": "In",
                    "values": [int(ExitCode.BAD_INPUT)],
                },
            },
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }


def job(run: RunRef, spec: MFPORunSpec, stage: str, attempt: int, name: str) -> dict[str, Any]:
    """The batch/v1 Job of one attempt."""
    meta = _metadata(run, name, stage, attempt)
    queue = spec.resources.queue_name
    if queue:
        meta["labels"][LABEL_KUEUE_QUEUE] = queue
    body: dict[str, Any] = {
        "backoffLimit": 0,
        "podFailurePolicy": _pod_failure_policy(),
        "ttlSecondsAfterFinished": max(
            spec.resources.ttl_seconds_after_finished, MIN_FINISHED_JOB_TTL_SECONDS
        ),
        # Kueue admits a suspended Job by unsuspending it.
        "suspend": bool(queue),
        "template": {
            "metadata": {
                "labels": labels(run.name, stage, attempt),
                "annotations": {"kubectl.kubernetes.io/default-container": CONTAINER},
            },
            "spec": _pod_spec(spec, stage, name),
        },
    }
    body["activeDeadlineSeconds"] = (
        spec.resources.active_deadline_seconds or DEFAULT_ATTEMPT_DEADLINE_SECONDS
    )
    pods = _parallelism(spec, stage)
    if pods is not None:
        body.update(completionMode="Indexed", completions=pods, parallelism=pods)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": body}


def attempt_manifests(
    run: RunRef, spec: MFPORunSpec, stage: str, attempt: int, name: str, *, adopt_unowned: bool = False
) -> list[dict[str, Any]]:
    """Everything one attempt needs, in creation order (the Job last: it needs the others)."""
    manifests = [config_map(run, spec, stage, attempt, name, adopt_unowned=adopt_unowned)]
    if is_multi_node(spec, stage):
        manifests.append(headless_service(run, stage, attempt, name))
    manifests.append(job(run, spec, stage, attempt, name))
    return manifests
