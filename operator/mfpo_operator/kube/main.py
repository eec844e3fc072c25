"""`mfpo-operator` (or `python -m mfpo_operator.kube`): start the MFPO operator.

Connects with the in-cluster service account, else the kubeconfig (KUBECONFIG or
~/.kube/config): any cluster the kubernetes client can reach. Serves Prometheus metrics on
--metrics-address:--metrics-port and kopf's liveness/readiness probe on --liveness (ready once
the operator can list MFPORuns in at least one namespace it watches). With --namespace, kopf's
cluster-wide scanning of namespaces and CRDs is off: a RoleBinding per namespace suffices.

One replica, no peering (kopf's standalone mode): a restarted operator acts as soon as it has
listed its runs, instead of waiting up to a minute for a killed predecessor's kopf peering
record to expire. The chart runs one replica with the `Recreate` strategy, so two never act at
once; run no second operator (e.g. on a laptop) beside it (docs/install.md, "One operator").
"""

from __future__ import annotations

import argparse
import logging
import os

import kopf
import kubernetes
from prometheus_client import start_http_server

from mfpo_operator.cli import package_version
from mfpo_operator.kube.cluster import load_config
from mfpo_operator.kube.handlers import REGISTRY
from mfpo_operator.kube.metrics import OperatorMetrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mfpo-operator", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-n", "--namespace", action="append", default=[],
        help="watch only this namespace (repeatable; globs allowed); default: all namespaces",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-port", type=int, default=9090, help="Prometheus /metrics port (0: off)"
    )
    parser.add_argument(
        "--metrics-address", default="0.0.0.0",
        help="address the /metrics server binds (e.g. 127.0.0.1 behind a sidecar proxy)",
    )  # fmt: skip
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz",
        help="kopf's liveness/readiness endpoint (answers once the operator is started)",
    )  # fmt: skip
    parser.add_argument(
        "--role-binding", default=None, metavar="NAME",
        help="with --namespace: the RoleBinding (named NAME in each watched namespace) that "
        "grants this operator its rights there. While runs in a namespace hold the operator's "
        "finalizer it keeps that binding (finalizer mfpo.dev/runs-hold-finalizers), so that "
        "deleting the namespace cannot take away its right to release those runs",
    )  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    args = parser.parse_args(argv)
    if args.role_binding and not args.namespace:
        parser.error("--role-binding needs --namespace (cluster-wide, a ClusterRoleBinding grants)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _require_credentials()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    metrics = OperatorMetrics()
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address, registry=metrics.registry)
    kopf.run(
        registry=REGISTRY,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness or None,
        # Explicitly: kopf's default auto-detection would join a peering named 'default' if
        # a cluster has kopf's peering CRDs (e.g. left by an earlier version of this chart).
        standalone=True,
        memo=kopf.Memo(
            metrics=metrics, namespaces=args.namespace, role_binding=args.role_binding
        ),
    )


def _require_credentials() -> None:
    """Exit with one line when no cluster can be reached at all: kopf would otherwise retry
    its login forever, logging the same two tracebacks each time."""
    try:
        load_config()
    except kubernetes.config.ConfigException as err:
        kubeconfig = os.environ.get("KUBECONFIG", "~/.kube/config")
        raise SystemExit(
            "mfpo-operator: no Kubernetes credentials: not in a cluster (no service account) "
            f"and no usable kubeconfig at {kubeconfig} ({err}); set KUBECONFIG or run in a pod"
        ) from None


if __name__ == "__main__":
    main()
