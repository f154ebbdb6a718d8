"""TLS transport sockets on a real ProxyServer: Envoy resources in, Python ``ssl`` out.

Listeners with a DownstreamTlsContext behind the tls_inspector (STRICT: a TLS chain
only; PERMISSIVE: a TLS chain and a raw_buffer chain), client certificates checked
against a CA and SAN matchers, clusters with an UpstreamTlsContext, and SDS secrets
delivered with the config whose change applies to new connections only.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from proxy_envoy import LISTENER, T, cluster, http_listener, route, vhost
from proxy_harness import backends, client, fetch, read_response, running_proxy, wait_until

from appmesh_api.localports import free_port
from proxy.config.protojson import ConfigError
from tests.certificates import Authority, Pem

DOWNSTREAM = T + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM = T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
SECRET = T + "envoy.extensions.transport_sockets.tls.v3.Secret"
INSPECTOR = T + "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
ADS = {"ads": {}, "resource_api_version": "V3"}


def files(pem: Pem) -> dict[str, Any]:
    return {
        "certificate_chain": {"filename": str(pem.chain)},
        "private_key": {"filename": str(pem.key)},
    }


def downstream(certificate: dict[str, Any], validation: dict | None = None) -> dict[str, Any]:
    common: dict[str, Any] = {**certificate, "alpn_protocols": ["h2", "http/1.1"]}
    context: dict[str, Any] = {"@type": DOWNSTREAM, "common_tls_context": common}
    if validation is not None:
        common["validation_context"] = validation
        context["require_client_certificate"] = True
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def validation(ca: Authority, *sans: str) -> dict[str, Any]:
    matchers = [{"san_type": "DNS", "matcher": {"exact": s}} for s in sans]
    return {"trusted_ca": {"filename": str(ca.pem)}, "match_typed_subject_alt_names": matchers}


def tls_listener(name: str, port: int, socket: dict, mode: str, backend: str) -> dict[str, Any]:
    """App Mesh's shape: tls_inspector, a TLS chain, and for PERMISSIVE a plaintext one."""
    base = http_listener(name, [vhost("all", ["*"], [route({"prefix": "/"}, backend)])], port=port)
    plain = base["filter_chains"][0]
    secure = {
        **plain,
        "filter_chain_match": {"transport_protocol": "tls"},
        "transport_socket": socket,
    }
    chains = [secure]
    if mode == "PERMISSIVE":
        chains.append({**plain, "filter_chain_match": {"transport_protocol": "raw_buffer"}})
    base["filter_chains"] = chains
    base["listener_filters"] = [
        {"name": "envoy.filters.listener.tls_inspector", "typed_config": {"@type": INSPECTOR}}
    ]
    return base


async def https_get(
    port: int, context: ssl.SSLContext | None, host: str = "x"
) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        status, _, body = await read_response(reader)
        return status, body
    finally:
        writer.close()


async def refused(port: int, context: ssl.SSLContext | None) -> bool:
    """The proxy closed the connection (or failed the handshake) without an answer."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return data == b""
    except (ssl.SSLError, ConnectionError):
        return True


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


async def test_strict_serves_tls_and_refuses_plaintext(ca: Authority) -> None:
    server = ca.issue("server", ["secure.local"])
    async with backends("blue") as (blue,):
        port = free_port()
        resources = [
            cluster("blue", [blue.port]),
            tls_listener(
                "ingress", port, downstream({"tls_certificates": [files(server)]}), "STRICT", "blue"
            ),
        ]
        async with running_proxy(resources) as proxy:
            status, body = await https_get(port, ca.client_context())
            assert (status, body) == (200, b"blue")
            assert await refused(port, None)
            assert proxy.stat(f"listener.127.0.0.1_{port}.ssl.handshake") == 1
            assert proxy.stat(f"listener.127.0.0.1_{port}.ssl.no_certificate") == 1
            assert proxy.stat(f"listener.127.0.0.1_{port}.no_filter_chain_match") == 1


async def test_permissive_serves_tls_and_plaintext_on_one_port(ca: Authority) -> None:
    server = ca.issue("server", ["secure.local"])
    async with backends("blue") as (blue,):
        port = free_port()
        socket = downstream({"tls_certificates": [files(server)]})
        resources = [
            cluster("blue", [blue.port]),
            tls_listener("ingress", port, socket, "PERMISSIVE", "blue"),
        ]
        async with running_proxy(resources) as proxy:
            assert await https_get(port, ca.client_context()) == (200, b"blue")
            assert await https_get(port, None) == (200, b"blue")
            assert proxy.stat(f"listener.127.0.0.1_{port}.ssl.handshake") == 1


async def test_mutual_tls_checks_the_client_certificate_and_its_san(ca: Authority) -> None:
    server = ca.issue("server", ["secure.local"])
    good, wrong = ca.issue("good", ["front.local"]), ca.issue("wrong", ["other.local"])
    stranger = Authority(ca.folder, "Other CA").issue("stranger", ["front.local"])
    async with backends("blue") as (blue,):
        port = free_port()
        socket = downstream({"tls_certificates": [files(server)]}, validation(ca, "front.local"))
        resources = [
            cluster("blue", [blue.port]),
            tls_listener("ingress", port, socket, "STRICT", "blue"),
        ]
        async with running_proxy(resources) as proxy:
            assert await https_get(port, ca.client_context(good)) == (200, b"blue")
            assert await refused(port, ca.client_context())
            assert await refused(port, ca.client_context(wrong))
            assert await refused(port, ca.client_context(stranger))
            scope = f"listener.127.0.0.1_{port}.ssl."
            counts = {
                n: proxy.stat(scope + n)
                for n in (
                    "handshake",
                    "fail_verify_no_cert",
                    "fail_verify_san",
                    "fail_verify_error",
                )
            }
            assert counts == {
                "handshake": 1,
                "fail_verify_no_cert": 1,
                "fail_verify_san": 1,
                "fail_verify_error": 1,
            }


async def test_a_cluster_originates_mutual_tls_and_checks_the_server_san(ca: Authority) -> None:
    server, client = ca.issue("server", ["back.local"]), ca.issue("client", ["front.local"])
    async with backends("blue") as (blue,):
        back, front = free_port(), free_port()

        def secure_cluster(san: str) -> dict[str, Any]:
            common = {
                "tls_certificates": [files(client)],
                "validation_context": validation(ca, san),
            }
            socket = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": UPSTREAM,
                    "common_tls_context": common,
                    "sni": "back.local",
                },
            }
            return cluster("secure", [back], transport_socket=socket)

        listener_socket = downstream(
            {"tls_certificates": [files(server)]}, validation(ca, "front.local")
        )
        resources = [
            cluster("blue", [blue.port]),
            tls_listener("back", back, listener_socket, "STRICT", "blue"),
            http_listener(
                "front", [vhost("all", ["*"], [route({"prefix": "/"}, "secure")])], port=front
            ),
            secure_cluster("back.local"),
        ]
        async with running_proxy(resources) as proxy:
            assert await https_get(front, None) == (200, b"blue")
            assert proxy.stat("cluster.secure.ssl.handshake") == 1
            assert proxy.stat(f"listener.127.0.0.1_{back}.ssl.handshake") == 1
            resources[-1] = secure_cluster("elsewhere.local")
            await proxy.server.apply(resources, "2")
            status, body = await https_get(front, None)
            assert status == 503 and b"CERTIFICATE_VERIFY_FAILED" in body
            assert proxy.stat("cluster.secure.ssl.fail_verify_san") == 1


async def test_a_changed_sds_secret_applies_to_new_connections_only(ca: Authority) -> None:
    first, second = ca.issue("first", ["one.local"]), ca.issue("second", ["two.local"])

    def secret(pem: Pem) -> dict[str, Any]:
        pair = {
            "certificate_chain": {"inline_string": pem.chain_text()},
            "private_key": {"inline_string": pem.key_text()},
        }
        return {"@type": SECRET, "name": "server-cert", "tls_certificate": pair}

    async with backends("blue") as (blue,):
        port = free_port()
        socket = downstream(
            {"tls_certificate_sds_secret_configs": [{"name": "server-cert", "sds_config": ADS}]}
        )
        resources = [
            cluster("blue", [blue.port]),
            tls_listener("ingress", port, socket, "STRICT", "blue"),
            secret(first),
        ]
        async with running_proxy(resources) as proxy:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ca.client_context()
            )
            assert _san(writer) == "one.local"
            resources[-1] = secret(second)
            await proxy.server.apply(resources, "2")
            assert (await https_get(port, ca.client_context()))[0] == 200
            _, writer2 = await asyncio.open_connection("127.0.0.1", port, ssl=ca.client_context())
            assert _san(writer2) == "two.local"
            writer2.close()
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # the old connection still works
            assert (await read_response(reader))[0] == 200
            writer.close()


def _san(writer: asyncio.StreamWriter) -> str:
    cert = writer.get_extra_info("peercert")
    return dict(cert["subjectAltName"])["DNS"]


async def test_an_undelivered_secret_or_an_sds_agent_the_bootstrap_lacks_is_refused(
    ca: Authority,
) -> None:
    """Envoy NACKs a secret the xDS server did not send, an SDS source naming a cluster
    its bootstrap does not define (no ``APPMESH_SDS_SOCKET_PATH``), and SDS from files."""
    missing = downstream(
        {"tls_certificate_sds_secret_configs": [{"name": "nowhere", "sds_config": ADS}]}
    )
    local = {
        "api_config_source": {
            "api_type": "GRPC",
            "grpc_services": [{"envoy_grpc": {"cluster_name": "static_cluster_sds_unix_socket"}}],
        }
    }
    agent = downstream(
        {"tls_certificate_sds_secret_configs": [{"name": "spire", "sds_config": local}]}
    )
    path = downstream(
        {"tls_certificate_sds_secret_configs": [{"name": "f", "sds_config": {"path": "/x"}}]}
    )
    refused = (
        (missing, "has not been delivered"),
        (agent, "not the bootstrap.s local SDS agent"),
        (path, "an SDS source other than ADS"),
    )
    async with running_proxy([]) as proxy:
        for socket, reason in refused:
            listener = tls_listener("ingress", free_port(), socket, "STRICT", "blue")
            try:  # refused before compiling (the whole update), or on its own
                left_out = await proxy.server.apply([listener], "2")
            except ConfigError as whole:
                assert re.search(reason, str(whole)), whole
            else:
                assert re.search(reason, left_out[LISTENER]["ingress"]), left_out
            assert "ingress" not in proxy.server.listeners
    assert LISTENER


@pytest.mark.parametrize(
    "kind", [{"http_health_check": {"path": "/health"}}, {"tcp_health_check": {}}]
)
async def test_health_checks_run_over_the_clusters_mutual_tls(
    ca: Authority, kind: dict[str, Any]
) -> None:
    """Two hosts behind mutual TLS: ``back`` presents the SAN the cluster wants,
    ``picky`` another one. The checks handshake with the cluster's context (trust, SAN,
    client certificate) as Envoy's do, so ``picky`` fails its checks and takes no
    traffic, and ``back`` passes them with this proxy's client certificate."""
    server, client = ca.issue("server", ["back.local"]), ca.issue("client", ["front.local"])
    other = ca.issue("other", ["other.local"])
    check = {"timeout": "1s", "interval": "0.1s", "unhealthy_threshold": 1,
             "healthy_threshold": 1, **kind}  # fmt: skip
    async with backends("blue") as (blue,):
        back, picky, front = free_port(), free_port(), free_port()
        common = {
            "tls_certificates": [files(client)],
            "validation_context": validation(ca, "back.local"),
        }
        socket = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": UPSTREAM, "common_tls_context": common, "sni": "back.local"},
        }
        certificate = {"tls_certificates": [files(server)]}
        resources = [
            cluster("blue", [blue.port]),
            tls_listener(
                "back",
                back,
                downstream(certificate, validation(ca, "front.local")),
                "STRICT",
                "blue",
            ),
            tls_listener(
                "picky",
                picky,
                downstream({"tls_certificates": [files(other)]}, validation(ca, "front.local")),
                "STRICT",
                "blue",
            ),
            http_listener(
                "front", [vhost("all", ["*"], [route({"prefix": "/"}, "secure")])], port=front
            ),
            cluster("secure", [back, picky], transport_socket=socket, health_checks=[check]),
        ]
        async with running_proxy(resources) as proxy:
            await wait_until(lambda: proxy.stat("cluster.secure.health_check.network_failure") > 0)
            assert proxy.stat("cluster.secure.membership_healthy") == 1
            assert proxy.stat("cluster.secure.ssl.handshake") >= 1
            assert proxy.stat("cluster.secure.ssl.fail_verify_san") >= 1
            assert proxy.stat(f"listener.127.0.0.1_{back}.ssl.handshake") >= 1
            for _ in range(6):
                assert await https_get(front, None) == (200, b"blue")


async def test_admin_certs_lists_the_certificates_in_use_and_no_key(ca: Authority) -> None:
    """Envoy's ``/certs`` over the real admin port: the listener's trust anchor (by
    file) and certificate, the cluster's client certificate (an SDS secret, inline)."""
    server = ca.issue("server", ["secure.local", "alt.local"])
    client_pem = ca.issue("client", ["spiffe://mesh.local/front"])
    pair = {
        "certificate_chain": {"inline_string": client_pem.chain_text()},
        "private_key": {"inline_string": client_pem.key_text()},
    }
    common = {"tls_certificate_sds_secret_configs": [{"name": "client", "sds_config": ADS}]}
    upstream = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {"@type": UPSTREAM, "common_tls_context": common},
    }
    listener = downstream({"tls_certificates": [files(server)]}, validation(ca, "front.local"))
    async with backends("blue") as (blue,):
        resources = [
            cluster("blue", [blue.port], transport_socket=upstream),
            tls_listener("ingress", free_port(), listener, "STRICT", "blue"),
            {"@type": SECRET, "name": "client", "tls_certificate": pair},
        ]
        async with running_proxy(resources) as proxy, client() as session:
            status, headers, body = await fetch(session, proxy.admin("/certs"))
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert "PRIVATE KEY" not in body and client_pem.key_text().splitlines()[1] not in body
    now = datetime.datetime.now(datetime.UTC)
    assert json.loads(body) == {
        "certificates": [
            {"ca_cert": [details(ca.pem, str(ca.pem), now)],
             "cert_chain": [details(server.chain, str(server.chain), now)]},
            {"ca_cert": [], "cert_chain": [details(client_pem.chain, "<inline>", now)]},
        ]
    }  # fmt: skip


def details(pem: Path, path: str, now: datetime.datetime) -> dict[str, Any]:
    """Envoy's CertificateDetails of ``pem``'s first certificate, read by cryptography."""
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [
            {"dns" if isinstance(name, x509.DNSName) else "uri": name.value}
            for name in extension.value
        ]
    except x509.ExtensionNotFound:
        names = []
    serial = f"{cert.serial_number:x}"
    return {
        "path": path,
        "serial_number": serial.zfill(len(serial) + len(serial) % 2),
        "subject_alt_names": names,
        "days_until_expiration": str((cert.not_valid_after_utc - now).days),
        "valid_from": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "expiration_time": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
