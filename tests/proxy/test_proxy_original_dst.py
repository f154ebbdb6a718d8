"""The original_dst listener filter and ORIGINAL_DST clusters, without iptables.

Without a REDIRECT there is no original destination: filter chains match on the
socket's own address, and an ORIGINAL_DST cluster has nowhere to go (503 no healthy
upstream for HTTP, a closed connection for TCP), as Envoy does. The redirected case
runs for real, as root, in tests/interception/test_transparent_mesh.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from proxy_envoy import (
    CLUSTER,
    HCM,
    LISTENER,
    ROUTER,
    TCP_PROXY,
    T,
    address,
    cluster,
    file_access_log,
    route,
    route_config,
    vhost,
)
from proxy_harness import client, fetch, raw_connection, running_proxy

from appmesh_api.localports import free_port
from proxy.config.cluster import compile_cluster
from proxy.config.compile import compile_listener
from proxy.config.protojson import ConfigError
from proxy.observe.stats import Stats
from proxy.upstream.cluster_manager import Cluster

ORIGINAL_DST_TYPE = T + "envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
BY_NAME = {"name": "envoy.filters.listener.original_dst"}
BY_TYPE = {"name": "anything", "typed_config": {"@type": ORIGINAL_DST_TYPE}}


def passthrough(name: str = "allow-all") -> dict:
    """App Mesh's ``cds_egress_<mesh>_mesh-allow-all``: no endpoints, the destination decides."""
    return {
        "@type": CLUSTER,
        "name": name,
        "type": "ORIGINAL_DST",
        "lb_policy": "CLUSTER_PROVIDED",
        "connect_timeout": "1s",
    }


def hcm_filter(routes: list[dict], log: str) -> dict:
    config = {
        "@type": HCM,
        "stat_prefix": "egress",
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        "route_config": route_config("r", [vhost("all", ["*"], routes)]),
        "access_log": [file_access_log(log, text="%RESPONSE_FLAGS% %DOWNSTREAM_LOCAL_ADDRESS%\n")],
    }
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}


def tcp_filter(cluster_name: str) -> dict:
    config = {"@type": TCP_PROXY, "stat_prefix": "egress", "cluster": cluster_name}
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": config}


def listener(port: int, chains: list[dict], default: dict | None = None) -> dict:
    """An App Mesh-style egress listener: original_dst filter, chains by destination port."""
    body = {
        "@type": LISTENER,
        "name": "egress",
        "address": address(port),
        "listener_filters": [BY_NAME],
        "filter_chains": chains,
    }
    if default is not None:
        body["default_filter_chain"] = default
    return body


@pytest.mark.parametrize("listener_filter", [BY_NAME, BY_TYPE])
def test_the_filter_is_recognised_by_name_or_type(listener_filter: dict) -> None:
    spec = {**listener(80, []), "listener_filters": [listener_filter]}
    assert compile_listener(spec).original_dst
    assert not compile_listener({**spec, "listener_filters": []}).original_dst


def test_original_dst_clusters_take_cluster_provided_only() -> None:
    assert compile_cluster(passthrough()).discovery == "ORIGINAL_DST"
    with pytest.raises(ConfigError, match="CLUSTER_PROVIDED"):
        compile_cluster({**passthrough(), "lb_policy": "ROUND_ROBIN"})
    with pytest.raises(ConfigError, match="CLUSTER_PROVIDED"):
        compile_cluster({**cluster("c", [80]), "lb_policy": "CLUSTER_PROVIDED"})


def test_destination_hosts_are_made_on_use_and_forgotten_after_cleanup() -> None:
    live = Cluster(Stats(), compile_cluster(passthrough()), None)
    assert live.original_dst and live.original_dst_host(None) is None
    host = live.original_dst_host(("10.0.0.7", 8080))
    assert host is not None and host.key == "10.0.0.7:8080"
    assert live.original_dst_host(("10.0.0.7", 8080)) is host  # pooled connections reused
    live.sweep_idle(10.0)  # first cleanup: it was used, so it stays (and is marked unused)
    assert "10.0.0.7:8080" in live.hosts
    live.sweep_idle(12.0)  # before the next cleanup_interval (5 s): nothing happens
    live.sweep_idle(15.0)  # unused for a whole interval: forgotten
    assert live.hosts == {}
    live.update(compile_cluster(cluster("allow-all", [80])), None)  # no longer ORIGINAL_DST
    assert not live.original_dst


async def test_without_redirect_chains_match_the_socket_and_passthrough_has_no_host(
    tmp_path: Path,
) -> None:
    port, log = free_port(), tmp_path / "egress.log"
    chains = [
        {"filter_chain_match": {"destination_port": 9}, "filters": [tcp_filter("allow-all")]},
        {
            "filter_chain_match": {"destination_port": port},
            "filters": [hcm_filter([route({"prefix": "/"}, "allow-all")], str(log))],
        },
    ]
    resources = [passthrough(), listener(port, chains)]
    async with running_proxy(resources) as proxy, client() as session:
        status, _, body = await fetch(session, f"http://127.0.0.1:{port}/")
        assert (status, body) == (503, "no healthy upstream")
        assert proxy.stat("cluster.allow-all.upstream_cx_none_healthy") == 1
    assert log.read_text() == f"UH 127.0.0.1:{port}\n"


async def test_tcp_passthrough_without_a_destination_closes() -> None:
    port = free_port()
    resources = [passthrough(), listener(port, [], default={"filters": [tcp_filter("allow-all")]})]
    async with running_proxy(resources) as proxy:
        async with raw_connection(port) as (reader, _):
            assert await reader.read() == b""
        assert proxy.stat("cluster.allow-all.upstream_cx_none_healthy") == 1
