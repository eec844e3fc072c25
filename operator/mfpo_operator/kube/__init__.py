"""The Kubernetes side of the control plane: a kopf operator running `MFPORun`s as Jobs.

Modules: `handlers` (kopf triggers, thin), `reconcile` (read, plan, act, write status),
`jobs` (pure builders of the ConfigMap, Service and Job of one attempt), `status` (pure:
Jobs and Pods -> planner attempts, status patches), `cluster` (the one API adapter),
`metrics` (OPERATOR_METRICS), `artifacts` (deleting a run's storage), `main` (the
`mfpo-operator` entry point). The planner itself is `mfpo_operator.plan`, shared with the
local runner.

RBAC the operator needs (the chart's ClusterRole, or a Role per watched namespace):

    mfpo.dev            mfporuns                   get, list, watch, patch
    mfpo.dev            mfporuns/status            get, patch
    batch               jobs                       create, get, list, watch, delete
    ""                  pods                       get, list
    ""                  configmaps                 create, get, list, delete
    ""                  services                   create, get, list, delete
    ""                  serviceaccounts            get  (the stage's must exist before its Job)
    ""                  secrets                    get  (storage.secretName must exist; its data
                                                         only for storage.deleteOnRunDeletion)
    ""                  events                     create, list  (list: the Job controller's
                                                         FailedCreate on a Job without pods)
    kopf.dev            clusterkopfpeerings        get, list, watch, patch  (cluster-wide)
    kopf.dev            kopfpeerings               get, list, watch, patch  (--namespace)
    apiextensions.k8s.io customresourcedefinitions list, watch  (kopf's resource discovery)
    ""                  namespaces                 list, watch  (kopf, for namespace patterns only:
                                                         the chart uses none and grants none)

Peering: install kopf's peering CRDs (clusterkopfpeerings.kopf.dev and kopfpeerings.kopf.dev,
from kopf's `peering.yaml`) and a ClusterKopfPeering named `mfpo-operator` (or a KopfPeering of
that name in each watched namespace); `--standalone` runs without them.

Probes: kopf's liveness endpoint, http://:8080/healthz by default (`--liveness`), for both
liveness and readiness: HTTP 500 until the operator can list MFPORuns where it watches.
Metrics: http://0.0.0.0:9090/metrics (`--metrics-address`, `--metrics-port`).
Events: every planner transition, evicted pod and stuck pod is posted as a core/v1 Event on
the MFPORun, with the operator's own API client (any thread, not only kopf's).
Namespaced mode (`--namespace`): kopf's cluster-wide scanning of namespaces and CRDs is off.
"""
