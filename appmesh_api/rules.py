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

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from appmesh_api.errors import BadRequestException

Spec = Mapping[str, Any]

ROUTE_KINDS = {"httpRoute": "http", "http2Route": "http2", "grpcRoute": "grpc", "tcpRoute": "tcp"}
GATEWAY_ROUTE_KINDS = {"httpRoute": "http", "http2Route": "http2", "grpcRoute": "grpc"}
HTTP_RETRY_EVENTS = ("server-error", "gateway-error", "client-error", "stream-error")
RESERVED_PREFIXES = ("/aws-appmesh", "/aws-app-mesh")
_MAX_NAMES_LISTED = 5
_ARN = re.compile(r"^arn:[^:]+:[^:]+:[^:]*:[^:]*:.+$")


def _fail(where: str, text: str) -> NoReturn:
    raise BadRequestException(f"{where}: {text}")


def _present(obj: Spec, keys: Iterable[str]) -> list[str]:
    return [key for key in keys if obj.get(key) is not None]


def _item(where: str, index: int) -> str:
    """Name list item ``index`` (0-based) the way protocol.py does: ``x.1.member``."""
    return f"{where}.{index + 1}.member"


def _fields(keys: Iterable[str]) -> str:
    return ", ".join(keys)


def _check_duration(duration: Spec | None, where: str) -> None:
    """A Duration needs both members: a value without a unit means nothing.

    Choice (UNCONFIRMED): the model makes both optional; we require both.
    """
    if duration is not None and len(_present(duration, ("unit", "value"))) != 2:
        _fail(where, "A duration must specify both unit and value.")


def _check_timeout(timeout: Spec | None, where: str) -> None:
    for key in ("idle", "perRequest"):
        _check_duration((timeout or {}).get(key), f"{where}.{key}")


def _check_unique_ports(listeners: list[Spec], where: str) -> None:
    """Two listeners on one port could never both bind it."""
    seen: set[int] = set()
    for index, listener in enumerate(listeners):
        port = listener["portMapping"]["port"]
        if port in seen:
            _fail(
                f"{_item(where, index)}.portMapping.port",
                f"Port {port} is used by more than one listener; listener ports must be unique.",
            )
        seen.add(port)


def _check_health_check(check: Spec | None, port: int, where: str) -> None:
    """The model says the health-check port "must match the port defined in the PortMapping"."""
    if check is None:
        return
    if check.get("port") is not None and check["port"] != port:
        _fail(
            f"{where}.port",
            f"Health check port {check['port']} must match the listener port {port}.",
        )
    path = check.get("path")
    if check["protocol"] in ("http", "http2") and not path:
        # Choice (UNCONFIRMED in the model, which says path is "only used" for HTTP/HTTP2;
        # Terraform's docs call it required there): Envoy's HTTP health check needs one.
        _fail(f"{where}.path", f"A {check['protocol']} health check must specify a path.")
    if path is not None and not path.startswith("/"):
        _fail(f"{where}.path", f"Health check path must start with '/', got '{path}'.")


def _check_kind_matches(union: Spec | None, protocol: str, where: str, what: str) -> None:
    """Connection pools and listener timeouts are keyed by protocol and must use the listener's."""
    if union is None:
        return
    kind = _present(union, union.keys())[0]
    if kind != protocol:
        _fail(
            f"{where}.{kind}",
            f"The {what} type {kind} must match the listener protocol {protocol}.",
        )


def _check_arn(value: str, where: str) -> None:
    if not _ARN.match(value):
        _fail(where, f"'{value}' is not a valid ARN.")


def _check_certificate(cert: Spec | None, where: str) -> None:
    """Listener and client certificates: ACM needs a real ARN, SDS a secret name."""
    if cert is None:
        return
    if cert.get("acm") is not None:
        _check_arn(cert["acm"]["certificateArn"], f"{where}.acm.certificateArn")
    if cert.get("sds") is not None and not cert["sds"]["secretName"]:
        _fail(f"{where}.sds.secretName", "The SDS secret name must not be empty.")


def _check_validation(context: Spec | None, where: str) -> None:
    """A TLS validation context: a usable trust and, if given, a non-empty SAN list."""
    if context is None:
        return
    trust = context["trust"]
    for index, arn in enumerate((trust.get("acm") or {}).get("certificateAuthorityArns") or []):
        _check_arn(arn, _item(f"{where}.trust.acm.certificateAuthorityArns", index))
    if trust.get("sds") is not None and not trust["sds"]["secretName"]:
        _fail(f"{where}.trust.sds.secretName", "The SDS secret name must not be empty.")
    sans = context.get("subjectAlternativeNames")
    if sans is not None and not sans["match"]["exact"]:
        _fail(
            f"{where}.subjectAlternativeNames.match.exact",
            "Specify at least one subject alternative name.",
        )


def _check_listener_tls(tls: Spec | None, where: str) -> None:
    if tls is not None:
        _check_certificate(tls["certificate"], f"{where}.certificate")
        _check_validation(tls.get("validation"), f"{where}.validation")


def _check_client_policy(policy: Spec | None, where: str) -> None:
    """Backend TLS: ports listed once each, plus certificate/validation sanity."""
    tls = (policy or {}).get("tls")
    if tls is None:
        return
    ports = tls.get("ports") or []
    duplicates = sorted({port for port in ports if ports.count(port) > 1})
    if duplicates:
        _fail(f"{where}.tls.ports", f"Ports must be unique; repeated: {duplicates}.")
    _check_certificate(tls.get("certificate"), f"{where}.tls.certificate")
    _check_validation(tls["validation"], f"{where}.tls.validation")


def _check_logging(logging: Spec | None, where: str) -> None:
    """JSON access-log formats need at least one key, and each key once."""
    log_format = (((logging or {}).get("accessLog") or {}).get("file") or {}).get("format") or {}
    entries = log_format.get("json")
    if entries is None:
        return
    where = f"{where}.accessLog.file.format.json"
    if not entries:
        _fail(where, "A JSON log format must contain at least one key.")
    keys = [entry["key"] for entry in entries]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        _fail(where, f"JSON log format keys must be unique; repeated: {repeated}.")


def _check_listener_common(listener: Spec, where: str) -> None:
    """What node and gateway listeners share: health check, pool kind and TLS."""
    port = listener["portMapping"]["port"]
    protocol = listener["portMapping"]["protocol"]
    _check_health_check(listener.get("healthCheck"), port, f"{where}.healthCheck")
    _check_kind_matches(
        listener.get("connectionPool"), protocol, f"{where}.connectionPool", "connection pool"
    )
    _check_listener_tls(listener.get("tls"), f"{where}.tls")


def check_mesh_spec(spec: dict) -> None:
    """A mesh spec (egress filter, IP preference) is fully covered by the model's enums."""


def check_virtual_service_spec(spec: dict) -> None:
    """The provider is a model union (and may be absent); its existence is the store's check."""


def check_virtual_node_spec(spec: dict) -> None:
    """Listeners must agree with their own health checks, pools and timeouts."""
    listeners = spec.get("listeners") or []
    if listeners and spec.get("serviceDiscovery") is None:
        # [M] "If you specify a listener, then you must specify service discovery information."
        _fail("spec.serviceDiscovery", "Service discovery must be specified when a listener is.")
    _check_unique_ports(listeners, "spec.listeners")
    for index, listener in enumerate(listeners):
        where = _item("spec.listeners", index)
        _check_listener_common(listener, where)
        protocol = listener["portMapping"]["protocol"]
        _check_kind_matches(listener.get("timeout"), protocol, f"{where}.timeout", "timeout")
        for kind, timeout in (listener.get("timeout") or {}).items():
            _check_timeout(timeout, f"{where}.timeout.{kind}")
        outlier = listener.get("outlierDetection") or {}
        for key in ("baseEjectionDuration", "interval"):
            _check_duration(outlier.get(key), f"{where}.outlierDetection.{key}")
    dns = (spec.get("serviceDiscovery") or {}).get("dns")
    if dns is not None and not dns["hostname"]:
        _fail("spec.serviceDiscovery.dns.hostname", "The DNS hostname must not be empty.")
    _check_backends(spec.get("backends") or [])
    _check_client_policy(
        (spec.get("backendDefaults") or {}).get("clientPolicy"),
        "spec.backendDefaults.clientPolicy",
    )
    _check_logging(spec.get("logging"), "spec.logging")


def _check_backends(backends: list[Spec]) -> None:
    """Each backend names a virtual service once (App Mesh used to merge duplicates silently)."""
    seen: set[str] = set()
    for index, backend in enumerate(backends):
        where = f"{_item('spec.backends', index)}.virtualService"
        service = backend["virtualService"]
        name = service["virtualServiceName"]
        if not name:
            _fail(f"{where}.virtualServiceName", "The virtual service name must not be empty.")
        if name in seen:
            _fail(
                f"{where}.virtualServiceName",
                f"Virtual service {name} is listed as a backend more than once.",
            )
        seen.add(name)
        _check_client_policy(service.get("clientPolicy"), f"{where}.clientPolicy")


def check_virtual_router_spec(spec: dict) -> None:
    """Router listeners only carry a port mapping; ports must be distinct."""
    _check_unique_ports(spec.get("listeners") or [], "spec.listeners")


def check_virtual_gateway_spec(spec: dict) -> None:
    """Gateway listeners follow the node-listener rules; a gateway needs at least one."""
    listeners = spec.get("listeners") or []
    if not listeners:
        _fail("spec.listeners", "A virtual gateway must have at least one listener.")
    _check_unique_ports(listeners, "spec.listeners")
    for index, listener in enumerate(listeners):
        _check_listener_common(listener, _item("spec.listeners", index))
    _check_client_policy(
        (spec.get("backendDefaults") or {}).get("clientPolicy"),
        "spec.backendDefaults.clientPolicy",
    )
    _check_logging(spec.get("logging"), "spec.logging")


def _route_kind(spec: Spec, kinds: Mapping[str, str]) -> str:
    """RouteSpec/GatewayRouteSpec are not model unions, yet "Specify one route type"."""
    present = _present(spec, kinds)
    if len(present) != 1:
        _fail("spec", f"Specify exactly one of: {_fields(kinds)} ({len(present)} specified).")
    return present[0]


def _kind_of(spec: Spec, kinds: Mapping[str, str]) -> str | None:
    return next((key for key in kinds if spec.get(key) is not None), None)


def _match_port(spec: Spec, kinds: Mapping[str, str]) -> int | None:
    kind = _kind_of(spec, kinds)
    return None if kind is None else (spec[kind].get("match") or {}).get("port")


def _bind_listener(
    kind: str, protocol: str, port: int | None, parent: Spec, label: str, where: str
) -> None:
    """Find the listener a route serves (by ``match.port``) and compare protocols.

    Choice (UNCONFIRMED): a parent without listeners (legal in the model for
    routers) accepts any route kind, since there is nothing to compare against.
    """
    listeners = parent.get("listeners") or []
    if not listeners:
        return
    if port is None:
        if len(listeners) > 1:
            _fail(
                f"{where}.match.port",
                f"{label} has {len(listeners)} listeners, so the route must define a port match.",
            )
        listener = listeners[0]
    else:
        found = [item for item in listeners if item["portMapping"]["port"] == port]
        if not found:
            ports = [item["portMapping"]["port"] for item in listeners]
            _fail(f"{where}.match.port", f"Port {port} is not a listener port of {label} {ports}.")
        listener = found[0]
    actual = listener["portMapping"]["protocol"]
    if actual != protocol:
        _fail(
            where,
            f"Route type {kind} needs a listener with protocol {protocol}, but the listener "
            f"on port {listener['portMapping']['port']} of {label} uses {actual}.",
        )


def _check_against_routes(
    parent: Spec, routes: Mapping[str, Spec], kinds: Mapping[str, str], words: tuple[str, str, str]
) -> None:
    """Shared body of the two ``*_listeners_against_routes`` checks."""
    resource, parent_label, name_word = words
    listeners = parent.get("listeners") or []
    if len(listeners) > 1:
        missing = sorted(name for name, spec in routes.items() if _match_port(spec, kinds) is None)
        if missing:
            shown = ", ".join(missing[:_MAX_NAMES_LISTED])
            raise BadRequestException(
                f"All {resource}s for this {parent_label} must define a port match before "
                f"adding multiple listeners to this {parent_label}. {len(missing)} {resource}(s) "
                f"are missing port. Listing up to {_MAX_NAMES_LISTED} {name_word} names: [{shown}]"
            )
    # Choice (UNCONFIRMED): an update must also leave every existing route on a listener
    # of its own protocol, or the route would silently stop serving.
    for name, spec in sorted(routes.items()):
        kind = _kind_of(spec, kinds)
        if kind is not None:
            port = _match_port(spec, kinds)
            where = f"{resource} {name}: spec.{kind}"
            _bind_listener(kind, kinds[kind], port, parent, f"this {parent_label}", where)


def check_router_listeners_against_routes(router_spec: dict, routes: dict[str, dict]) -> None:
    """On UpdateVirtualRouter: the new listeners must still fit every existing route."""
    _check_against_routes(router_spec, routes, ROUTE_KINDS, ("Route", "Virtual Router", "route"))


def check_gateway_listeners_against_routes(gateway_spec: dict, routes: dict[str, dict]) -> None:
    """On UpdateVirtualGateway: the same rule for gateway routes [UG:gateway-routes]."""
    words = ("Gateway Route", "Virtual Gateway", "gateway route")
    _check_against_routes(gateway_spec, routes, GATEWAY_ROUTE_KINDS, words)


def _check_ranges(matchers: list[Spec] | None, where: str) -> None:
    """Header/metadata ranges are [start, end), so end must exceed start."""
    for index, matcher in enumerate(matchers or []):
        found = (matcher.get("match") or {}).get("range")
        if found is not None and found["end"] <= found["start"]:
            _fail(
                f"{_item(where, index)}.match.range",
                f"Range end ({found['end']}) must be greater than start ({found['start']}).",
            )


def _check_query_parameters(parameters: list[Spec] | None, where: str) -> None:
    for index, parameter in enumerate(parameters or []):
        if not parameter["name"]:
            _fail(f"{_item(where, index)}.name", "The query parameter name must not be empty.")


def _check_path_match(match: Spec, where: str, gateway: bool) -> None:
    """HTTP path matching: prefix XOR path for routes; path is exact XOR regex.

    Choice (UNCONFIRMED): at most one of prefix/path. A route with neither is
    accepted and routes as prefix ``/`` (``service.py`` fills it in), because
    App Mesh's backend did so and CDK relies on it (aws-cdk PR #15395) when a
    match names only headers. A gateway route may match on hostname alone.
    """
    chosen = _present(match, ("prefix", "path"))
    if len(chosen) > 1:
        _fail(where, "Specify exactly one of prefix or path, not both.")
    prefix = match.get("prefix")
    if prefix is not None and not prefix.startswith("/"):
        _fail(f"{where}.prefix", f"Prefix must start with '/', got '{prefix}'.")
    path = match.get("path")
    if path is not None:
        if len(_present(path, ("exact", "regex"))) != 1:
            _fail(f"{where}.path", "Specify exactly one of exact or regex.")
        # Regexes are not compiled: Envoy uses RE2, whose syntax Python's re does not match.
        if path.get("exact") is not None and not path["exact"].startswith("/"):
            _fail(f"{where}.path.exact", f"Exact path must start with '/', got '{path['exact']}'.")
    _check_ranges(match.get("headers"), f"{where}.headers")
    _check_query_parameters(match.get("queryParameters"), f"{where}.queryParameters")


def _check_service_name(match: Spec, where: str) -> None:
    """gRPC: a method is only meaningful inside a service; empty names match nothing."""
    if match.get("serviceName") == "":
        _fail(f"{where}.serviceName", "The service name must not be empty.")
    if match.get("methodName") is not None and match.get("serviceName") is None:
        _fail(f"{where}.methodName", "A methodName match requires a serviceName.")
    _check_ranges(match.get("metadata"), f"{where}.metadata")


def check_route_spec(spec: dict, router_spec: dict, router_name: str) -> None:
    """CreateRoute/UpdateRoute: one route kind that fits the router's listener."""
    kind = _route_kind(spec, ROUTE_KINDS)
    body = spec[kind]
    where = f"spec.{kind}"
    match = body.get("match") or {}
    label = f"Virtual Router {router_name}"
    _bind_listener(kind, ROUTE_KINDS[kind], match.get("port"), router_spec, label, where)
    if kind in ("httpRoute", "http2Route"):
        _check_path_match(match, f"{where}.match", gateway=False)
        if kind == "httpRoute" and match.get("scheme") is not None:
            # [M] scheme: "Applicable only for HTTP2 routes."
            _fail(f"{where}.match.scheme", "A scheme match is only allowed on http2Route.")
    elif kind == "grpcRoute":
        _check_service_name(match, f"{where}.match")
    _check_weighted_targets(body["action"]["weightedTargets"], f"{where}.action.weightedTargets")
    _check_retry_policy(body.get("retryPolicy"), kind, f"{where}.retryPolicy")
    _check_timeout(body.get("timeout"), f"{where}.timeout")


def _check_weighted_targets(targets: list[Spec], where: str) -> None:
    """Weights are relative and must sum to at most 100 [M].

    Choice (UNCONFIRMED): a zero total is rejected (one zero weight is fine, per
    roadmap#133) since such a route sends traffic nowhere and Envoy refuses weighted
    clusters whose weights sum to 0. The same node and port twice is rejected too.
    """
    total = sum(target["weight"] for target in targets)
    if total > 100:
        _fail(where, f"The total weight of all targets must be at most 100, got {total}.")
    if total == 0:
        _fail(where, "At least one target must have a weight greater than 0.")
    seen: set[tuple[str, int | None]] = set()
    for index, target in enumerate(targets):
        key = (target["virtualNode"], target.get("port"))
        if key in seen:
            _fail(
                f"{_item(where, index)}.virtualNode",
                f"Virtual node {key[0]} is targeted more than once on the same port.",
            )
        seen.add(key)


def _check_retry_policy(policy: Spec | None, kind: str, where: str) -> None:
    """[M]: "Specify at least one value for at least one of the types of RetryEvents"."""
    if policy is None:
        return
    kinds = ["httpRetryEvents", "tcpRetryEvents"]
    if kind == "grpcRoute":
        kinds.insert(0, "grpcRetryEvents")
    if not _present(policy, kinds):
        _fail(where, f"Specify at least one of: {_fields(kinds)}.")
    for index, event in enumerate(policy.get("httpRetryEvents") or []):
        if event not in HTTP_RETRY_EVENTS:
            _fail(
                _item(f"{where}.httpRetryEvents", index),
                f"'{event}' is not a valid HTTP retry event; "
                f"use one of [{_fields(HTTP_RETRY_EVENTS)}].",
            )
    _check_duration(policy["perRetryTimeout"], f"{where}.perRetryTimeout")


def check_gateway_route_spec(spec: dict, gateway_spec: dict, gateway_name: str) -> None:
    """CreateGatewayRoute/UpdateGatewayRoute: matches, rewrites and reserved names."""
    kind = _route_kind(spec, GATEWAY_ROUTE_KINDS)
    body = spec[kind]
    where = f"spec.{kind}"
    match = body["match"]
    label = f"Virtual Gateway {gateway_name}"
    _bind_listener(kind, GATEWAY_ROUTE_KINDS[kind], match.get("port"), gateway_spec, label, where)
    _check_hostname_match(match.get("hostname"), f"{where}.match.hostname")
    rewrite = body["action"].get("rewrite") or {}
    _check_hostname_rewrite(rewrite.get("hostname"), f"{where}.action.rewrite.hostname")
    if kind == "grpcRoute":
        _check_service_name(match, f"{where}.match")
        _check_reserved_service(match.get("serviceName"), f"{where}.match.serviceName")
        return
    _check_path_match(match, f"{where}.match", gateway=True)
    _check_reserved_path(match, f"{where}.match")
    _check_path_rewrite(rewrite, match, where)


def _check_hostname_match(hostname: Spec | None, where: str) -> None:
    if hostname is not None and len(_present(hostname, ("exact", "suffix"))) != 1:
        _fail(where, "Specify exactly one of exact or suffix.")


def _check_hostname_rewrite(hostname: Spec | None, where: str) -> None:
    """Choice (UNCONFIRMED): an empty hostname rewrite says nothing, so it is rejected."""
    if hostname is not None and hostname.get("defaultTargetHostname") is None:
        _fail(f"{where}.defaultTargetHostname", "Specify ENABLED or DISABLED.")


def _check_reserved_path(match: Spec, where: str) -> None:
    """[UG:gateway-routes] reserves /aws-appmesh* and /aws-app-mesh* for App Mesh.

    Choice: the UG names prefix matches only; exact paths are held to it as well.
    """
    candidates = (
        ("prefix", match.get("prefix")),
        ("path.exact", (match.get("path") or {}).get("exact")),
    )
    for field, value in candidates:
        if value is not None and value.startswith(RESERVED_PREFIXES):
            _fail(
                f"{where}.{field}",
                f"'{value}' is reserved: paths starting with {_fields(RESERVED_PREFIXES)} "
                "are reserved for App Mesh.",
            )


def _check_reserved_service(name: str | None, where: str) -> None:
    """[UG:gateway-routes] reserves gRPC service names aws.app-mesh* and aws.appmesh."""
    if name is not None and (name == "aws.appmesh" or name.startswith("aws.app-mesh")):
        _fail(where, f"Service name '{name}' is reserved for App Mesh.")


def _check_path_rewrite(rewrite: Spec, match: Spec, where: str) -> None:
    """Prefix rewrites go with prefix matches, path rewrites with path matches [UG]."""
    where = f"{where}.action.rewrite"
    prefix = rewrite.get("prefix")
    if prefix is not None:
        if match.get("prefix") is None:
            _fail(f"{where}.prefix", "A prefix rewrite requires a prefix match.")
        if len(_present(prefix, ("defaultPrefix", "value"))) != 1:
            _fail(f"{where}.prefix", "Specify exactly one of defaultPrefix or value.")
        value = prefix.get("value")
        if value is not None and not (value.startswith("/") and value.endswith("/")):
            _fail(
                f"{where}.prefix.value",
                f"Prefix rewrite must start and end with '/', got '{value}'.",
            )
    path = rewrite.get("path")
    if path is not None:
        if match.get("path") is None:
            _fail(f"{where}.path", "A path rewrite requires a path match.")
        exact = path.get("exact")
        if exact is None or not exact.startswith("/"):
            _fail(f"{where}.path.exact", f"Path rewrite must start with '/', got '{exact}'.")
