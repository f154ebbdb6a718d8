"""Reading Envoy v3 resources in their proto3-JSON form.

xDS hands the proxy protobuf messages rendered as JSON: durations are strings
like ``"1.5s"``, wrapper types (``UInt32Value``) are bare numbers, percentages are
``{"value": 50.0}`` and ``Any`` fields carry an ``"@type"`` URL. These helpers turn
those shapes into plain Python values once, at compile time, so the request path
never parses configuration.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any


class ConfigError(ValueError):
    """A resource Envoy would reject (NACK); unknown fields never raise this."""


def type_url(resource: dict[str, Any]) -> str:
    """The ``@type`` of an ``Any``-shaped dict, or ``""``."""
    value = resource.get("@type", "")
    return value if isinstance(value, str) else ""


def duration(value: Any, default: float | None = None) -> float | None:
    """A ``google.protobuf.Duration`` (``"1.5s"`` or ``{"seconds", "nanos"}``) in seconds."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise ConfigError(f"invalid duration: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text.endswith("s"):
            raise ConfigError(f"invalid duration: {value!r}")
        try:
            return float(text[:-1])
        except ValueError as exc:
            raise ConfigError(f"invalid duration: {value!r}") from exc
    if isinstance(value, dict):
        try:
            return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid duration: {value!r}") from exc
    raise ConfigError(f"invalid duration: {value!r}")


def uint(value: Any, default: int) -> int:
    """A ``UInt32Value``/``UInt64Value``: a number, a numeric string or ``{"value": n}``."""
    if value is None:
        return default
    if isinstance(value, dict):
        value = value.get("value", default)
    try:
        result = int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid integer: {value!r}") from exc
    if result < 0:
        raise ConfigError(f"negative value where unsigned expected: {value!r}")
    return result


def percent(value: Any, default: float) -> float:
    """An ``envoy.type.v3.Percent`` (``{"value": 50.0}``) as a number 0..100."""
    if value is None:
        return default
    if isinstance(value, dict):
        value = value.get("value", 0.0)
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid percent: {value!r}") from exc


def fraction(value: Any) -> float:
    """A ``FractionalPercent`` (``{"numerator", "denominator"}``) as a probability 0..1."""
    if not isinstance(value, dict):
        return 1.0
    denominators = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}
    numerator = uint(value.get("numerator"), 0)
    return min(1.0, numerator / denominators.get(value.get("denominator", "HUNDRED"), 100))


def flag(value: Any, default: bool) -> bool:
    """A ``BoolValue`` or plain bool."""
    if value is None:
        return default
    if isinstance(value, dict):
        value = value.get("value", default)
    return bool(value)


def socket_address(address: Any) -> tuple[str, int]:
    """``{"socket_address": {"address", "port_value"}}`` as ``(host, port)``."""
    if not isinstance(address, dict) or "socket_address" not in address:
        raise ConfigError(f"unsupported address: {address!r}")
    sock = address["socket_address"]
    host = sock.get("address")
    if not isinstance(host, str) or not host:
        raise ConfigError(f"socket address without host: {address!r}")
    if sock.get("protocol", "TCP") != "TCP":
        raise ConfigError(f"only TCP socket addresses are supported: {address!r}")
    return host, uint(sock.get("port_value"), 0)


def typed_config(filter_spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A filter's ``(type URL, typed_config)``; old-style configs fall back on the name."""
    config = filter_spec.get("typed_config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"typed_config must be an object: {filter_spec!r}")
    return type_url(config) or str(filter_spec.get("name", "")), config


AGGREGATE_STATS = "aws.appmesh.aggregate_stats"


def aggregate_stats_tag(spec: dict[str, Any], key: str) -> str:
    """The value App Mesh's ``aws.appmesh.aggregate_stats`` metadata gives ``key``.

    App Mesh tagged egress routes with ``TargetVirtualService`` and clusters with
    ``TargetVirtualNode`` (a JSON string ``{"tags": [{"key", "value"}]}``) for its metrics
    extension; read once here, so the per-target counters need no parsing. ``""`` when
    absent or malformed (metadata never makes Envoy reject a resource).
    """
    metadata = (spec.get("metadata") or {}).get("filter_metadata") or {}
    config = (metadata.get(AGGREGATE_STATS) or {}).get("config")
    try:
        tags = json.loads(config).get("tags") if isinstance(config, str) else None
    except (ValueError, AttributeError):
        return ""
    for tag in tags if isinstance(tags, list) else ():
        if isinstance(tag, dict) and tag.get("key") == key:
            return str(tag.get("value", ""))
    return ""


def objects_in(value: Any) -> Iterator[Mapping[str, Any]]:
    """Every JSON object in ``value``, itself included, depth first: for finding the
    references (RDS names, EDS names, SDS secrets) wherever a resource nests them."""
    if isinstance(value, Mapping):
        yield value
        for child in value.values():
            yield from objects_in(child)
    elif isinstance(value, (list, tuple)):
        for child in value:
            yield from objects_in(child)
