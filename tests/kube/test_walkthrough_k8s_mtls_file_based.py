"""aws-app-mesh-examples' howto-k8s-mtls-file-based, with traffic, as its README runs it.

Step 2: ``mtls/certs.sh`` makes two CAs; ``front`` and ``colorapp-blue`` are signed by
CA 1, ``colorapp-green`` by CA 2, each leaf with its service's DNS name as CN and SAN
(``front.NS.svc.cluster.local``, ``color-blue...``, ``color-green...``), plus the CA 1 +
CA 2 bundle; made here with ``cryptography`` (``tests/mesh/walkthrough_local.Keys``).
``mtls/deploy.sh`` puts them in four secrets: ``front-ca1-tls`` and
``front-ca1-ca2-tls`` (front's key and chain with CA 1, or with the bundle),
``colorapp-blue-tls`` and ``colorapp-green-tls`` (the app's key and chain, and CA 1,
which signed the front's certificate the backends validate).

Step 3: ``mesh.sh up`` renders the manifest (``FRONT_APP_CA_CERT=ca_1_cert.pem``,
``FRONT_APP_K8S_SECRET=front-ca1-tls``) and applies it: here through ``appmesh-local
kube apply`` against the running ``serve``, then the pods start (blue, green and red
color apps, then front), each with a real ``appmesh-proxy`` sidecar for the virtual node
the controller made. The front's health checks pass for blue only: green's certificate
is signed by CA 2, which the front does not trust, and red has no TLS at all.

Step 4: the front reaches blue (its egress to blue is mutual TLS: blue's listener
requires a certificate signed by CA 1 with the front's SAN) and blue's listener counts
``ssl.handshake``; green is refused (503) and the front's green cluster counts
``ssl.fail_verify_error``; ``mesh.sh addGreen`` renders the front with the CA bundle
and the ``front-ca1-ca2-tls`` secret, the pod is replaced, and green answers, its
listener counting ``ssl.handshake``.

Not as in the walkthrough: the pods' ``/certs/`` secret mounts are folders named in
the rendered manifest (why: ``tests/kube/walkthrough_pods.py``); the front app is
``front_app.py`` sending to its sidecar's egress port, as iptables did; color apps are
``tests/mesh/color_app.py``.
"""

from __future__ import annotations

import ssl

import pytest

from tests.kube.test_walkthroughs import render
from tests.kube.walkthrough_pods import Cluster, openssl_verify
from tests.mesh.tls_helpers import refused
from tests.mesh.walkthrough_local import Keys
from tests.mesh.walkthrough_tasks import until

NS = "howto-k8s-mtls-file-based"
# mesh.sh's actions: FRONT_APP_CA_CERT and FRONT_APP_K8S_SECRET
ACTIONS = {
    "up": {"FRONT_APP_CA_CERT": "ca_1_cert.pem", "FRONT_APP_K8S_SECRET": "front-ca1-tls"},
    "addGreen": {
        "FRONT_APP_CA_CERT": "ca_1_ca_2_bundle.pem",
        "FRONT_APP_K8S_SECRET": "front-ca1-ca2-tls",
    },
}


def mesh_sh(cluster: Cluster, action: str) -> str:
    """``mesh.sh ACTION``: the manifest rendered for the action, applied."""
    return cluster.apply(render("mtls-file-based", **ACTIONS[action]))


def certs_sh(folder) -> None:
    keys = Keys(folder)
    keys.ca("ca_1")
    keys.ca("ca_2")
    keys.leaf("front", f"front.{NS}.svc.cluster.local", "ca_1")
    keys.leaf("colorapp-blue", f"color-blue.{NS}.svc.cluster.local", "ca_1")
    keys.leaf("colorapp-green", f"color-green.{NS}.svc.cluster.local", "ca_2")
    keys.bundle("ca_1", "ca_2")


def deploy_sh(cluster: Cluster, mtls) -> None:
    """``deployAppSecret NAME CERT CA``: ``NAME-tls`` with CERT's key and chain, and CA."""
    for name, cert, ca in [
        ("front-ca1", "front", "ca_1_cert"),
        ("front-ca1-ca2", "front", "ca_1_ca_2_bundle"),
        ("colorapp-blue", "colorapp-blue", "ca_1_cert"),
        ("colorapp-green", "colorapp-green", "ca_1_cert"),
    ]:
        files = (f"{cert}_key.pem", f"{cert}_cert_chain.pem", f"{ca}.pem")
        cluster.create_secret(f"{name}-tls", mtls, *files)


@pytest.fixture(scope="module")
def cluster(server, tmp_path_factory):
    cluster = Cluster(server, tmp_path_factory.mktemp("k8s-mtls"), NS)
    certs_sh(cluster.tmp / "mtls")
    deploy_sh(cluster, cluster.tmp / "mtls")
    try:
        mesh_sh(cluster, "up")
        for version in ("blue", "green", "red"):
            cluster.start_color(version)
        cluster.start_front()
        yield cluster
    finally:
        cluster.mesh.close()


def test_step2_blue_is_signed_by_ca_1_and_green_by_ca_2(cluster):
    """``openssl verify -CAfile mtls/ca_1_cert.pem mtls/colorapp-blue_cert.pem``, and the
    secrets hold what deploy.sh put in them (``ls /certs/`` in green's Envoy)."""
    mtls = cluster.tmp / "mtls"
    assert openssl_verify(mtls / "ca_1_cert.pem", mtls / "colorapp-blue_cert.pem")
    assert not openssl_verify(mtls / "ca_1_cert.pem", mtls / "colorapp-green_cert.pem")
    assert openssl_verify(mtls / "ca_2_cert.pem", mtls / "colorapp-green_cert.pem")
    listed = sorted(p.name for p in (cluster.secrets / "colorapp-green-tls").iterdir())
    assert listed == ["ca_1_cert.pem", "colorapp-green_cert_chain.pem", "colorapp-green_key.pem"]


def test_step3_the_fronts_health_checks_pass_for_blue_only(cluster):
    """The README's ``/clusters`` grep: blue healthy, green and red ``failed_active_hc``
    (green's certificate does not verify against CA 1; red answers no TLS)."""
    assert until(lambda: cluster.health("front", "blue") == {"blue": "healthy"})
    assert until(lambda: cluster.cluster_ssl("front", "green", "fail_verify_error") >= 1)
    assert cluster.health("front", "blue", "green", "red") == {
        "blue": "healthy",
        "green": "/failed_active_hc",
        "red": "/failed_active_hc",
    }


def test_step4_front_reaches_blue_over_mutual_tls(cluster):
    assert until(lambda: cluster.curl("blue") == (200, "blue")), cluster.curl("blue")
    assert cluster.pods["blue"].sidecar.ingress_ssl("handshake") >= 1  # grep ssl.handshake
    assert cluster.cluster_ssl("front", "blue", "handshake") >= 1


def test_step4_blue_refuses_a_client_without_a_certificate(cluster):
    """Not a README step: what makes blue's TLS mutual. A client that trusts blue but
    shows no certificate gets no answer, and blue counts it."""
    context = ssl.create_default_context(cafile=str(cluster.tmp / "mtls" / "ca_1_cert.pem"))
    context.check_hostname = False
    blue = cluster.pods["blue"].sidecar
    assert refused(blue.ingress, context, f"color-blue.{NS}.svc.cluster.local")
    assert until(lambda: blue.ingress_ssl("fail_verify_no_cert") >= 1)


def test_step4_green_is_refused_while_the_front_trusts_ca_1_only(cluster):
    status, body = cluster.curl("green")
    assert status == 503, body
    assert cluster.cluster_ssl("front", "green", "fail_verify_error") >= 1
    assert cluster.pods["green"].sidecar.ingress_ssl("handshake") == 0


def test_step4_add_green_trusts_both_cas_and_green_answers(cluster):
    """``SKIP_IMAGES=1 ./mesh.sh addGreen``: the front's virtual node names the bundle,
    its Deployment mounts ``front-ca1-ca2-tls``, so its pod is replaced."""
    applied = mesh_sh(cluster, "addGreen")
    assert "virtualnode.appmesh.k8s.aws/front configured" in applied, applied
    cluster.replace_front()
    assert until(lambda: cluster.curl("green") == (200, "green")), cluster.curl("green")
    assert cluster.pods["green"].sidecar.ingress_ssl("handshake") >= 1
    assert cluster.cluster_ssl("front", "green", "handshake") >= 1
    assert cluster.curl("blue") == (200, "blue")
    # not a README step: the new front's health checks now pass for green too
    assert until(lambda: cluster.health("front", "green") == {"green": "healthy"})
