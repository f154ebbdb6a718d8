"""TLS and mutual TLS in a real mesh: App Mesh resources through the API, real sidecars.

Certificates are made on the fly (one CA; a certificate per node naming its DNS
hostname). ``secure`` is STRICT with a listener ``validation`` (mutual TLS: it wants a
client certificate naming ``front``), ``open`` is PERMISSIVE; ``front`` reaches both
through its sidecar with client policies (trust, SANs, its own certificate), and
``stranger`` reaches ``secure`` without a client certificate. Python ``ssl`` clients
talk to the sidecars' ingress ports directly, as an app outside the mesh would.
"""

from __future__ import annotations

import re
import socket
import ssl

import pytest

from tests.certificates import Authority
from tests.conftest import make_client, new_account
from tests.mesh import tls_helpers
from tests.mesh.harness import Mesh, get, wait_for
from tests.mesh.tls_helpers import create_nodes, get_on, peer

MESH = "tls"


def host(name: str) -> str:
    return f"{name}.{MESH}.local"


def node_spec(port: int, name: str, tls: dict | None = None, backends: list | None = None):
    spec = tls_helpers.node_spec(port, host(name), tls)
    if backends:
        spec["backends"] = backends
    return spec


def backend(name: str, ca: Authority, sans: list[str], certificate: dict | None = None) -> dict:
    """A backend whose client policy enforces TLS, trusting ``ca`` for ``sans``."""
    tls: dict = {
        "enforce": True,
        "validation": {
            "trust": {"file": {"certificateChain": str(ca.pem)}},
            "subjectAlternativeNames": {"match": {"exact": sans}},
        },
    }
    if certificate:
        tls["certificate"] = certificate
    return {"virtualService": {"virtualServiceName": host(name), "clientPolicy": {"tls": tls}}}


@pytest.fixture(scope="module")
def mesh(server, tmp_path_factory):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    folder = tmp_path_factory.mktemp(MESH)
    ca = Authority(folder)
    names = ("secure", "open", "front", "stranger")
    files = {name: ca.issue(name, [host(name)]).file_certificate() for name in names}
    running = Mesh(server.endpoint, account, MESH, folder)
    try:
        appmesh.create_mesh(meshName=MESH)
        ports = {name: running.app(name) for name in names}
        mutual = {
            "mode": "STRICT",
            "certificate": files["secure"],
            "validation": {
                "trust": {"file": {"certificateChain": str(ca.pem)}},
                "subjectAlternativeNames": {"match": {"exact": [host("front")]}},
            },
        }
        permissive = {"mode": "PERMISSIVE", "certificate": files["open"]}
        specs = {
            "secure": node_spec(ports["secure"], "secure", tls=mutual),
            "open": node_spec(ports["open"], "open", tls=permissive),
            "front": node_spec(
                ports["front"],
                "front",
                backends=[
                    backend("secure", ca, [host("secure")], files["front"]),
                    backend("open", ca, [host("open")]),
                ],
            ),
            "stranger": node_spec(
                ports["stranger"], "stranger", backends=[backend("secure", ca, [host("secure")])]
            ),
        }
        log_format = "%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_TRANSPORT_FAILURE_REASON%\n"
        access_log = {"path": str(folder / "front-access.log"), "format": {"text": log_format}}
        specs["front"]["logging"] = {"accessLog": {"file": access_log}}
        create_nodes(appmesh, MESH, specs, host)
        proxies = {name: running.proxy(name) for name in specs}
        yield {"appmesh": appmesh, "ca": ca, "proxies": proxies, "specs": specs, "folder": folder}
    finally:
        running.close()


def https(port: int, context: ssl.SSLContext | None, name: str) -> tuple[str, bytes]:
    """One GET over a fresh connection: (the server certificate's DNS SAN, the reply)."""
    certificate, reply = tls_helpers.exchange(port, context, host(name))
    return tls_helpers.san(certificate, "DNS"), reply


def refused(port: int, context: ssl.SSLContext | None, name: str) -> bool:
    return tls_helpers.refused(port, context, host(name))


def test_strict_mutual_tls_between_two_sidecars(mesh):
    front, secure = mesh["proxies"]["front"], mesh["proxies"]["secure"]
    status, _, body = wait_for(
        lambda: (r := get(front.egress, "/color", host("secure")))[0] == 200 and r
    )
    assert (status, body) == (200, "secure")
    assert secure.ingress_ssl("handshake") >= 1
    clusters = [line for line in front.admin_get("/stats").splitlines() if "_secure_http_" in line]
    assert any(".ssl.handshake: " in line and not line.endswith(": 0") for line in clusters)


def test_strict_refuses_plaintext_and_clients_without_a_certificate(mesh):
    secure, ca = mesh["proxies"]["secure"], mesh["ca"]
    assert refused(secure.ingress, None, "secure")
    before = secure.ingress_ssl("fail_verify_no_cert")
    assert refused(secure.ingress, ca.client_context(), "secure")
    assert secure.ingress_ssl("fail_verify_no_cert") == before + 1
    stranger = mesh["proxies"]["stranger"]
    status, _, _ = get(stranger.egress, "/color", host("secure"))
    assert status == 503


def test_a_client_certificate_with_the_wrong_san_is_refused(mesh):
    secure, ca = mesh["proxies"]["secure"], mesh["ca"]
    wrong = ca.issue("impostor", ["impostor.tls.local"])
    before = secure.ingress_ssl("fail_verify_san")
    assert refused(secure.ingress, ca.client_context(wrong), "secure")
    assert secure.ingress_ssl("fail_verify_san") == before + 1


def test_permissive_serves_tls_and_plaintext_on_one_port(mesh):
    opened, ca = mesh["proxies"]["open"], mesh["ca"]
    san, reply = https(opened.ingress, ca.client_context(), "open")
    assert san == host("open") and reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"open")
    _, reply = https(opened.ingress, None, "open")
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"open")


def test_a_wrong_san_in_the_client_policy_fails_with_uf(mesh):
    appmesh, ca, front = mesh["appmesh"], mesh["ca"], mesh["proxies"]["front"]
    spec = mesh["specs"]["front"]
    wrong = {
        **spec,
        "backends": [backend("open", ca, ["elsewhere.tls.local"]), spec["backends"][0]],
    }
    appmesh.update_virtual_node(meshName=MESH, virtualNodeName="front", spec=wrong)
    try:
        status, _, body = wait_for(
            lambda: (r := get(front.egress, "/color", host("open")))[0] == 503 and r
        )
        assert status == 503 and "CERTIFICATE_VERIFY_FAILED" in body
        log = mesh["folder"] / "front-access.log"
        # UF, with URX: App Mesh's default retry policy retried the connect failure.
        reason = re.compile(r"^503 (\S+,)?UF(,\S+)? TLS error: CERTIFICATE_VERIFY_FAILED", re.M)
        assert wait_for(lambda: log.exists() and reason.search(log.read_text()))
        stats = front.admin_get("/stats")
        assert any(
            "_open_http_" in line and ".ssl.fail_verify_san: " in line and not line.endswith(": 0")
            for line in stats.splitlines()
        )
    finally:
        appmesh.update_virtual_node(meshName=MESH, virtualNodeName="front", spec=spec)
    assert wait_for(lambda: get(front.egress, "/color", host("open"))[0] == 200)


def test_a_rotated_certificate_applies_to_new_connections_only(mesh):
    appmesh, ca, opened = mesh["appmesh"], mesh["ca"], mesh["proxies"]["open"]
    context = ca.client_context()
    kept = context.wrap_socket(socket.create_connection(("127.0.0.1", opened.ingress), timeout=5))
    old = kept.getpeercert()["serialNumber"]
    ca.issue("open", [host("open")])  # same files, new certificate
    # The files are read again when a version is applied. A new backend changes the
    # egress listener only: the ingress chain is the same, so its connection stays
    # (a changed chain would drain it, as Envoy drains it).
    spec = {**mesh["specs"]["open"], "backends": [backend("secure", ca, [host("secure")])]}
    appmesh.update_virtual_node(meshName=MESH, virtualNodeName="open", spec=spec)

    assert wait_for(lambda: peer(opened.ingress, context)["serialNumber"] != old)
    reply = get_on(kept, host("open"))
    kept.close()
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"open")
