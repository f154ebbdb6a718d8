"""aws-app-mesh-examples' howto-k8s-tls-file-based, with traffic, as its README runs it.

Step 2: ``tls/certs.sh`` makes two CAs; ``colorapp-blue`` is signed by CA 1 and
``colorapp-green`` by CA 2, each with its service's DNS name as CN and SAN
(``color-blue.NS.svc.cluster.local``, ``color-green...``), plus the CA 1 + CA 2 bundle;
made here with ``cryptography`` (``tests/mesh/walkthrough_local.Keys``).
``tls/deploy.sh`` puts them in four secrets: ``colorapp-blue-tls`` and
``colorapp-green-tls`` (the app's key and chain), ``ca1-cert-tls`` (CA 1) and
``ca1-ca2-bundle-tls`` (the bundle). The front has no certificate: this is one-way TLS.

Step 3: ``mesh.sh up`` renders the manifest (``FRONTEND_APP_CERT=ca1-cert-tls``,
``FRONTEND_CERT_CHAIN=ca_1_cert.pem``) and applies it: here through ``appmesh-local
kube apply`` against the running ``serve``, then the pods start (blue, green and red
color apps, then front), each with a real ``appmesh-proxy`` sidecar for the virtual node
the controller made.

Step 4: the front reaches blue over TLS and blue's listener counts ``ssl.handshake``
(and ``ssl.no_certificate``: the front shows none); green is refused (503: its
certificate is signed by CA 2, which the front does not trust); ``mesh.sh addGreen``
renders the front with the bundle and the ``ca1-ca2-bundle-tls`` secret, the pod is
replaced, and green answers.

Not as in the walkthrough: the pods' ``/certs/`` secret mounts are folders named in
the rendered manifest (why: ``tests/kube/walkthrough_pods.py``); the front app is
``front_app.py`` sending to its sidecar's egress port, as iptables did; color apps are
``tests/mesh/color_app.py``.
"""

from __future__ import annotations

import pytest

from tests.kube.test_walkthroughs import render
from tests.kube.walkthrough_pods import Cluster, openssl_verify
from tests.mesh.walkthrough_local import Keys
from tests.mesh.walkthrough_tasks import until

NS = "howto-k8s-tls-file-based"
# mesh.sh's actions: FRONTEND_APP_CERT (the front's secret) and FRONTEND_CERT_CHAIN
ACTIONS = {
    "up": {"FRONTEND_APP_CERT": "ca1-cert-tls", "FRONTEND_CERT_CHAIN": "ca_1_cert.pem"},
    "addGreen": {
        "FRONTEND_APP_CERT": "ca1-ca2-bundle-tls",
        "FRONTEND_CERT_CHAIN": "ca_1_ca_2_bundle.pem",
    },
}


def mesh_sh(cluster: Cluster, action: str) -> str:
    """``mesh.sh ACTION``: the manifest rendered for the action, applied."""
    return cluster.apply(render("tls-file-based", **ACTIONS[action]))


def certs_sh(folder) -> None:
    keys = Keys(folder)
    keys.ca("ca_1")
    keys.ca("ca_2")
    keys.leaf("colorapp-blue", f"color-blue.{NS}.svc.cluster.local", "ca_1")
    keys.leaf("colorapp-green", f"color-green.{NS}.svc.cluster.local", "ca_2")
    keys.bundle("ca_1", "ca_2")


def deploy_sh(cluster: Cluster, tls) -> None:
    """``deployAppSecret NAME`` (key and chain) and ``deployGenericSecret NAME FILE``."""
    for app in ("colorapp-blue", "colorapp-green"):
        cluster.create_secret(f"{app}-tls", tls, f"{app}_key.pem", f"{app}_cert_chain.pem")
    cluster.create_secret("ca1-ca2-bundle-tls", tls, "ca_1_ca_2_bundle.pem")
    cluster.create_secret("ca1-cert-tls", tls, "ca_1_cert.pem")


@pytest.fixture(scope="module")
def cluster(server, tmp_path_factory):
    cluster = Cluster(server, tmp_path_factory.mktemp("k8s-tls"), NS)
    certs_sh(cluster.tmp / "tls")
    deploy_sh(cluster, cluster.tmp / "tls")
    try:
        mesh_sh(cluster, "up")
        for version in ("blue", "green", "red"):
            cluster.start_color(version)
        cluster.start_front()
        yield cluster
    finally:
        cluster.mesh.close()


def test_step2_blue_is_signed_by_ca_1_and_green_by_ca_2(cluster):
    """``openssl verify -CAfile tls/ca_1_cert.pem tls/colorapp-blue_cert.pem``, and
    ``ls /certs/`` in green's Envoy: its secret's two files."""
    tls = cluster.tmp / "tls"
    assert openssl_verify(tls / "ca_1_cert.pem", tls / "colorapp-blue_cert.pem")
    assert not openssl_verify(tls / "ca_1_cert.pem", tls / "colorapp-green_cert.pem")
    assert openssl_verify(tls / "ca_2_cert.pem", tls / "colorapp-green_cert.pem")
    listed = sorted(p.name for p in (cluster.secrets / "colorapp-green-tls").iterdir())
    assert listed == ["colorapp-green_cert_chain.pem", "colorapp-green_key.pem"]


def test_step4_front_reaches_blue_over_tls(cluster):
    assert until(lambda: cluster.curl("blue") == (200, "blue")), cluster.curl("blue")
    blue = cluster.pods["blue"].sidecar
    assert blue.ingress_ssl("handshake") >= 1  # grep ssl.handshake
    assert blue.ingress_ssl("no_certificate") >= 1  # one-way: the front shows none
    assert cluster.cluster_ssl("front", "blue", "handshake") >= 1


def test_step4_green_is_refused_while_the_front_trusts_ca_1_only(cluster):
    status, body = cluster.curl("green")
    assert status == 503, body
    assert cluster.cluster_ssl("front", "green", "fail_verify_error") >= 1
    assert cluster.pods["green"].sidecar.ingress_ssl("handshake") == 0


def test_step4_add_green_trusts_both_cas_and_green_answers(cluster):
    """``SKIP_IMAGES=1 ./mesh.sh addGreen``: the front's virtual node names the bundle,
    its Deployment mounts ``ca1-ca2-bundle-tls``, so its pod is replaced."""
    applied = mesh_sh(cluster, "addGreen")
    assert "virtualnode.appmesh.k8s.aws/front configured" in applied, applied
    cluster.replace_front()
    assert until(lambda: cluster.curl("green") == (200, "green")), cluster.curl("green")
    assert cluster.pods["green"].sidecar.ingress_ssl("handshake") >= 1
    assert cluster.cluster_ssl("front", "green", "handshake") >= 1
    assert cluster.curl("blue") == (200, "blue")
