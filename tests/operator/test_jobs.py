"""The pure Job/ConfigMap/Service builders: shape, security, scheduling, schema validity."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
from mfpo_core.api import JUDGE_KEY_VARIABLE, EvaluationSpec, MlflowTrackingSpec, TrackingSpec
from mfpo_core.contract import StageConfig
from mfpo_operator.kube import jobs
from mfpo_operator.kube.jobs import RunRef
from planner_world import make_spec

RUN = RunRef("demo", "ml", "uid-1")
K8S_VERSION = "1.33"


def cluster_spec(**overrides):
    resources = {
        "gpusPerNode": 8,
        "nodes": 2,
        "cpu": "16",
        "memory": "200Gi",
        "shmSize": "64Gi",
        "nodeSelector": {"nvidia.com/gpu.product": "H100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "training",
        "queueName": "gpu-queue",
        "serviceAccountName": "mfpo-runner",
        "activeDeadlineSeconds": 86400,
    }
    return make_spec(
        resources={**resources, **overrides},
        storage={
            "uri": "s3://bucket/runs",
            "endpoint": "minio:9000",
            "secure": False,
            "secretName": "minio-creds",
        },
        imagePreference={"shards": 4},
    )


def all_manifests(spec):
    out = []
    for stage in spec.stage_names():
        out += jobs.attempt_manifests(RUN, spec, stage, 2, f"demo-{stage}-a2")
    return out


@pytest.mark.parametrize("spec", [make_spec(), cluster_spec()], ids=["local", "cluster"])
def test_every_manifest_validates_against_the_kubernetes_schema(spec):
    for manifest in all_manifests(spec):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_single_node_stage_job():
    spec = make_spec()
    job = jobs.job(RUN, spec, "score", 1, "demo-score-a1")
    assert job["metadata"]["name"] == "demo-score-a1"
    assert job["metadata"]["labels"]["mfpo.dev/run"] == "demo"
    assert job["metadata"]["labels"]["mfpo.dev/stage"] == "score"
    assert job["metadata"]["labels"]["mfpo.dev/attempt"] == "1"
    assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mfpo-operator"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "MFPORun",
        "demo",
        "uid-1",
        True,
    )
    body = job["spec"]
    assert body["backoffLimit"] == 0
    assert body["suspend"] is False
    assert "completionMode" not in body
    assert body["ttlSecondsAfterFinished"] == 86400
    rules = body["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "stage", "operator": "In", "values": [65]},
    }
    assert rules[1] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    pod = body["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["command"] == [
        "mfpo-stage",
        "--config",
        "/etc/mfpo/stage.json",
        "--no-progress",
    ]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
    }
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "metrics", "containerPort": 9400, "protocol": "TCP"} in container["ports"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MFPO_METRICS_PORT"] == "9400"
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]


def test_cluster_scheduling_queue_and_credentials():
    spec = cluster_spec()
    job = jobs.job(RUN, spec, "score", 1, "demo-score-a1")
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert job["spec"]["suspend"] is True
    assert job["spec"]["activeDeadlineSeconds"] == 86400
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["priorityClassName"] == "training"
    assert pod["serviceAccountName"] == "mfpo-runner"
    assert pod["affinity"]["nodeAffinity"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["AWS_ACCESS_KEY_ID"] == {
        "name": "AWS_ACCESS_KEY_ID",
        "valueFrom": {"secretKeyRef": {"name": "minio-creds", "key": "AWS_ACCESS_KEY_ID"}},
    }
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
    assert env["MFPO_S3_ENDPOINT"]["value"] == "minio:9000"
    assert env["MFPO_S3_SECURE"]["value"] == "false"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"


def test_datagen_is_one_indexed_job_with_a_pod_per_shard():
    job = jobs.job(RUN, cluster_spec(), "datagen", 1, "demo-datagen-a1")
    assert (
        job["spec"]["completionMode"],
        job["spec"]["completions"],
        job["spec"]["parallelism"],
    ) == ("Indexed", 4, 4)
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][0] == "mfpo-stage"


def test_multi_node_align_uses_torchrun_with_a_headless_service():
    spec = cluster_spec()
    manifests = jobs.attempt_manifests(RUN, spec, "align-1", 1, "demo-align-1-a1")
    assert [m["kind"] for m in manifests] == ["ConfigMap", "Service", "Job"]
    service, job = manifests[1], manifests[2]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": "demo-align-1-a1"}
    assert (job["spec"]["completionMode"], job["spec"]["completions"]) == ("Indexed", 2)
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == "demo-align-1-a1"
    container = pod["containers"][0]
    assert container["command"][:2] == ["torchrun", "--nnodes=$(NNODES)"]
    assert container["command"][-5:] == [
        "-m",
        "mfpo_runtime.stage",
        "--config",
        "/etc/mfpo/stage.json",
        "--no-progress",
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["MASTER_ADDR"]["value"] == "demo-align-1-a1-0.demo-align-1-a1"
    assert env["NNODES"]["value"] == "2"
    assert env["NPROC_PER_NODE"]["value"] == "8"
    assert env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )


def test_single_node_multi_gpu_align_uses_standalone_torchrun():
    spec = cluster_spec(nodes=1)
    command = jobs.job(RUN, spec, "align-2", 1, "x")["spec"]["template"]["spec"]["containers"][0][
        "command"
    ]
    assert command[:3] == ["torchrun", "--standalone", "--nproc-per-node=8"]


def test_config_map_holds_a_valid_stage_config_and_no_credentials():
    spec = cluster_spec()
    cm = jobs.config_map(RUN, spec, "align-2", 3, "demo-align-2-a3")
    assert cm["metadata"]["name"] == "demo-align-2-a3-config"
    config = StageConfig.from_json(cm["data"]["stage.json"])
    assert (config.run, config.namespace, config.stage, config.attempt) == (
        "demo",
        "ml",
        "align-2",
        3,
    )
    assert config.run_uri == "s3://bucket/runs/demo"
    assert "AWS_" not in json.dumps(cm)


def test_service_names_start_with_a_letter():
    assert jobs.service_name("7run-align-1-a1") == "s7run-align-1-a1"
    assert jobs.service_name("run-align-1-a1") == "run-align-1-a1"


def test_every_attempt_has_a_deadline_by_default():
    # activeDeadlineSeconds counts from the Job's start, pending time included, and the Job
    # controller then fails the Job with reason DeadlineExceeded
    # (https://kubernetes.io/docs/concepts/workloads/controllers/job/#job-termination-and-cleanup).
    job = jobs.job(RUN, make_spec(), "datagen", 1, "demo-datagen-a1")
    assert job["spec"]["activeDeadlineSeconds"] == 3 * 24 * 3600
    spec = make_spec(resources={"gpusPerNode": 0, "activeDeadlineSeconds": 600})
    assert jobs.job(RUN, spec, "datagen", 1, "demo-datagen-a1")["spec"]["activeDeadlineSeconds"] == 600


@pytest.mark.parametrize(
    ("cpu", "gpus", "stage", "threads"),
    [
        ("4", 1, "align-1", 4),  # the default request, one process
        ("32", 8, "align-1", 4),  # torchrun: 8 ranks share the pod's 32 CPUs
        ("32", 8, "datagen", 32),  # not distributed: one process takes the request
        ("500m", 1, "score", 1),  # below one CPU: still one thread
        ("2.5", 1, "eval", 2),
    ],
)
def test_stage_processes_share_the_pods_cpu_request(cpu, gpus, stage, threads):
    """Pods get no CPU limit, so the runtime's own count would be every CPU of the node; and
    torchrun sets OMP_NUM_THREADS=1 for each rank. MFPO_THREADS carries the request's share,
    and the runtime takes it over torchrun's OMP_NUM_THREADS."""
    from mfpo_core import cpus

    spec = make_spec(resources={"cpu": cpu, "gpusPerNode": gpus})
    (container,) = jobs.job(RUN, spec, stage, 1, f"demo-{stage}-a1")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["MFPO_THREADS"] == str(threads)
    under_torchrun = {**env, "OMP_NUM_THREADS": "1", "LOCAL_WORLD_SIZE": str(gpus)}
    assert cpus.threads_per_process(gpus, under_torchrun) == threads


def test_tracking_settings_travel_in_the_config_and_credentials_as_secret_references():
    spec = cluster_spec()
    spec.tracking = TrackingSpec(
        mlflow=MlflowTrackingSpec(uri="https://mlflow.example:5000", experiment="vlm", secretName="mlflow-creds")
    )
    for manifest in all_manifests(spec):  # optional key references are valid Kubernetes
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    job = jobs.job(RUN, spec, "align-1", 1, "demo-align-1-a1")
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    # Username and password, or a token: each key of the Secret is optional (core/v1
    # SecretKeySelector.optional), so a Secret holding only a token is a valid setup.
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        assert env[key] == {
            "name": key,
            "valueFrom": {"secretKeyRef": {"name": "mlflow-creds", "key": key, "optional": True}},
        }
    assert not any(name.startswith("MLFLOW_") and "value" in e for name, e in env.items())
    config = StageConfig.from_json(jobs.config_map(RUN, spec, "align-1", 1, "x")["data"]["stage.json"])
    assert config.spec.tracking.mlflow.uri == "https://mlflow.example:5000"
    assert config.spec.tracking.mlflow.experiment == "vlm"
    plain = jobs.job(RUN, cluster_spec(), "align-1", 1, "demo-align-1-a1")
    assert not any(e["name"].startswith("MLFLOW_") for e in plain["spec"]["template"]["spec"]["containers"][0]["env"])


@pytest.mark.parametrize("ttl,kept", [(0, 300), (299, 300), (300, 300), (604800, 604800)])
def test_a_finished_job_is_kept_long_enough_for_the_operator_to_see_how_it_ended(ttl, kept):
    # With ttlSecondsAfterFinished 0 the TTL controller may delete a Job before the operator has
    # read it; a failure never seen would be restarted as vanished, uncounted, again and again.
    spec = make_spec(resources={"gpusPerNode": 0, "ttlSecondsAfterFinished": ttl})
    assert jobs.job(RUN, spec, "score", 1, "demo-score-a1")["spec"]["ttlSecondsAfterFinished"] == kept


def test_an_api_server_error_on_the_pod_template_names_the_run_field():
    assert jobs.run_field("spec.template.spec.affinity.nodeAfinity") == "spec.resources.affinity.nodeAfinity"
    assert jobs.run_field("spec.template.spec.tolerations[0].efect") == "spec.resources.tolerations[0].efect"
    assert jobs.run_field("spec.template.spec.affinityX") is None
    assert jobs.run_field("spec.template.spec.containers[0].image") is None


def test_the_judge_key_reaches_the_eval_stage_alone_as_a_secret_reference():
    judged = {"name": "object-halbench", "uri": "s3://bench/coco", "objectHalbench": {
        "judge": "llm", "judgeUrl": "https://judge.example.net/v1", "judgeModel": "m",
        "judgeSecretRef": {"name": "judge-key", "key": "api-key"}}}  # fmt: skip
    spec = cluster_spec()
    spec.evaluation = EvaluationSpec.model_validate({"benchmarks": [judged]})
    for manifest in all_manifests(spec):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    for stage in spec.stage_names():
        env = jobs.job(RUN, spec, stage, 1, f"demo-{stage}-a1")["spec"]["template"]["spec"]["containers"][0]["env"]
        judge = [e for e in env if e["name"] == JUDGE_KEY_VARIABLE]
        if stage != "eval":
            assert judge == [], stage
            continue
        assert judge == [{"name": "MFPO_JUDGE_API_KEY",
                          "valueFrom": {"secretKeyRef": {"name": "judge-key", "key": "api-key", "optional": True}}}]  # fmt: skip
    # The ConfigMap holds the reference, never a key.
    config = jobs.config_map(RUN, spec, "eval", 1, "x")["data"]["stage.json"]
    assert '"judgeSecretRef": {\n' in config and "judgeKeyEnv" not in config
