"""TLS with ACM in a real mesh: App Mesh's tls-with-acm and
howto-mutual-tls-file-provided-by-acm walkthroughs, on the embedded ACM and ACM PCA.

A root CA is created in the embedded ACM PCA and private certificates are requested
from the embedded ACM. ``open`` serves STRICT TLS with its ACM certificate, and ``front``
trusts the CA through ``backendDefaults`` (tls-with-acm). ``teller`` serves its ACM
certificate too and requires a client certificate; ``front`` presents one exported from
ACM to files (the mutual-TLS walkthrough). The control plane exports the ACM material
and the sidecars get it as SDS secrets over xDS; nothing is written to disk for them.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.request

import pytest

from tests.conftest import free_port, make_client, new_account
from tests.mesh import harness, tls_helpers
from tests.mesh.harness import Mesh, Proxy, get
from tests.mesh.tls_helpers import create_nodes, get_on, peer, subject
from tests.private_ca import ca_pem, client_context, create_root_ca, export_files, request_private
from tests.signing import proxies_of, xds_request

MESH = "acm"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"


def host(name: str) -> str:
    return f"{name}.{MESH}.local"


HEALTH = {"protocol": "http", "path": "/color", "healthyThreshold": 2, "unhealthyThreshold": 2,
          "timeoutMillis": 2000, "intervalMillis": 5000}  # fmt: skip


def node_spec(port: int, name: str, tls: dict | None = None, check: dict | None = None) -> dict:
    return tls_helpers.node_spec(port, host(name), tls, check)


@pytest.fixture(scope="module")
def mesh(server, tmp_path_factory):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    acm, pca = (make_client(server.endpoint, s, account) for s in ("acm", "acm-pca"))
    folder = tmp_path_factory.mktemp(MESH)
    ca = create_root_ca(pca, "mesh root")
    (folder / "ca.pem").write_text(ca_pem(pca, ca))
    names = ("teller", "open", "front", "edge")
    arns = {name: request_private(acm, ca, host(name)) for name in names}
    front_files = export_files(acm, arns["front"], folder, "front")
    running = Mesh(server.endpoint, account, MESH, folder)
    try:
        appmesh.create_mesh(meshName=MESH)
        ports = {name: running.app(name) for name in ("teller", "open", "front")}
        mutual = {
            "mode": "STRICT",
            "certificate": {"acm": {"certificateArn": arns["teller"]}},
            "validation": {
                "trust": {"file": {"certificateChain": str(folder / "ca.pem")}},
                "subjectAlternativeNames": {"match": {"exact": [host("front")]}},
            },
        }
        strict = {"mode": "STRICT", "certificate": {"acm": {"certificateArn": arns["open"]}}}
        trust_ca = {"trust": {"acm": {"certificateAuthorityArns": [ca]}}}
        teller_policy = {"tls": {"validation": trust_ca, "certificate": {"file": front_files}}}
        front = node_spec(ports["front"], "front")
        front["backends"] = [
            {
                "virtualService": {
                    "virtualServiceName": host("teller"),
                    "clientPolicy": teller_policy,
                }
            },
            {"virtualService": {"virtualServiceName": host("open")}},
        ]
        front["backendDefaults"] = {"clientPolicy": {"tls": {"validation": trust_ca}}}
        specs = {
            "teller": node_spec(ports["teller"], "teller", mutual),
            "open": node_spec(ports["open"], "open", strict, HEALTH),
            "front": front,
        }
        create_nodes(appmesh, MESH, specs, host)
        gateway_port = free_port()  # a gateway listens on its listener's own port
        edge_tls = {"mode": "STRICT", "certificate": {"acm": {"certificateArn": arns["edge"]}}}
        appmesh.create_virtual_gateway(
            meshName=MESH,
            virtualGatewayName="edge",
            spec={
                "listeners": [
                    {"portMapping": {"port": gateway_port, "protocol": "http"}, "tls": edge_tls}
                ],
                "backendDefaults": {"clientPolicy": {"tls": {"validation": trust_ca}}},
            },
        )
        target = {"target": {"virtualService": {"virtualServiceName": host("open")}}}
        appmesh.create_gateway_route(
            meshName=MESH,
            virtualGatewayName="edge",
            gatewayRouteName="to-open",
            spec={"httpRoute": {"match": {"prefix": "/"}, "action": target}},
        )
        started = time.monotonic()
        proxies = {name: running.proxy(name) for name in ("teller", "open")}
        live_seconds = time.monotonic() - started
        proxies["front"] = running.proxy("front")
        proxies["edge"] = running.proxy("edge", kind="virtualGateway")
        yield {
            "endpoint": server.endpoint,
            "account": account,
            "appmesh": appmesh,
            "acm": acm,
            "ca": ca,
            "ca_pem": ca_pem(pca, ca),
            "arns": arns,
            "front_files": front_files,
            "proxies": proxies,
            "folder": folder,
            "live_seconds": live_seconds,
            "gateway_port": gateway_port,
        }
    finally:
        running.close()


def wait_for(check, timeout: float = 20.0):
    """The harness's, with the longer wait ACM's export and SDS push may need."""
    return harness.wait_for(check, timeout)


def cluster_ssl(proxy: Proxy, target: str, name: str) -> int:
    return cluster_stat(proxy, target, f"ssl.{name}")


def test_the_sidecars_start_live_with_their_acm_certificates(mesh):
    proxies = mesh["proxies"]
    for name in ("teller", "open", "front"):
        rejected = [p for p in proxies_of_node(mesh, name) if p["rejected"]]
        assert not rejected, f"{name} rejected its config: {rejected}"
    context = client_context(mesh["ca_pem"])
    assert subject(peer(proxies["open"].ingress, context))["commonName"] == host("open")
    print(f"two ACM sidecars LIVE, certificates held, {mesh['live_seconds']:.2f} s after start")


def proxies_of_node(mesh, name: str) -> list[dict]:
    arn = f"arn:aws:appmesh:us-east-1:{mesh['account']}:mesh/{MESH}/virtualNode/{name}"
    return [p for p in proxies_of(mesh["endpoint"], mesh["account"]) if p["nodeId"] == arn]


def test_traffic_flows_over_tls_through_two_sidecars(mesh):
    front, opened = mesh["proxies"]["front"], mesh["proxies"]["open"]
    before = opened.ingress_ssl("handshake")
    status, _, body = wait_for(
        lambda: (r := get(front.egress, "/color", host("open")))[0] == 200 and r
    )
    assert (status, body) == (200, "open")
    assert opened.ingress_ssl("handshake") > before
    assert cluster_ssl(front, "open", "handshake") >= 1


def test_health_checks_reach_a_tls_backend_over_tls(mesh):
    """``open``'s listener health check becomes active checks in ``front``'s cluster
    toward it, run over that cluster's TLS (trusting the ACM PCA CA), as Envoy does."""
    front = mesh["proxies"]["front"]
    assert wait_for(lambda: cluster_stat(front, "open", "health_check.success") >= 1)
    assert cluster_stat(front, "open", "health_check.network_failure") == 0
    assert cluster_stat(front, "open", "membership_healthy") == 1


def cluster_stat(proxy: Proxy, target: str, name: str) -> int:
    prefix = f"cluster.cds_egress_{MESH}_{target}_http_"
    stats = proxy.admin_get("/stats").splitlines()
    found = [
        line
        for line in stats
        if line.startswith(prefix) and line.partition(": ")[0].endswith("." + name)
    ]
    return sum(int(line.rpartition(": ")[2]) for line in found)


def test_mutual_tls_with_a_client_certificate_exported_from_acm(mesh):
    front, teller = mesh["proxies"]["front"], mesh["proxies"]["teller"]
    status, _, body = wait_for(
        lambda: (r := get(front.egress, "/color", host("teller")))[0] == 200 and r
    )
    assert (status, body) == (200, "teller")
    assert teller.ingress_ssl("handshake") >= 1
    # Without a client certificate the STRICT mutual listener refuses the handshake.
    before = teller.ingress_ssl("fail_verify_no_cert")
    assert refused(teller.ingress, client_context(mesh["ca_pem"]), "teller")
    assert wait_for(lambda: teller.ingress_ssl("fail_verify_no_cert") > before)
    with_cert = client_context(mesh["ca_pem"], mesh["front_files"])
    assert https_get(teller.ingress, with_cert, "teller").endswith(b"teller")


def https_get(port: int, context: ssl.SSLContext | None, name: str) -> bytes:
    """One GET over a new connection (TLS with ``context``, else plaintext)."""
    return tls_helpers.exchange(port, context, host(name))[1]


def refused(port: int, context: ssl.SSLContext | None, name: str) -> bool:
    return tls_helpers.refused(port, context, host(name))


def test_a_gateway_terminates_tls_with_its_acm_certificate_and_originates_tls(mesh):
    """tls-with-acm at the edge: the gateway's STRICT listener serves its ACM
    certificate, and its backendDefaults trust the ACM PCA CA toward ``open``."""
    edge, port = mesh["proxies"]["edge"], mesh["gateway_port"]
    context = client_context(mesh["ca_pem"])
    assert subject(peer(port, context))["commonName"] == host("edge")
    reply = wait_for(lambda: (r := https_get(port, context, "edge")).endswith(b"open") and r)
    assert reply.startswith(b"HTTP/1.1 200")
    assert edge.stat(f"listener.127.0.0.1_{port}.ssl.handshake") >= 2
    assert cluster_ssl(edge, "open", "handshake") >= 1
    assert refused(port, None, "edge")


def test_a_plaintext_client_is_refused(mesh):
    opened = mesh["proxies"]["open"]
    assert refused(opened.ingress, None, "open")
    assert https_get(opened.ingress, client_context(mesh["ca_pem"]), "open").endswith(b"open")


def test_a_renewed_certificate_is_served_to_new_connections(mesh):
    acm, opened = mesh["acm"], mesh["proxies"]["open"]
    context = client_context(mesh["ca_pem"])
    kept = context.wrap_socket(socket.create_connection(("127.0.0.1", opened.ingress), timeout=5))
    old = kept.getpeercert()["serialNumber"]
    renewed = time.monotonic()
    acm.renew_certificate(CertificateArn=mesh["arns"]["open"])
    assert wait_for(lambda: peer(opened.ingress, context)["serialNumber"] != old, timeout=20)
    print(f"renewed ACM certificate served by the sidecar {time.monotonic() - renewed:.2f} s later")
    reply = get_on(kept, host("open"))
    kept.close()
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"open")
    front = mesh["proxies"]["front"]
    assert get(front.egress, "/color", host("open"))[:3:2] == (200, "open")


def test_the_admin_config_dump_carries_no_private_key(mesh):
    for proxy in mesh["proxies"].values():
        assert "PRIVATE KEY" not in proxy.admin_get("/config_dump")


def self_signed(name: str) -> tuple[bytes, bytes]:
    """(certificate, key) PEM of a self-signed certificate, to import into ACM."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), pem_key


def test_a_certificate_acm_cannot_export_is_not_delivered_and_logged_once(mesh, server):
    appmesh, acm, account = mesh["appmesh"], mesh["acm"], mesh["account"]
    certificate, key = self_signed(host("imported"))
    imported = acm.import_certificate(Certificate=certificate, PrivateKey=key)["CertificateArn"]
    missing = f"arn:aws:acm:us-east-1:{account}:certificate/00000000-0000-0000-0000-000000000000"
    reasons = {
        imported: f"Certificate ARN: {imported} is not a private certificate",
        missing: "ResourceNotFoundException",
    }
    for name, arn in (("imported", imported), ("missing", missing)):
        tls = {"mode": "STRICT", "certificate": {"acm": {"certificateArn": arn}}}
        appmesh.create_virtual_node(
            meshName=MESH, virtualNodeName=name, spec=node_spec(8080, name, tls)
        )
        node = f"arn:aws:appmesh:us-east-1:{account}:mesh/{MESH}/virtualNode/{name}"
        document = {"node": {"id": node, "cluster": node}, "resource_names": [arn]}
        request = xds_request(f"{server.endpoint}/v3/discovery:secrets", document)
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert json.loads(reply.read())["resources"] == []
    for arn, reason in reasons.items():
        line = f"ACM {arn}: not delivered to the proxies: "
        assert wait_for(lambda line=line: line in server.log()), f"no log line for {arn}"
        found = [text for text in server.log().splitlines() if line in text]
        assert reason in found[0]
    time.sleep(5.5)  # a refresh later, the same reason is not logged again
    for arn in reasons:
        line = f"ACM {arn}: not delivered to the proxies: "
        assert sum(line in text for text in server.log().splitlines()) == 1


def test_a_newly_issued_certificate_named_by_an_update_reaches_the_sidecar(mesh):
    """Issue a certificate, point ``open``'s listener at it: the control plane exports it
    at once (a new ARN is fetched without waiting for the refresh) and pushes it."""
    appmesh, acm, opened = mesh["appmesh"], mesh["acm"], mesh["proxies"]["open"]
    context = client_context(mesh["ca_pem"])
    old = peer(opened.ingress, context)["serialNumber"]
    issued = time.monotonic()
    arn = request_private(acm, mesh["ca"], host("open"))
    spec = appmesh.describe_virtual_node(meshName=MESH, virtualNodeName="open")
    spec = spec["virtualNode"]["spec"]
    spec["listeners"][0]["tls"]["certificate"] = {"acm": {"certificateArn": arn}}
    appmesh.update_virtual_node(meshName=MESH, virtualNodeName="open", spec=spec)
    assert wait_for(lambda: peer(opened.ingress, context)["serialNumber"] != old)
    print(
        f"new ACM certificate served by the sidecar {time.monotonic() - issued:.2f} s after issue"
    )
    front = mesh["proxies"]["front"]
    assert get(front.egress, "/color", host("open"))[:3:2] == (200, "open")
