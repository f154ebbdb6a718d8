"""App Mesh's semantic rules: what botocore's model cannot express.

``protocol.parse_request`` has already checked types, required members, enums,
lengths, ranges and unions by the time these functions run, so they only check
relations *between* fields (a health-check port against its listener port, a
route kind against its router's listener protocol, ...). Each raises
``BadRequestException`` naming the offending field, e.g.
``spec.httpRoute.action.weightedTargets: ...``; list items are named as in
``protocol`` (``spec.listeners.1.member``) so both kinds of error read alike.

Sources are in /work/shared/reference/appmesh-semantics.md section 1.5; every rule
no source settled is marked ``Choice (UNCONFIRMED)``.
"""

from appmesh_api.rules.resources import (
    check_mesh_spec,
    check_virtual_gateway_spec,
    check_virtual_node_spec,
    check_virtual_router_spec,
    check_virtual_service_spec,
)
from appmesh_api.rules.routes import (
    check_gateway_listeners_against_routes,
    check_gateway_route_spec,
    check_route_spec,
    check_router_listeners_against_routes,
)

__all__ = [
    "check_gateway_listeners_against_routes",
    "check_gateway_route_spec",
    "check_mesh_spec",
    "check_route_spec",
    "check_router_listeners_against_routes",
    "check_virtual_gateway_spec",
    "check_virtual_node_spec",
    "check_virtual_router_spec",
    "check_virtual_service_spec",
]
