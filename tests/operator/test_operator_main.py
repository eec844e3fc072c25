"""The operator's entry point and API client settings (no cluster needed)."""

from __future__ import annotations

import kubernetes
from mfpo_operator.kube.cluster import Cluster
from mfpo_operator.kube.main import parse_args


def test_the_metrics_server_bind_address_is_configurable():
    assert parse_args([]).metrics_address == "0.0.0.0"
    assert parse_args(["--metrics-address", "127.0.0.1"]).metrics_address == "127.0.0.1"


def test_the_client_pool_holds_a_connection_per_worker():
    # urllib3 keeps at most `maxsize` connections per host (kubernetes' default: 10) and
    # warns "Connection pool is full, discarding connection" when more threads use it.
    configuration = kubernetes.client.Configuration(host="http://127.0.0.1:1")
    cluster = Cluster(configuration, pool_size=17)
    try:
        assert cluster.api.rest_client.pool_manager.connection_pool_kw["maxsize"] == 17
    finally:
        cluster.close()
