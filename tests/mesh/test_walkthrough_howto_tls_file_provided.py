"""aws-app-mesh-examples' howto-tls-file-provided, run as its README runs it.

Its ``mesh/mesh.yaml`` (copied in ``walkthroughs/howto-tls-file-provided/``) is
deployed through our CloudFormation with the aws CLI, with the parameters of each
``mesh.sh`` action in the README's order: ``up`` (the gateway reaches only the white
teller, STRICT TLS with its file certificate, no client policy: App Mesh's client
accepts any certificate), ``addGreen`` (both tellers, green's certificate from a
second CA), ``updateGateway`` (the gateway trusts only CA 1: green fails),
``updateGateway2`` (the CA bundle: both again). The README's checks: ``/color`` through
the gateway, ``ssl.handshake`` on the teller's ingress listener, and (ours) a
plaintext client refused by the STRICT listener.

Not as in the walkthrough (see ``walkthrough_local.py``): its ECS services run custom
Envoy images, so the sidecars and the gateway run here as ``appmesh-proxy``
processes, the tellers as ``color_app.py`` on port 80 of their own loopback
addresses; the certificates are made with ``cryptography`` as ``certs.sh`` made them,
and the template's ``/keys/`` paths name a temporary folder (the one change made to
the template before it is deployed).
"""

from __future__ import annotations

import collections

import pytest

from tests.api.test_aws_cli import run_aws_in_process
from tests.mesh.harness import Proxy
from tests.mesh.tls_helpers import reply_or_nothing
from tests.mesh.walkthrough_local import Keys, LocalWorld
from tests.mesh.walkthrough_tasks import HERE, http, until

MESH, DOMAIN, ENVIRONMENT = "ColorApp-TLS", "default.svc.cluster.local", "AppMeshTLSExample"
TEMPLATE = HERE / "howto-tls-file-provided" / "mesh" / "mesh.yaml"


class World(LocalWorld):
    def __init__(self, server, tmp) -> None:
        super().__init__(server, tmp, MESH)
        self.keys = tmp / "keys"
        self.template = tmp / "mesh.yaml"
        self.template.write_text(TEMPLATE.read_text().replace("/keys/", f"{self.keys}/"))

    def mesh_sh(self, green_weight: int, enforce: str, validation: str = "") -> None:
        """``mesh.sh``'s ``callCloudformation``: one ``aws cloudformation deploy``."""
        path = validation.replace("/keys/", f"{self.keys}/")
        done = run_aws_in_process(
            self.server, self.account, "cloudformation", "deploy",
            "--stack-name", f"{ENVIRONMENT}-mesh", "--capabilities", "CAPABILITY_IAM",
            "--template-file", str(self.template), "--parameter-overrides",
            f"MeshName={MESH}", f"ServicesDomain={DOMAIN}",
            f"ColorTellerGreenRouteWeight={green_weight}",
            f"EnableClientValidationFlag={enforce}", f"ColorGatewayTlsValidationPath={path}",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def color(self) -> str:
        status, body = http(f"http://{self.gateway_address}:80/color")
        return body if status == 200 else f"{status} {body}"

    def colors(self, count: int) -> collections.Counter:
        return collections.Counter(self.color() for _ in range(count))


@pytest.fixture(scope="module")
def world(server, tmp_path_factory):
    world = World(server, tmp_path_factory.mktemp("howto-tls-file-provided"))
    keys = Keys(world.keys)  # Step 2: ./src/tlsCertificates/certs.sh
    keys.ca("ca_1")
    keys.ca("ca_2")
    keys.leaf("colorteller_white", f"colorteller.{DOMAIN}", "ca_1")
    keys.leaf("colorteller_green", f"colorteller-green.{DOMAIN}", "ca_2")
    keys.bundle("ca_1", "ca_2")
    try:
        world.mesh_sh(0, "false")  # Step 4: ./mesh/mesh.sh up
        for name, node in (("white", "ColorTellerWhite"), ("green", "ColorTellerGreen")):
            world.proxies[name] = world.start_app(name, 80, node)
        world.proxies["gateway"] = world.start_gateway("ColorGateway")
        yield world
    finally:
        world.mesh.close()


def handshakes(proxy: Proxy) -> int:
    """``curl -s .../stats | grep ssl.handshake`` on the teller: its ingress listener."""
    return proxy.ingress_ssl("handshake")


def test_step5_the_gateway_reaches_white_over_tls(world):
    assert until(lambda: world.color() == "white", timeout=30), world.color()
    assert world.colors(10) == {"white": 10}
    assert handshakes(world.proxies["white"]) >= 1


def test_step5_the_strict_listener_refuses_plaintext(world):
    white = world.proxies["white"]
    reply = reply_or_nothing(white.ingress, None, f"colorteller.{DOMAIN}")
    assert reply == b"", reply


def test_step6_add_green_serves_both(world):
    world.mesh_sh(1, "false")  # ./mesh/mesh.sh addGreen
    assert until(lambda: "green" in world.colors(4), timeout=30), "green never served"
    seen = world.colors(40)
    assert set(seen) == {"white", "green"} and min(seen.values()) >= 8, seen
    assert handshakes(world.proxies["green"]) >= 1


def test_step7_trusting_only_ca_1_cuts_green_off(world):
    world.mesh_sh(1, "true", "/keys/ca_1_cert.pem")  # ./mesh/mesh.sh updateGateway
    failed = "503 upstream connect error or disconnect/reset before headers"
    assert until(lambda: any(c.startswith(failed) for c in world.colors(4)), timeout=30)
    seen = world.colors(40)
    assert seen["white"] >= 8, seen
    assert "green" not in seen and sum(seen.values()) - seen["white"] >= 8, seen


def test_step8_the_ca_bundle_restores_green(world):
    world.mesh_sh(1, "true", "/keys/ca_1_ca_2_bundle.pem")  # ./mesh/mesh.sh updateGateway2
    assert until(lambda: "green" in world.colors(4), timeout=30), "green never came back"
    seen = world.colors(40)
    assert set(seen) == {"white", "green"} and min(seen.values()) >= 8, seen
