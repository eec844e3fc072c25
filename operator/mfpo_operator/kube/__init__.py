"""The Kubernetes side of the control plane: a kopf operator running `MFPORun`s as Jobs.

Modules: `handlers` (kopf triggers, thin), `reconcile` (read, plan, act, write status),
`jobs` (pure builders of the ConfigMap, Service and Job of one attempt), `status` (pure:
Jobs and Pods -> planner attempts, status patches), `cluster` (the one API adapter),
`run_storage` (reading a run's result documents and checkpoint steps), `metrics`
(OPERATOR_METRICS), `artifacts` (deleting a run's storage), `role_guard` (keeping the
operator's RoleBinding in a namespace while runs there hold its finalizer), `main` (the
`mfpo-operator` entry point). The planner itself is `mfpo_operator.plan`, shared with the
local runner.

RBAC the operator needs (the chart's ClusterRole, bound cluster-wide or by a RoleBinding in
each watched namespace):

    mfpo.dev            mfporuns                   get, list, watch, patch
    mfpo.dev            mfporuns/status            get, patch
    batch               jobs                       create, get, list, watch, delete
    ""                  pods                       get, list, watch  (watch: stage pods, by label)
    ""                  configmaps                 create, get, list, delete
    ""                  services                   create, get, list, delete
    ""                  serviceaccounts            get  (the stage's must exist before its Job)
    ""                  secrets                    get  (storage.secretName must exist; its data
                                                         to read result documents and checkpoint
                                                         steps, and for deleteOnRunDeletion)
    ""                  events                     create, list  (list: the Job controller's
                                                         FailedCreate on a Job without pods)
    rbac.authorization.k8s.io rolebindings     get, patch  (--namespace: only its own, the one
                                                         --role-binding names: resourceNames)
    apiextensions.k8s.io customresourcedefinitions list, watch  (kopf's resource discovery)
    ""                  namespaces                 list, watch  (kopf, for namespace patterns only:
                                                         the chart uses none and grants none)

One operator, no peering: kopf runs standalone (no KopfPeering objects or CRDs; `kube.main`).
A watched namespace that disappears is skipped, not fatal (`kube.handlers`); runs there that
hold the operator's finalizer keep its RoleBinding (`kube.role_guard`).

Probes: kopf's liveness endpoint, http://:8080/healthz by default (`--liveness`), for both
liveness and readiness: HTTP 500 until the operator can list MFPORuns where it watches (in
at least one watched namespace; the body names those it cannot reach).
Metrics: http://0.0.0.0:9090/metrics (`--metrics-address`, `--metrics-port`).
Events: every planner transition, evicted pod and stuck pod is posted as a core/v1 Event on
the MFPORun, with the operator's own API client (any thread, not only kopf's).
Namespaced mode (`--namespace`): kopf's cluster-wide scanning of namespaces and CRDs is off.
"""
