"""Secrets from a local SDS agent (SPIRE's, faked by a real grpcio SDS server on a Unix
socket): two proxies doing mutual TLS with SPIFFE IDs, as App Mesh's
howto-k8s-mtls-sds-based walkthrough configures them (its listener and client-policy
TLS specs, translated by ``envoy_bootstrap.tls``), warming while the agent is down,
rotation through the agent, a bad secret NACKed, a wrong SPIFFE ID refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import tempfile
import time
from collections.abc import AsyncIterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
from proxy_envoy import cluster, http_listener, route, vhost
from proxy_harness import backends, read_response

from appmesh_api.localports import free_port
from envoy_bootstrap.names import SDS_CLUSTER
from envoy_bootstrap.tls import downstream_socket, upstream_socket
from proxy.config.bootstrap import SdsAgent
from proxy.server import ProxyServer
from tests.certificates import Authority
from tests.sds_agent import FakeSpireAgent

DOMAIN = "spiffe://howto-k8s-mtls-sds-based.aws"
FRONT, BLUE, RED = f"{DOMAIN}/front", f"{DOMAIN}/colorblue", f"{DOMAIN}/colorred"
INSPECTOR = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"


def listener_tls(own: str, peers: list[str]) -> dict[str, Any]:
    """The walkthrough's colour-node listener TLS: STRICT, an SDS certificate, trust from
    the bundle, and the front's SPIFFE ID required of clients."""
    return {
        "mode": "STRICT",
        "certificate": {"sds": {"secretName": own}},
        "validation": {
            "trust": {"sds": {"secretName": DOMAIN}},
            "subjectAlternativeNames": {"match": {"exact": peers}},
        },
    }


def client_policy(own: str, peers: list[str]) -> dict[str, Any]:
    """The walkthrough's front ``backendDefaults`` client policy."""
    return {
        "tls": {
            "enforce": True,
            "certificate": {"sds": {"secretName": own}},
            "validation": {
                "trust": {"sds": {"secretName": DOMAIN}},
                "subjectAlternativeNames": {"match": {"exact": peers}},
            },
        }
    }


def secure_listener(name: str, port: int, backend: str, tls: dict[str, Any]) -> dict[str, Any]:
    base = http_listener(name, [vhost("all", ["*"], [route({"prefix": "/"}, backend)])], port=port)
    chain = base["filter_chains"][0]
    chain["filter_chain_match"] = {"transport_protocol": "tls"}
    chain["transport_socket"] = downstream_socket(tls, http=True)
    base["listener_filters"] = [
        {"name": "envoy.filters.listener.tls_inspector", "typed_config": {"@type": INSPECTOR}}
    ]
    return base


def secure_cluster(name: str, port: int, policy: dict[str, Any]) -> dict[str, Any]:
    socket = upstream_socket(policy, {}, port, (), http2=False)
    return cluster(name, [port], transport_socket=socket)


@pytest.fixture
def folder() -> Any:
    # A short path: a Unix socket's path is limited to ~107 bytes.
    with tempfile.TemporaryDirectory(prefix="sds-") as name:
        yield Path(name)


@pytest.fixture
def ca(folder: Path) -> Authority:
    return Authority(folder, "SPIRE CA")


def spire(folder: Path, ca: Authority, start: bool = True) -> FakeSpireAgent:
    agent = FakeSpireAgent(folder / "agent.sock")
    agent.bundle(DOMAIN, ca)
    agent.certificate(FRONT, ca.issue("front", [FRONT]))
    agent.certificate(BLUE, ca.issue("blue", [BLUE]))
    agent.certificate(RED, ca.issue("red", [RED]))
    return agent.start() if start else agent


@contextlib.asynccontextmanager
async def sidecar(agent: FakeSpireAgent, resources: list[dict[str, Any]]) -> AsyncIterator[Any]:
    server = ProxyServer(
        admin_address=("127.0.0.1", 0),
        node={"id": "test-node"},
        sds_agent=SdsAgent(SDS_CLUSTER, str(agent.socket_path)),
    )
    await server.start()
    try:
        await server.apply(resources, "1")
        yield server
    finally:
        await server.stop(drain_seconds=0)


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def get(port: int, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = await read_response(reader)
        return status, body
    finally:
        writer.close()


async def closed_unanswered(port: int, context: ssl.SSLContext | None = None) -> bool:
    """The listener took the connection and closed it (or failed the handshake) without
    an HTTP answer."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await reader.read(1)
        writer.close()
        return answer == b""
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True


def stat(server: ProxyServer, name: str) -> int:
    return server.stats.get(name) or 0


def ingress_ssl(server: ProxyServer, port: int, name: str) -> int:
    """A TLS counter of the ingress listener on ``port``."""
    return stat(server, f"listener.127.0.0.1_{port}.ssl.{name}")


@contextlib.asynccontextmanager
async def blue_sidecar(agent: FakeSpireAgent) -> AsyncIterator[tuple[ProxyServer, int]]:
    """``blue``'s app behind a sidecar whose ingress listener (on the port yielded) is
    STRICT mTLS with blue's SVID from ``agent``; not waited for, it may still be warming."""
    async with backends("blue") as (app,):
        port = free_port()
        resources = [
            cluster("app", [app.port]),
            secure_listener("ingress", port, "app", listener_tls(BLUE, [FRONT])),
        ]
        async with sidecar(agent, resources) as server:
            yield server, port


@contextlib.asynccontextmanager
async def two_sidecars(
    agent: FakeSpireAgent,
    front_wants: list[str] | None = None,
    blue_agent: FakeSpireAgent | None = None,
) -> AsyncIterator[tuple[Any, Any, int, int]]:
    """:func:`blue_sidecar` (on ``blue_agent`` when given), and ``front``'s sidecar with a
    plaintext egress listener whose cluster to blue originates mTLS with the front's
    SPIFFE certificate from ``agent``."""
    async with blue_sidecar(blue_agent or agent) as (blue, ingress):
        egress = free_port()
        front_resources = [
            secure_cluster("blue", ingress, client_policy(FRONT, front_wants or [BLUE])),
            http_listener(
                "egress", [vhost("all", ["*"], [route({"prefix": "/"}, "blue")])], port=egress
            ),
        ]
        async with sidecar(agent, front_resources) as front:
            yield front, blue, egress, ingress


async def test_mutual_tls_between_two_sidecars_with_spiffe_ids_from_the_agent(
    folder: Path, ca: Authority
) -> None:
    agent = spire(folder, ca)
    try:
        async with two_sidecars(agent) as (front, blue, egress, ingress):
            await wait_for(lambda: "ingress" in blue.listeners and "blue" in front.config.clusters)
            assert await get(egress) == (200, b"blue")
            assert ingress_ssl(blue, ingress, "handshake") == 1
            assert stat(front, "cluster.blue.ssl.handshake") == 1
            assert stat(blue, f"sds.{DOMAIN}.update_success") >= 1
            assert agent.acks and not agent.nacks
            asked = {name for request in agent.requests for name in request.resource_names}
            assert asked == {DOMAIN, BLUE, FRONT}  # each sidecar asks for its own only
    finally:
        agent.stop()


async def test_a_wrong_spiffe_id_is_refused_both_ways(folder: Path, ca: Authority) -> None:
    agent = spire(folder, ca)
    try:
        async with two_sidecars(agent, front_wants=[RED]) as (front, blue, egress, ingress):
            await wait_for(lambda: "ingress" in blue.listeners and "blue" in front.config.clusters)
            status, body = await get(egress)
            assert status == 503 and b"CERTIFICATE_VERIFY_FAILED" in body
            assert stat(front, "cluster.blue.ssl.fail_verify_san") == 1
            # A client with a certificate of the same trust domain but not the front's ID.
            stranger = ca.client_context(ca.issue("stranger", [f"{DOMAIN}/stranger"]))
            assert await closed_unanswered(ingress, stranger)
            assert ingress_ssl(blue, ingress, "fail_verify_san") == 1
    finally:
        agent.stop()


async def test_a_listener_warms_while_the_agent_is_down_and_never_serves_plaintext(
    folder: Path, ca: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    agent = spire(folder, ca, start=False)
    async with blue_sidecar(agent) as (server, port):
        assert "ingress" not in server.listeners
        with pytest.raises(ConnectionRefusedError):
            await get(port)
        dump = json.loads(server._admin.routes["/config_dump"](_request()).text)  # type: ignore[union-attr]
        listeners = next(c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump"))
        warming = [entry for entry in listeners["dynamic_listeners"] if "warming_state" in entry]
        assert warming and warming[0]["name"] == "ingress"
        assert "waiting for SDS secret" in caplog.text
        await wait_for(lambda: "agent.sock unavailable" in caplog.text)
        assert "are warming" in caplog.text
        agent.start()
        try:
            await wait_for(lambda: "ingress" in server.listeners)
            client = ca.client_context(ca.issue("front-client", [FRONT]))
            assert await get(port, client) == (200, b"blue")
            assert await closed_unanswered(port)  # plaintext to a STRICT listener
            assert "listener ingress warmed" in caplog.text
        finally:
            agent.stop()


def _request() -> Any:
    from proxy.admin import AdminRequest

    return AdminRequest("GET", "/config_dump", {}, "/config_dump", "1.1", {})


def _serial(writer: asyncio.StreamWriter) -> str:
    return writer.get_extra_info("peercert")["serialNumber"]


async def test_rotation_through_the_agent_applies_to_new_connections_only(
    folder: Path, ca: Authority
) -> None:
    agent = spire(folder, ca)
    client = ca.client_context(ca.issue("front-client", [FRONT]))
    try:
        async with blue_sidecar(agent) as (server, port):
            await wait_for(lambda: "ingress" in server.listeners)
            reader, old = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            first = _serial(old)
            agent.certificate(BLUE, ca.issue("blue-rotated", [BLUE]))
            agent.push()
            await wait_for(lambda: server.sds is not None and server.sds.version == "2")
            await wait_for(lambda: server.config.local_secrets[BLUE] == server.sds.secrets[BLUE])  # type: ignore[union-attr]
            _, new = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            assert _serial(new) != first
            new.close()
            old.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # the old connection still works
            assert (await read_response(reader))[0] == 200
            assert _serial(old) == first
            old.close()
            assert stat(server, f"sds.{BLUE}.update_success") >= 2
    finally:
        agent.stop()


async def test_a_broken_secret_is_nacked_and_the_last_good_one_kept(
    folder: Path, ca: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    from envoy.config.core.v3 import base_pb2
    from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

    agent = spire(folder, ca)
    client = ca.client_context(ca.issue("front-client", [FRONT]))
    try:
        async with blue_sidecar(agent) as (server, port):
            await wait_for(lambda: "ingress" in server.listeners)
            garbage = base_pb2.DataSource(inline_bytes=b"not a certificate")
            pair = common_pb2.TlsCertificate(certificate_chain=garbage, private_key=garbage)
            agent.raw(secret_pb2.Secret(name=BLUE, tls_certificate=pair))
            agent.push()
            await wait_for(lambda: bool(agent.nacks))
            nack = agent.nacks[-1]
            assert nack.version_info == "1" and BLUE in nack.error_detail.message
            assert stat(server, f"sds.{BLUE}.update_rejected") == 1
            assert "rejecting version 2" in caplog.text
            assert await get(port, client) == (200, b"blue")  # still the first certificate
            agent.stop()  # and when the agent goes away, the last good secrets stay
            await wait_for(lambda: "unavailable" in server.sds.status)  # type: ignore[union-attr]
            assert await get(port, client) == (200, b"blue")
    finally:
        agent.stop()


async def test_a_socket_that_serves_no_sds_is_reported_with_its_grpc_status(
    folder: Path, ca: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    """A gRPC server on the socket without the SDS service answers UNIMPLEMENTED
    (trailers only): the listener warms and the log carries the status."""
    import grpc

    agent = spire(folder, ca, start=False)
    empty = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    empty.add_insecure_port(f"unix:{agent.socket_path}")
    empty.start()
    try:
        async with blue_sidecar(agent) as (server, _):
            await wait_for(lambda: "UNIMPLEMENTED" in caplog.text)
            assert "ingress" not in server.listeners
            assert "UNIMPLEMENTED" in server.sds.status  # type: ignore[union-attr]
    finally:
        empty.stop(grace=None)


async def test_a_cluster_waiting_for_its_client_certificate_is_not_used(
    folder: Path, ca: Authority
) -> None:
    """The front's cluster to blue needs the front's SVID: while the agent is down the
    cluster does not exist, so its route answers 503 ``NC`` (never a plaintext call),
    and once the SVID arrives the cluster is created and carries mTLS."""
    agent = spire(folder, ca, start=False)
    blue_agent = FakeSpireAgent(folder / "blue.sock")
    blue_agent.secrets = dict(spire(folder, ca, start=False).secrets)
    blue_agent.start()
    try:
        async with two_sidecars(agent, blue_agent=blue_agent) as (front, blue, egress, ingress):
            await wait_for(lambda: "ingress" in blue.listeners)
            assert "blue" in front.config.warming_clusters
            status, _ = await get(egress)
            assert status == 503 and stat(front, "http.ingress.no_cluster") == 1  # NC
            assert ingress_ssl(blue, ingress, "connection_error") == 0
            agent.start()
            await wait_for(lambda: "blue" in front.config.clusters)
            assert await get(egress) == (200, b"blue")
            assert stat(front, "cluster.blue.ssl.handshake") == 1
    finally:
        agent.stop()
        blue_agent.stop()
