"""aws-app-mesh-examples' tls-with-acm, run as its README runs it.

Step 2's aws CLI commands make a private root CA in the embedded ACM PCA (create it,
sign its CSR with itself, import the certificate, let ACM renew) and request
``*.default.svc.cluster.local`` from ACM; ``mesh/mesh.sh`` deploys its
``mesh/mesh.yaml`` (copied unmodified in ``walkthroughs/tls-with-acm/``) through our
CloudFormation with those two ARNs. The white teller's STRICT listener serves the ACM
certificate (exported by the control plane, sent as an SDS secret) and the gateway's
``backendDefaults`` trust the CA by ARN. The README's checks: ``/color`` through the
gateway is white, and ``ssl.handshake`` on the teller's listener; and (ours) a
plaintext client is refused and the gateway's cluster counts its handshakes.

Not as in the walkthrough (see ``walkthrough_local.py``): the proxies and the teller
run as processes on this host (the teller on port 80 of its own loopback address),
not as its ECS service.
"""

from __future__ import annotations

import json
import ssl

import pytest

from tests.api.test_aws_cli import run_aws_in_process
from tests.mesh.tls_helpers import peer, reply_or_nothing, subject
from tests.mesh.walkthrough_local import LocalWorld
from tests.mesh.walkthrough_tasks import HERE, http, until

MESH, DOMAIN, ENVIRONMENT = "ColorApp-TLS", "default.svc.cluster.local", "AppMeshTLSExample"


class World(LocalWorld):
    def aws(self, *args: str) -> str:
        done = run_aws_in_process(self.server, self.account, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


def step2_certificates(world: World) -> tuple[str, str]:
    """README step 2, command by command (the in-process CLI is v1: no base64 steps)."""
    configuration = (
        "KeyAlgorithm=RSA_2048,SigningAlgorithm=SHA256WITHRSA,Subject={Country=US,State=WA,"
        "Locality=Seattle,Organization=App Mesh Examples,OrganizationalUnit=TLS Example,"
        f"CommonName={DOMAIN}}}"
    )
    text = ("--output", "text")
    ca = world.aws("acm-pca", "create-certificate-authority", "--certificate-authority-type",
                   "ROOT", "--certificate-authority-configuration", configuration,
                   "--query", "CertificateAuthorityArn", *text)  # fmt: skip
    csr = world.aws("acm-pca", "get-certificate-authority-csr", "--certificate-authority-arn",
                    ca, "--query", "Csr", *text)  # fmt: skip
    root = "arn:aws:acm-pca:::template/RootCACertificate/V1"
    issued = world.aws("acm-pca", "issue-certificate", "--certificate-authority-arn", ca,
                       "--template-arn", root, "--signing-algorithm", "SHA256WITHRSA",
                       "--validity", "Value=10,Type=YEARS", "--csr", csr,
                       "--query", "CertificateArn", *text)  # fmt: skip
    certificate = world.aws("acm-pca", "get-certificate", "--certificate-arn", issued,
                            "--certificate-authority-arn", ca,
                            "--query", "Certificate", *text)  # fmt: skip
    world.aws("acm-pca", "import-certificate-authority-certificate",
              "--certificate-authority-arn", ca, "--certificate", certificate)  # fmt: skip
    world.aws("acm-pca", "create-permission", "--certificate-authority-arn", ca,
              "--actions", "IssueCertificate", "GetCertificate", "ListPermissions",
              "--principal", "acm.amazonaws.com")  # fmt: skip
    arn = world.aws("acm", "request-certificate", "--domain-name", f"*.{DOMAIN}",
                    "--certificate-authority-arn", ca,
                    "--query", "CertificateArn", *text)  # fmt: skip
    return ca, arn


@pytest.fixture(scope="module")
def world(server, tmp_path_factory):
    world = World(server, tmp_path_factory.mktemp("tls-with-acm"), MESH)
    ca, certificate = step2_certificates(world)
    world.aws(
        "cloudformation", "deploy", "--stack-name", f"{ENVIRONMENT}-mesh",
        "--capabilities", "CAPABILITY_IAM",
        "--template-file", str(HERE / "tls-with-acm" / "mesh" / "mesh.yaml"),
        "--parameter-overrides", f"MeshName={MESH}", f"ServicesDomain={DOMAIN}",
        f"CertificateAuthorityArn={ca}", f"CertificateArn={certificate}",
    )  # fmt: skip
    world.ca = ca  # type: ignore[attr-defined]
    try:
        world.proxies["white"] = world.start_app("white", 80, "ColorTellerWhite")
        world.proxies["gateway"] = world.start_gateway("ColorGateway")
        yield world
    finally:
        world.mesh.close()


def test_step4_the_gateway_reaches_white_over_tls_with_the_acm_certificate(world):
    def color() -> str:
        status, body = http(f"http://{world.gateway_address}:80/color")
        return body if status == 200 else f"{status} {body}"

    assert until(lambda: color() == "white", timeout=45), color()
    white = world.proxies["white"]
    assert white.ingress_ssl("handshake") >= 1
    gateway_stats = world.proxies["gateway"].admin_get("/stats").splitlines()
    handshakes = [line for line in gateway_stats if "ColorTellerWhite" in line and
                  ".ssl.handshake: " in line and not line.endswith(": 0")]  # fmt: skip
    assert handshakes, [line for line in gateway_stats if ".ssl." in line]


def test_the_teller_serves_the_acm_certificate_and_refuses_plaintext(world):
    white = world.proxies["white"]
    chain = json.loads(
        world.aws(
            "acm-pca",
            "get-certificate-authority-certificate",
            "--certificate-authority-arn",
            world.ca,
        )
    )["Certificate"]
    context = ssl.create_default_context(cadata=chain)
    context.check_hostname = False
    assert subject(peer(white.ingress, context))["commonName"] == f"*.{DOMAIN}"
    reply = reply_or_nothing(white.ingress, None, f"colorteller.{DOMAIN}")
    assert reply == b"", reply
