"""aws-app-mesh-examples' howto-mutual-tls-file-provided, run as its README runs it.

Its ``mesh/mesh.sh`` actions are replayed in the README's order with its own JSON
files (copied in ``walkthroughs/howto-mutual-tls-file-provided/mesh/``), filled in with
``jq -n --arg ...`` exactly as the script fills them and sent with the aws CLI's
``--cli-input-json``: ``up`` (plain HTTP: ``yellow``, no handshake), then
``update_1_strict_tls`` (STRICT TLS on the teller, no client policy: still
``yellow``, ``ssl.handshake`` on both sides and ``ssl.no_certificate`` on the teller),
``update_2_client_policy_bad_san`` (503 and ``ssl.fail_verify_san`` on the gateway),
``update_3_client_policy_good_san`` (``yellow``), ``update_4_require_client_cert``
(503 and ``ssl.fail_verify_no_cert`` on the teller), ``update_5_client_cert`` (mutual
TLS: ``yellow``).

Not as in the walkthrough (see ``walkthrough_local.py``): its ECS services run custom
Envoy images, so the proxies run as ``appmesh-proxy`` processes and the teller as
``color_app.py`` on port 9080 of its own loopback address; the certificates are made
with ``cryptography`` as ``certs.sh`` made them, and after ``jq`` the specs' ``/keys/``
paths name a temporary folder.

When step 4 makes the teller's listener require a client certificate, the
connections the gateway opened before the update drain, as Envoy drains the
connections of a changed filter chain: each is answered once more with
``connection: close``, and the gateway's next connection is refused.
"""

from __future__ import annotations

import json
import ssl
import subprocess

import pytest

from tests.api.test_aws_cli import run_aws_in_process
from tests.mesh.tls_helpers import refused
from tests.mesh.walkthrough_local import Keys, LocalWorld
from tests.mesh.walkthrough_tasks import HERE, http, until

MESH, DOMAIN = "ColorApp-MutualTLS", "appmesh-mtls.local"
SPECS = HERE / "howto-mutual-tls-file-provided" / "mesh"
FAILED = "503 upstream connect error or disconnect/reset before headers"
CLUSTER = f"cluster.cds_egress_{MESH}_colorteller-vn_http_9080"


class World(LocalWorld):
    def __init__(self, server, tmp) -> None:
        super().__init__(server, tmp, MESH)
        self.keys = tmp / "keys"

    def send(self, command: str, spec: str, *names: str, **arguments: str) -> None:
        """One ``aws appmesh COMMAND`` of mesh.sh, its input made by ``jq -n --arg``."""
        jq = ["jq", "-n"]
        for key, value in arguments.items():
            jq += ["--arg", key, value]
        made = subprocess.run([*jq, "-f", str(SPECS / spec)], capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        document = json.dumps(json.loads(made.stdout.replace("/keys/", f"{self.keys}/")))
        done = run_aws_in_process(
            self.server, self.account, "appmesh", command, "--mesh-name", MESH, *names,
            "--cli-input-json", document,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def color(self, path: str = "/") -> str:
        status, body = http(f"http://{self.gateway_address}:9080{path}")
        return body if status == 200 else f"{status} {body}"


def teller(world: World, spec: str, san: str) -> None:
    node = ("--virtual-node-name", "colorteller-vn")
    world.send("update-virtual-node", spec, *node, SERVICES_DOMAIN=DOMAIN, GATEWAY_SAN=san)


def gateway(world: World, spec: str, san: str) -> None:
    name = ("--virtual-gateway-name", "gateway-vgw")
    world.send("update-virtual-gateway", spec, *name, COLOR_TELLER_SAN=san)


@pytest.fixture(scope="module")
def world(server, tmp_path_factory):
    world = World(server, tmp_path_factory.mktemp("howto-mutual-tls"))
    keys = Keys(world.keys)  # ./src/tlsCertificates/certs.sh
    keys.ca("ca")
    keys.leaf("gateway", f"gateway.{DOMAIN}", "ca")
    keys.leaf("colorteller", f"colorteller.{DOMAIN}", "ca")
    try:
        # ./mesh/mesh.sh up
        world.send("create-mesh", "mesh.json")
        node = ("--virtual-node-name", "colorteller-vn")
        world.send("create-virtual-node", "colorteller-vn.json", *node, SERVICES_DOMAIN=DOMAIN)
        service = ("--virtual-service-name", f"colorteller.{DOMAIN}")
        world.send("create-virtual-service", "colorteller-vs.json", *service)
        vgw = ("--virtual-gateway-name", "gateway-vgw")
        world.send("create-virtual-gateway", "gateway-vgw.json", *vgw)
        route = ("--gateway-route-name", "colorteller-route", *vgw)
        world.send("create-gateway-route", "colorteller-gwroute.json", *route,
                   VIRTUAL_SERVICE=f"colorteller.{DOMAIN}")  # fmt: skip
        world.proxies["teller"] = world.start_app("yellow", 9080, "colorteller-vn")
        world.proxies["gateway"] = world.start_gateway("gateway-vgw")
        yield world
    finally:
        world.mesh.close()


def listener_ssl(world: World, name: str) -> int:
    return world.proxies["teller"].ingress_ssl(name)


def test_part1_plain_http_answers_yellow_without_tls(world):
    assert until(lambda: world.color() == "yellow", timeout=30), world.color()
    assert listener_ssl(world, "handshake") == 0  # "You won't see any results"


def test_step1_strict_tls_with_no_client_policy_still_answers(world):
    teller(world, "updates/colorteller-vn-strict-tls.json", f"gateway.{DOMAIN}")
    assert until(lambda: world.color() == "yellow" and listener_ssl(world, "handshake") >= 1)
    assert world.proxies["gateway"].stat(f"{CLUSTER}.ssl.handshake") >= 1
    assert listener_ssl(world, "no_certificate") >= 1


def test_step2_a_bad_san_in_the_client_policy_fails(world):
    gateway(world, "updates/gateway-vgw-client-policy.json", f"bogus.{DOMAIN}")
    assert until(lambda: world.color().startswith(FAILED)), world.color()
    assert world.proxies["gateway"].stat(f"{CLUSTER}.ssl.fail_verify_san") >= 1


def test_step3_the_right_san_answers_again(world):
    gateway(world, "updates/gateway-vgw-client-policy.json", f"colorteller.{DOMAIN}")
    assert until(lambda: world.color() == "yellow"), world.color()


def test_step4_requiring_a_client_certificate_fails_the_gateway(world):
    """New connections fail, and the gateway's pooled ones, opened before the update,
    are drained (one more answer with ``connection: close``), so plain sequential
    requests soon fail too."""
    teller(world, "updates/colorteller-vn-strict-validation.json", f"gateway.{DOMAIN}")
    # first the update is live: a client without a certificate is refused
    assert until(lambda: refused_without_certificate(world)), "no client certificate asked"
    assert listener_ssl(world, "fail_verify_no_cert") >= 1
    assert until(lambda: world.color().startswith(FAILED)), world.color()
    assert world.proxies["teller"].stat("listener_manager.listener_in_place_updated") >= 1


def refused_without_certificate(world: World) -> bool:
    context = ssl.create_default_context(cafile=str(world.keys / "ca_cert.pem"))
    context.check_hostname = False
    return refused(world.proxies["teller"].ingress, context, "colorteller")


def test_step5_the_gateways_client_certificate_makes_it_mutual(world):
    gateway(world, "updates/gateway-vgw-client-cert.json", f"colorteller.{DOMAIN}")
    assert until(lambda: world.color() == "yellow"), world.color()
    before = listener_ssl(world, "handshake")
    assert [world.color() for _ in range(5)] == ["yellow"] * 5
    assert listener_ssl(world, "handshake") >= before  # pooled connections, or new ones
