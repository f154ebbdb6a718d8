"""The colorapp mesh of ``appmesh-local up --example colorapp``, as a CDK app in Python.

Deploy it to appmesh-local with the unmodified CDK CLI (see README.md beside this file):
three ``colorteller-*`` virtual nodes behind the ``colorteller`` router, whose route
weighs them, the ``colorteller.mesh.local`` virtual service, and the ``colorgateway``
node that calls it. Each node's listener port is distinct, so the apps and sidecars can
all run on one machine; ``appmesh-local up --mesh colorapp`` then runs the sidecars.

Context (``cdk deploy -c key=value``): ``mesh`` names the mesh (default ``colorapp``),
``weights`` the route's weights as ``white:blue:black`` (default ``1:1:1``).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_appmesh as appmesh
from constructs import Construct

TELLERS = {"white": 9081, "blue": 9082, "black": 9083}
GATEWAY_PORT = 9080
ROUTER_PORT = 9080
TELLER_SERVICE = "colorteller.mesh.local"


class ColorAppStack(cdk.Stack):
    """The mesh, its nodes, the router with its weighted route, and the virtual services."""

    def __init__(
        self, scope: Construct, stack_id: str, mesh_name: str, weights: list[int], **kwargs
    ) -> None:
        super().__init__(scope, stack_id, **kwargs)
        mesh = appmesh.Mesh(
            self, "Mesh", mesh_name=mesh_name, egress_filter=appmesh.MeshFilterType.DROP_ALL
        )
        tellers = [self._teller(mesh, color, port) for color, port in TELLERS.items()]
        router = mesh.add_virtual_router(
            "Router",
            virtual_router_name="colorteller",
            listeners=[appmesh.VirtualRouterListener.http(ROUTER_PORT)],
        )
        # add_route names the route after its construct id (route_name is ignored there).
        router.add_route(
            "colorteller-route",
            route_spec=appmesh.RouteSpec.http(
                match=appmesh.HttpRouteMatch(path=appmesh.HttpRoutePathMatch.starts_with("/")),
                weighted_targets=[
                    appmesh.WeightedTarget(virtual_node=node, weight=weight)
                    for node, weight in zip(tellers, weights, strict=True)
                ],
            ),
        )
        service = appmesh.VirtualService(
            self,
            "ColorTellerService",
            virtual_service_name=TELLER_SERVICE,
            virtual_service_provider=appmesh.VirtualServiceProvider.virtual_router(router),
        )
        mesh.add_virtual_node(
            "ColorGateway",
            virtual_node_name="colorgateway",
            service_discovery=appmesh.ServiceDiscovery.dns("colorgateway.mesh.local"),
            listeners=[appmesh.VirtualNodeListener.http(port=GATEWAY_PORT)],
            backends=[appmesh.Backend.virtual_service(service)],
        )
        cdk.CfnOutput(self, "MeshName", value=mesh.mesh_name)

    def _teller(self, mesh: appmesh.Mesh, color: str, port: int) -> appmesh.VirtualNode:
        return mesh.add_virtual_node(
            f"ColorTeller{color.title()}",
            virtual_node_name=f"colorteller-{color}",
            service_discovery=appmesh.ServiceDiscovery.dns(f"colorteller-{color}.mesh.local"),
            listeners=[appmesh.VirtualNodeListener.http(port=port)],
        )


def main() -> None:
    app = cdk.App()
    mesh_name = app.node.try_get_context("mesh") or "colorapp"
    weights = [int(w) for w in str(app.node.try_get_context("weights") or "1:1:1").split(":")]
    if len(weights) != len(TELLERS):
        raise SystemExit(f"weights: {len(TELLERS)} numbers (white:blue:black), got {weights}")
    ColorAppStack(
        app,
        "ColorApp",
        mesh_name=mesh_name,
        weights=weights,
        env=cdk.Environment(
            account=app.node.try_get_context("account") or None,
            region=app.node.try_get_context("region") or None,
        ),
    )
    app.synth()


if __name__ == "__main__":
    main()
