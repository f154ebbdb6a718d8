"""Mutual TLS with SPIFFE identities from a local SDS agent, as App Mesh's
howto-k8s-mtls-sds-based walkthrough runs it with SPIRE.

The virtual nodes carry the walkthrough's own TLS specs: each colour node's listener is
STRICT with its SVID (``sds.secretName: spiffe://.../color<colour>``), trusts the bundle
(``spiffe://howto-k8s-mtls-sds-based.aws``) and accepts only the front's SPIFFE ID; the
front's ``backendDefaults`` client policy presents the front's SVID and accepts the three
colours' IDs. The walkthrough's header-routed virtual router is replaced by one virtual
service per colour (routing is tested elsewhere). The SPIRE agent is faked by a real
grpcio SDS server on a Unix socket (``tests/sds_agent.py``); the sidecars find it
through ``APPMESH_SDS_SOCKET_PATH``, as the App Mesh Envoy image does. ``green``'s SVID
names the wrong SPIFFE ID, so the front refuses it.
"""

from __future__ import annotations

import json
import socket
import ssl
import tempfile
from pathlib import Path

import pytest

from tests.certificates import Authority, Pem
from tests.conftest import make_client, new_account
from tests.mesh import tls_helpers
from tests.mesh.harness import Mesh, Proxy, get, wait_for
from tests.sds_agent import FakeSpireAgent

MESH = "howto-k8s-mtls-sds-based"
DOMAIN = f"spiffe://{MESH}.aws"
FRONT = f"{DOMAIN}/front"
COLOURS = ("blue", "red", "green")


def svid(colour: str) -> str:
    return f"{DOMAIN}/color{colour}"


def host(name: str) -> str:
    return f"color-{name}.{MESH}.svc.cluster.local" if name in COLOURS else f"{name}.{MESH}.local"


def colour_node(colour: str, port: int) -> dict:
    """The walkthrough's colour VirtualNode (its health check left out)."""
    tls = {
        "mode": "STRICT",
        "certificate": {"sds": {"secretName": svid(colour)}},
        "validation": {
            "trust": {"sds": {"secretName": DOMAIN}},
            "subjectAlternativeNames": {"match": {"exact": [FRONT]}},
        },
    }
    return {
        "listeners": [{"portMapping": {"port": port, "protocol": "http"}, "tls": tls}],
        "serviceDiscovery": {"dns": {"hostname": host(colour)}},
    }


def front_node(port: int) -> dict:
    """The walkthrough's front VirtualNode: backendDefaults mTLS with SPIFFE SANs."""
    policy = {
        "tls": {
            "enforce": True,
            "certificate": {"sds": {"secretName": FRONT}},
            "validation": {
                "trust": {"sds": {"secretName": DOMAIN}},
                "subjectAlternativeNames": {"match": {"exact": [svid(c) for c in COLOURS]}},
            },
        }
    }
    return {
        "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
        "backends": [{"virtualService": {"virtualServiceName": host(c)}} for c in COLOURS],
        "backendDefaults": {"clientPolicy": policy},
        "serviceDiscovery": {"dns": {"hostname": host("front")}},
    }


@pytest.fixture(scope="module")
def mesh(server, tmp_path_factory):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    folder = tmp_path_factory.mktemp("sds")
    sockets = Path(tempfile.mkdtemp(prefix="spire-"))  # short: Unix socket paths are limited
    ca = Authority(folder, "SPIRE CA")
    agent = FakeSpireAgent(sockets / "agent.sock")
    agent.bundle(DOMAIN, ca)
    agent.certificate(FRONT, ca.issue("front", [FRONT]))
    agent.certificate(svid("blue"), ca.issue("blue", [svid("blue")]))
    agent.certificate(svid("red"), ca.issue("red", [svid("red")]))
    agent.certificate(svid("green"), ca.issue("green", [f"{DOMAIN}/colorpurple"]))  # wrong ID
    agent.start()
    running = Mesh(server.endpoint, account, MESH, folder)
    env = {"APPMESH_SDS_SOCKET_PATH": str(agent.socket_path)}
    try:
        appmesh.create_mesh(meshName=MESH)
        for name in ("front", *COLOURS):
            port = running.app(name)
            spec = front_node(port) if name == "front" else colour_node(name, port)
            appmesh.create_virtual_node(meshName=MESH, virtualNodeName=name, spec=spec)
            provider = {"virtualNode": {"virtualNodeName": name}}
            appmesh.create_virtual_service(
                meshName=MESH, virtualServiceName=host(name), spec={"provider": provider}
            )
        proxies = {name: running.proxy(name, env=env) for name in ("front", *COLOURS)}
        yield {
            "appmesh": appmesh,
            "ca": ca,
            "agent": agent,
            "proxies": proxies,
            "running": running,
            "sockets": sockets,
            "folder": folder,
        }
    finally:
        running.close()
        agent.stop()


def handshake(port: int, context: ssl.SSLContext | None) -> tuple[str, str, bytes]:
    """One GET on a fresh connection: (server URI SAN, its serial number, the reply)."""
    certificate, reply = tls_helpers.exchange(port, context, "x")
    return tls_helpers.san(certificate, "URI"), str(certificate.get("serialNumber", "")), reply


def refused(port: int, context: ssl.SSLContext | None) -> bool:
    return tls_helpers.refused(port, context, "x")


def front_client(mesh) -> ssl.SSLContext:
    ca: Authority = mesh["ca"]
    pem: Pem = ca.issue("front-client", [FRONT])
    return ca.client_context(pem)


def test_front_reaches_each_colour_over_mutual_tls_with_spiffe_ids(mesh):
    front = mesh["proxies"]["front"]
    for colour in ("blue", "red"):
        status, _, body = wait_for(
            lambda c=colour: (r := get(front.egress, "/color", host(c)))[0] == 200 and r
        )
        assert (status, body) == (200, colour)
        proxy: Proxy = mesh["proxies"][colour]
        assert proxy.ingress_ssl("handshake") >= 1
    uri, _, reply = handshake(mesh["proxies"]["blue"].ingress, front_client(mesh))
    assert uri == svid("blue") and reply.startswith(b"HTTP/1.1 200")


def test_a_certificate_with_the_wrong_spiffe_id_is_refused(mesh):
    front, green = mesh["proxies"]["front"], mesh["proxies"]["green"]
    status, _, body = get(front.egress, "/color", host("green"))
    assert status == 503 and "CERTIFICATE_VERIFY_FAILED" in body
    failures = [
        line
        for line in front.admin_get("/stats").splitlines()
        if "_green_http_" in line and ".ssl.fail_verify_san: " in line
    ]
    assert failures and not failures[0].endswith(": 0")
    # And the colour nodes accept only the front's ID: another workload of the domain fails.
    ca: Authority = mesh["ca"]
    other = ca.client_context(ca.issue("other", [f"{DOMAIN}/other"]))
    assert refused(green.ingress, other)
    assert green.ingress_ssl("fail_verify_san") >= 1


def test_strict_refuses_plaintext(mesh):
    blue = mesh["proxies"]["blue"]
    assert refused(blue.ingress, None)


def test_the_admin_shows_the_agents_secrets_without_private_keys(mesh):
    text = mesh["proxies"]["blue"].admin_get("/config_dump")
    assert "PRIVATE KEY" not in text
    dump = json.loads(text)
    secrets = next(c for c in dump["configs"] if c["@type"].endswith("SecretsConfigDump"))
    names = {entry["name"] for entry in secrets["dynamic_active_secrets"]}
    assert names == {DOMAIN, svid("blue")}
    assert not secrets["dynamic_warming_secrets"]


def test_a_rotated_svid_is_served_to_new_connections(mesh):
    agent: FakeSpireAgent = mesh["agent"]
    blue, client = mesh["proxies"]["blue"], front_client(mesh)
    _, before, _ = handshake(blue.ingress, client)
    agent.certificate(svid("blue"), mesh["ca"].issue("blue-2", [svid("blue")]))
    agent.push()
    rotated = wait_for(lambda: (s := handshake(blue.ingress, client))[1] != before and s)
    assert rotated and rotated[0] == svid("blue") and rotated[2].startswith(b"HTTP/1.1 200")
    front = mesh["proxies"]["front"]
    assert get(front.egress, "/color", host("blue"))[0] == 200


def test_with_the_agent_down_at_start_the_listener_is_not_served_until_it_comes(mesh):
    """A second blue sidecar whose agent socket has no agent yet: its STRICT listener is
    not bound (connection refused, never plaintext), the log says why, and it serves
    TLS once an agent answers on that socket."""
    running: Mesh = mesh["running"]
    path = mesh["sockets"] / "late.sock"
    late = running.proxy("blue", env={"APPMESH_SDS_SOCKET_PATH": str(path)})
    log = mesh["folder"] / "proxy-blue.log"
    assert wait_for(lambda: "waiting for SDS secret" in log.read_text())
    assert wait_for(lambda: "late.sock unavailable" in log.read_text())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", late.ingress), timeout=2)
    dump = json.loads(late.admin_get("/config_dump"))
    secrets = next(c for c in dump["configs"] if c["@type"].endswith("SecretsConfigDump"))
    assert {e["name"] for e in secrets["dynamic_warming_secrets"]} == {DOMAIN, svid("blue")}
    second = FakeSpireAgent(path)
    second.secrets = dict(mesh["agent"].secrets)
    second.start()
    try:
        served = wait_for(lambda: not refused(late.ingress, front_client(mesh)), timeout=20)
        assert served and "listener" in log.read_text() and "warmed" in log.read_text()
        assert refused(late.ingress, None)
    finally:
        second.stop()
