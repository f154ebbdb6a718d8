"""Rules for the specs of meshes, virtual nodes, routers, services and gateways."""

from __future__ import annotations

from appmesh_api.rules.common import (
    Spec,
    check_client_policy,
    check_duration,
    check_kind_matches,
    check_listener_common,
    check_logging,
    check_timeout,
    check_unique_ports,
    fail,
    item,
)


def check_mesh_spec(spec: dict) -> None:
    """A mesh spec (egress filter, IP preference) is fully covered by the model's enums."""


def check_virtual_service_spec(spec: dict) -> None:
    """The provider is a model union (and may be absent); its existence is the store's check."""


def check_virtual_node_spec(spec: dict) -> None:
    """Listeners must agree with their own health checks, pools and timeouts."""
    listeners = spec.get("listeners") or []
    if listeners and spec.get("serviceDiscovery") is None:
        # [M] "If you specify a listener, then you must specify service discovery information."
        fail("spec.serviceDiscovery", "Service discovery must be specified when a listener is.")
    check_unique_ports(listeners, "spec.listeners")
    for index, listener in enumerate(listeners):
        where = item("spec.listeners", index)
        check_listener_common(listener, where)
        protocol = listener["portMapping"]["protocol"]
        check_kind_matches(listener.get("timeout"), protocol, f"{where}.timeout", "timeout")
        for kind, timeout in (listener.get("timeout") or {}).items():
            check_timeout(timeout, f"{where}.timeout.{kind}")
        outlier = listener.get("outlierDetection") or {}
        for key in ("baseEjectionDuration", "interval"):
            check_duration(outlier.get(key), f"{where}.outlierDetection.{key}")
    dns = (spec.get("serviceDiscovery") or {}).get("dns")
    if dns is not None and not dns["hostname"]:
        fail("spec.serviceDiscovery.dns.hostname", "The DNS hostname must not be empty.")
    _check_backends(spec.get("backends") or [])
    check_client_policy(
        (spec.get("backendDefaults") or {}).get("clientPolicy"),
        "spec.backendDefaults.clientPolicy",
    )
    check_logging(spec.get("logging"), "spec.logging")


def _check_backends(backends: list[Spec]) -> None:
    """Each backend names a virtual service once (App Mesh used to merge duplicates silently)."""
    seen: set[str] = set()
    for index, backend in enumerate(backends):
        where = f"{item('spec.backends', index)}.virtualService"
        service = backend["virtualService"]
        name = service["virtualServiceName"]
        if not name:
            fail(f"{where}.virtualServiceName", "The virtual service name must not be empty.")
        if name in seen:
            fail(
                f"{where}.virtualServiceName",
                f"Virtual service {name} is listed as a backend more than once.",
            )
        seen.add(name)
        check_client_policy(service.get("clientPolicy"), f"{where}.clientPolicy")


def check_virtual_router_spec(spec: dict) -> None:
    """Router listeners only carry a port mapping; ports must be distinct."""
    check_unique_ports(spec.get("listeners") or [], "spec.listeners")


def check_virtual_gateway_spec(spec: dict) -> None:
    """Gateway listeners follow the node-listener rules; a gateway needs at least one."""
    listeners = spec.get("listeners") or []
    if not listeners:
        fail("spec.listeners", "A virtual gateway must have at least one listener.")
    check_unique_ports(listeners, "spec.listeners")
    for index, listener in enumerate(listeners):
        check_listener_common(listener, item("spec.listeners", index))
    check_client_policy(
        (spec.get("backendDefaults") or {}).get("clientPolicy"),
        "spec.backendDefaults.clientPolicy",
    )
    check_logging(spec.get("logging"), "spec.logging")
