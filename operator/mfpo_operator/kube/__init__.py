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
    ""                  secrets                    get  (only for storage.deleteOnRunDeletion
                                                         with storage.secretName)
    "" / events.k8s.io  events                     create, patch
    kopf.dev            clusterkopfpeerings        get, list, watch, patch  (cluster-wide)
    kopf.dev            kopfpeerings               get, list, watch, patch  (--namespace)
    apiextensions.k8s.io customresourcedefinitions list, watch  (kopf's resource discovery)
    ""                  namespaces                 list, watch  (cluster-wide, kopf)

Peering: install kopf's peering CRDs (clusterkopfpeerings.kopf.dev and kopfpeerings.kopf.dev,
from kopf's `peering.yaml`) and a ClusterKopfPeering named `mfpo-operator` (or a KopfPeering of
that name in each watched namespace); `--standalone` runs without them.

Probes: kopf's liveness endpoint, http://:8080/healthz by default (`--liveness`), for both
liveness and readiness. Metrics: http://:9090/metrics (`--metrics-port`).
Events: every planner transition is posted as a Kubernetes Event on the MFPORun.
"""
