"""Envoy's header rules for proxied HTTP, in one place.

Request side: the HCM mutations (``x-request-id`` when absent, ``x-forwarded-for``
appended when ``use_remote_address`` is set, ``x-forwarded-proto``, ``via``), route
header mutations and path/host rewrites, hop-by-hop headers dropped, and the upstream
HTTP/1.1 head built once per request. Response side: hop-by-hop headers dropped, the
``server`` header per ``server_header_transformation``, ``x-envoy-upstream-service-time``
and route response mutations. Everything else (``x-amzn-trace-id`` included) passes
through untouched.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import os
import re
from typing import TYPE_CHECKING

from proxy.router.http_types import CHUNKED, CONTENT_LENGTH, HttpRequest

if TYPE_CHECKING:
    from proxy.config.compile import HttpConnectionManagerConfig
    from proxy.config.routing import HeaderMutation, Route

_HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade")
REQUEST_SKIP = frozenset((*_HOP_BY_HOP, "host", "te", "content-length", "expect"))
RESPONSE_SKIP = frozenset((*_HOP_BY_HOP, "content-length"))


def apply_mutation(headers: dict[str, str], mutation: HeaderMutation) -> None:
    """``request_headers_to_add`` / ``_to_remove`` on a request header dict."""
    for name in mutation.remove:
        headers.pop(name, None)
    for name, value, append in mutation.add:
        if append and name in headers:
            headers[name] = f"{headers[name]},{value}"
        else:
            headers[name] = value


def apply_response_mutation(out: list[tuple[str, str]], mutation: HeaderMutation) -> None:
    """``response_headers_to_add`` / ``_to_remove``; appends add another header line."""
    for name in mutation.remove:
        out[:] = [(n, v) for n, v in out if n != name]
    for name, value, append in mutation.add:
        if not append:
            out[:] = [(n, v) for n, v in out if n != name]
        out.append((name, value))


_RANDOM_POOL = bytearray()


def _random16() -> bytearray:
    """16 random bytes from a 4 KiB pool: one getrandom() per 256 ids, not one per request."""
    global _RANDOM_POOL
    if len(_RANDOM_POOL) < 16:
        _RANDOM_POOL = bytearray(os.urandom(4096))
    raw = _RANDOM_POOL[-16:]
    del _RANDOM_POOL[-16:]
    return raw


def request_id() -> str:
    """A random (version 4) UUID string, as Envoy generates; cheaper than ``uuid.uuid4()``."""
    raw = _random16()
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# Envoy's cleanInternalHeaders: what an external request may not tell the proxy (its
# routing and timeout overrides), removed before routing; edge requests lose more.
_NOT_FROM_OUTSIDE = frozenset((
    "x-envoy-internal", "x-envoy-retriable-status-codes", "x-envoy-retriable-header-names",
    "x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name", "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms", "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms", "x-envoy-force-trace", "x-envoy-ip-tags",
    "x-envoy-original-url", "x-envoy-hedge-on-per-try-timeout",
))  # fmt: skip
_NOT_FROM_THE_EDGE = _NOT_FROM_OUTSIDE | {
    "x-envoy-decorator-operation", "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
}  # fmt: skip
# Envoy's internal addresses without an internal_address_config: RFC 1918, loopback and
# IPv6 unique-local (Network::Utility::isInternalAddress).
_INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128",
              "fd00::/8")
)  # fmt: skip


@functools.lru_cache(maxsize=1024)
def is_internal_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in _INTERNAL_NETWORKS)


def mutate_request_headers(
    headers: dict[str, str], hcm: HttpConnectionManagerConfig, remote_address: str
) -> bool:
    """What Envoy's HCM does to every request before routing it; returns whether the
    request is internal, as Envoy decides it: one address in ``x-forwarded-for`` once the
    proxy appended its peer (with ``use_remote_address``: none before), and an internal
    one. Internal requests are marked ``x-envoy-internal: true`` and may steer the router
    (``x-envoy-upstream-rq-timeout-ms``...); external ones lose those headers."""
    if hcm.generate_request_id and "x-request-id" not in headers:
        headers["x-request-id"] = request_id()
    xff = headers.get("x-forwarded-for")
    if hcm.use_remote_address:
        remote = remote_address.rsplit(":", 1)[0].strip("[]")
        internal = not xff and is_internal_address(remote)
        if not hcm.skip_xff_append:
            headers["x-forwarded-for"] = f"{xff},{remote}" if xff else remote
    else:
        internal = xff is not None and "," not in xff and is_internal_address(xff)
    headers.setdefault("x-forwarded-proto", headers.get(":scheme", "http"))
    if hcm.via:
        via = headers.get("via")
        headers["via"] = f"{via},{hcm.via}" if via else hcm.via
    if internal:
        headers["x-envoy-internal"] = "true"
        return True
    stripped = _NOT_FROM_THE_EDGE if hcm.use_remote_address else _NOT_FROM_OUTSIDE
    for name in stripped.intersection(headers):  # usually none: one pass over the names
        del headers[name]
    return False


def build_request_head(request: HttpRequest, route: Route, expected_timeout: float | None) -> bytes:
    """The upstream HTTP/1.1 request head, after rewrites and route mutations."""
    path, authority = _prepare_upstream(request, route, expected_timeout)
    headers = request.headers
    dropped = connection_tokens(headers.get("connection"))
    lines = [f"{request.method} {path} HTTP/1.1\r\nhost: {authority}\r\n"]
    for name, value in headers.items():
        if name[0] != ":" and name not in REQUEST_SKIP and name not in dropped:
            lines.append(f"{name}: {value}\r\n")
    if request.framing == CONTENT_LENGTH:
        lines.append(f"content-length: {request.content_length}\r\n")
    elif request.framing == CHUNKED:
        lines.append("transfer-encoding: chunked\r\n")
    if request.upgrade:  # the one case where hop-by-hop headers go on (Envoy does)
        lines.append(f"connection: upgrade\r\nupgrade: {headers.get('upgrade', '')}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1", "replace")


_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


def websocket_key() -> str:
    """A fresh ``Sec-WebSocket-Key`` (16 random bytes, base64), for an RFC 8441 request
    turned into an RFC 6455 handshake: extended CONNECT carries no key of its own."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def websocket_accept(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with (RFC 6455 4.2.2)."""
    import hashlib  # here: only WebSockets need it, and hashlib costs a sidecar 0.7 MB

    digest = hashlib.sha1(key.encode("ascii") + _WEBSOCKET_GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def build_h2_request_headers(
    request: HttpRequest, route: Route, expected_timeout: float | None, scheme: str
) -> list[tuple[str, str]]:
    """The upstream HTTP/2 header list: pseudo-headers first, ``te: trailers`` kept
    (gRPC requires it), connection-specific headers dropped as RFC 9113 demands. An
    upgrade becomes an RFC 8441 extended CONNECT (``:protocol`` names it), as Envoy's
    ``transformUpgradeRequestFromH1toH2`` makes it."""
    path, authority = _prepare_upstream(request, route, expected_timeout)
    headers = request.headers
    dropped = connection_tokens(headers.get("connection"))
    out = [(":method", request.method)]
    if request.upgrade:
        out = [(":method", "CONNECT"), (":protocol", headers.get("upgrade") or request.upgrade)]
    out += [(":scheme", scheme), (":authority", authority), (":path", path)]
    for name, value in headers.items():
        if name[0] != ":" and name not in REQUEST_SKIP and name not in dropped:
            out.append((name, value))
    if headers.get("te", "").strip().lower() == "trailers":
        out.append(("te", "trailers"))
    if request.framing == CONTENT_LENGTH:
        out.append(("content-length", str(request.content_length)))
    return out


def _prepare_upstream(
    request: HttpRequest, route: Route, expected_timeout: float | None
) -> tuple[str, str]:
    """Path and host rewrites, route header mutations and Envoy's expected-timeout header,
    applied to the request's headers; returns the upstream path and authority."""
    action = route.action
    assert action is not None
    headers = request.headers
    path = request.path
    if route.rewrite_path is not None:
        headers["x-envoy-original-path"] = path
        path = route.rewrite_path(path)
    authority = action.host_rewrite or headers.get(":authority", "")
    if route.request_headers:
        apply_mutation(headers, route.request_headers)
    if expected_timeout:
        headers["x-envoy-expected-rq-timeout-ms"] = str(int(expected_timeout * 1000))
    return path, authority


def response_headers(
    upstream: list[tuple[str, str]], hcm: HttpConnectionManagerConfig, service_time: int
) -> tuple[list[tuple[str, str]], int | None]:
    """Downstream response headers and the upstream ``content-length``, if any."""
    mode = hcm.server_header_transformation
    dropped: frozenset[str] = frozenset()
    for name, value in upstream:
        if name == "connection":
            dropped = connection_tokens(value)
    out: list[tuple[str, str]] = []
    length: int | None = None
    has_server = False
    for name, value in upstream:
        if name in RESPONSE_SKIP or name in dropped:
            if name == "content-length" and value.strip().isdigit():
                length = int(value)
            continue
        if name == "x-envoy-upstream-service-time":
            continue  # Envoy's router sets it, replacing what an inner hop set
        if name == "server":
            if mode == "OVERWRITE":
                continue
            has_server = True
        out.append((name, value))
    if mode == "OVERWRITE" or (mode == "APPEND_IF_ABSENT" and not has_server):
        out.append(("server", hcm.server_name))
    out.append(("x-envoy-upstream-service-time", str(service_time)))
    return out, length


def normalize_path(path: str, normalize: bool, merge_slashes: bool) -> str:
    """HCM ``normalize_path`` (RFC 3986 dot segments) and ``merge_slashes``; query untouched."""
    only, sep, query = path.partition("?")
    if merge_slashes and "//" in only:
        only = re.sub("/{2,}", "/", only)
    if normalize and ("/." in only or "\\" in only):
        only = only.replace("\\", "/")
        out: list[str] = []
        segments = only.split("/")
        for segment in segments[1:]:
            if segment == "..":
                if out:
                    out.pop()
            elif segment != ".":
                out.append(segment)
        trailing = segments[-1] in (".", "..")
        only = "/" + "/".join(out) + ("/" if trailing and out else "")
    return only + sep + query


def connection_tokens(value: str | None) -> frozenset[str]:
    """Headers named in ``connection:`` are hop-by-hop too."""
    if not value:
        return frozenset()
    return frozenset(token.strip().lower() for token in value.split(","))
