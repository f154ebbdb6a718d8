"""Shared pieces of App Mesh's semantic rules: failing with a field path, and the
checks that nodes, gateways and routes have in common (durations, health checks,
TLS, logging, listener ports)."""

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
MAX_NAMES_LISTED = 5
ARN = re.compile(r"^arn:[^:]+:[^:]+:[^:]*:[^:]*:.+$")


def fail(where: str, text: str) -> NoReturn:
    raise BadRequestException(f"{where}: {text}")


def present_fields(obj: Spec, keys: Iterable[str]) -> list[str]:
    return [key for key in keys if obj.get(key) is not None]


def item(where: str, index: int) -> str:
    """Name list item ``index`` (0-based) the way protocol.py does: ``x.1.member``."""
    return f"{where}.{index + 1}.member"


def fields(keys: Iterable[str]) -> str:
    return ", ".join(keys)


def check_duration(duration: Spec | None, where: str) -> None:
    """A Duration needs both members: a value without a unit means nothing.

    Choice (UNCONFIRMED): the model makes both optional; we require both.
    """
    if duration is not None and len(present_fields(duration, ("unit", "value"))) != 2:
        fail(where, "A duration must specify both unit and value.")


def check_timeout(timeout: Spec | None, where: str) -> None:
    for key in ("idle", "perRequest"):
        check_duration((timeout or {}).get(key), f"{where}.{key}")


def check_unique_ports(listeners: list[Spec], where: str) -> None:
    """Two listeners on one port could never both bind it."""
    seen: set[int] = set()
    for index, listener in enumerate(listeners):
        port = listener["portMapping"]["port"]
        if port in seen:
            fail(
                f"{item(where, index)}.portMapping.port",
                f"Port {port} is used by more than one listener; listener ports must be unique.",
            )
        seen.add(port)


def check_health_check(check: Spec | None, port: int, where: str) -> None:
    """The model says the health-check port "must match the port defined in the PortMapping"."""
    if check is None:
        return
    if check.get("port") is not None and check["port"] != port:
        fail(
            f"{where}.port",
            f"Health check port {check['port']} must match the listener port {port}.",
        )
    path = check.get("path")
    if check["protocol"] in ("http", "http2") and not path:
        # Choice (UNCONFIRMED in the model, which says path is "only used" for HTTP/HTTP2;
        # Terraform's docs call it required there): Envoy's HTTP health check needs one.
        fail(f"{where}.path", f"A {check['protocol']} health check must specify a path.")
    if path is not None and not path.startswith("/"):
        fail(f"{where}.path", f"Health check path must start with '/', got '{path}'.")


def check_kind_matches(union: Spec | None, protocol: str, where: str, what: str) -> None:
    """Connection pools and listener timeouts are keyed by protocol and must use the listener's."""
    if union is None:
        return
    kind = present_fields(union, union.keys())[0]
    if kind != protocol:
        fail(
            f"{where}.{kind}",
            f"The {what} type {kind} must match the listener protocol {protocol}.",
        )


def check_arn(value: str, where: str) -> None:
    if not ARN.match(value):
        fail(where, f"'{value}' is not a valid ARN.")


def check_certificate(cert: Spec | None, where: str) -> None:
    """Listener and client certificates: ACM needs a real ARN, SDS a secret name."""
    if cert is None:
        return
    if cert.get("acm") is not None:
        check_arn(cert["acm"]["certificateArn"], f"{where}.acm.certificateArn")
    if cert.get("sds") is not None and not cert["sds"]["secretName"]:
        fail(f"{where}.sds.secretName", "The SDS secret name must not be empty.")


def check_validation(context: Spec | None, where: str) -> None:
    """A TLS validation context: a usable trust and, if given, a non-empty SAN list."""
    if context is None:
        return
    trust = context["trust"]
    for index, arn in enumerate((trust.get("acm") or {}).get("certificateAuthorityArns") or []):
        check_arn(arn, item(f"{where}.trust.acm.certificateAuthorityArns", index))
    if trust.get("sds") is not None and not trust["sds"]["secretName"]:
        fail(f"{where}.trust.sds.secretName", "The SDS secret name must not be empty.")
    sans = context.get("subjectAlternativeNames")
    if sans is not None and not sans["match"]["exact"]:
        fail(
            f"{where}.subjectAlternativeNames.match.exact",
            "Specify at least one subject alternative name.",
        )


def check_listener_tls(tls: Spec | None, where: str) -> None:
    if tls is not None:
        check_certificate(tls["certificate"], f"{where}.certificate")
        check_validation(tls.get("validation"), f"{where}.validation")


def check_client_policy(policy: Spec | None, where: str) -> None:
    """Backend TLS: ports listed once each, plus certificate/validation sanity."""
    tls = (policy or {}).get("tls")
    if tls is None:
        return
    ports = tls.get("ports") or []
    duplicates = sorted({port for port in ports if ports.count(port) > 1})
    if duplicates:
        fail(f"{where}.tls.ports", f"Ports must be unique; repeated: {duplicates}.")
    check_certificate(tls.get("certificate"), f"{where}.tls.certificate")
    check_validation(tls["validation"], f"{where}.tls.validation")


def check_logging(logging: Spec | None, where: str) -> None:
    """JSON access-log formats need at least one key, and each key once."""
    log_format = (((logging or {}).get("accessLog") or {}).get("file") or {}).get("format") or {}
    entries = log_format.get("json")
    if entries is None:
        return
    where = f"{where}.accessLog.file.format.json"
    if not entries:
        fail(where, "A JSON log format must contain at least one key.")
    keys = [entry["key"] for entry in entries]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        fail(where, f"JSON log format keys must be unique; repeated: {repeated}.")


def check_listener_common(listener: Spec, where: str) -> None:
    """What node and gateway listeners share: health check, pool kind and TLS."""
    port = listener["portMapping"]["port"]
    protocol = listener["portMapping"]["protocol"]
    check_health_check(listener.get("healthCheck"), port, f"{where}.healthCheck")
    check_kind_matches(
        listener.get("connectionPool"), protocol, f"{where}.connectionPool", "connection pool"
    )
    check_listener_tls(listener.get("tls"), f"{where}.tls")
