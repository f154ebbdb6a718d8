"""Route tables compiled from ``RouteConfiguration``, matched exactly as Envoy does.

Virtual hosts are chosen by ``:authority`` in Envoy's order (exact domain, then the
longest ``*.suffix`` wildcard, then the longest ``prefix*`` wildcard, then ``*``); inside a
virtual host the first route whose match holds wins. Prefix matches look at the whole
``:path`` including the query string, ``path`` and ``safe_regex`` at the path without it,
and every header and query-parameter matcher must hold. Weighted clusters are chosen
with one random draw over precomputed cumulative weights.
"""

from __future__ import annotations

import bisect
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote

from proxy.config.matchers import (
    HeaderMatcher,
    QueryParameterMatcher,
    compile_header_matcher,
    compile_query_matcher,
    compile_regex,
)
from proxy.config.protojson import ConfigError, aggregate_stats_tag, duration, flag, fraction, uint
from proxy.config.regex import Regex, full_matcher
from proxy.config.retry import RetryPolicy, compile_retry_policy

DEFAULT_ROUTE_TIMEOUT = 15.0  # Envoy's route timeout when none is given
_HOST_CACHE_LIMIT = 1024


class RequestView:
    """What route matching reads from a request; the query string is parsed only if needed."""

    __slots__ = ("_query", "headers", "path", "path_only")

    def __init__(self, path: str, headers: Mapping[str, str]) -> None:
        self.path = path
        self.path_only = path.split("?", 1)[0] if "?" in path else path
        self.headers = headers
        self._query: dict[str, str] | None = None

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = {}
            _, _, text = self.path.partition("?")
            for part in text.split("&"):
                if part:
                    name, _, value = part.partition("=")
                    self._query.setdefault(unquote(name), unquote(value))
        return self._query


@dataclass(frozen=True, slots=True)
class HeaderMutation:
    """Headers to add (``(name, value, append)``) and remove, flattened in Envoy's order."""

    add: tuple[tuple[str, str, bool], ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)


def _mutation(levels: Sequence[Mapping[str, Any]], to_add: str, to_remove: str) -> HeaderMutation:
    """Merge ``*_headers_to_add/remove`` from route, virtual host and route config."""
    add: list[tuple[str, str, bool]] = []
    remove: list[str] = []
    for spec in levels:
        for option in spec.get(to_add, ()) or ():
            header = option.get("header") or {}
            name = str(header.get("key", "")).lower()
            if not name:
                continue
            action = option.get("append_action")
            append = (
                flag(option.get("append"), True) if action is None else action.startswith("APPEND")
            )
            add.append((name, str(header.get("value", "")), append))
        remove.extend(str(name).lower() for name in spec.get(to_remove, ()) or ())
    return HeaderMutation(tuple(add), tuple(remove))


@dataclass(frozen=True, slots=True)
class WeightedClusters:
    """Cluster names and cumulative weights; ``pick`` is one draw and a bisect."""

    names: tuple[str, ...]
    cumulative: tuple[int, ...]
    total: int

    def pick(self) -> str:
        return self.names[bisect.bisect_right(self.cumulative, random.randrange(self.total))]


@dataclass(frozen=True, slots=True)
class StreamDuration:
    """A route's ``max_stream_duration`` message (``None``: the field is not set)."""

    max_stream_duration: float | None = None
    header_max: float | None = None
    header_offset: float | None = None


@dataclass(frozen=True, slots=True)
class RouteAction:
    """Where a matched request goes and under which timeouts and retry policy."""

    cluster: str | None = None
    cluster_header: str | None = None
    weighted: WeightedClusters | None = None
    timeout: float | None = DEFAULT_ROUTE_TIMEOUT
    idle_timeout: float | None = None
    # The client's grpc-timeout, when the route asks for it (proxy/router/grpc_timeout.py).
    max_grpc_timeout: float | None = None
    grpc_timeout_offset: float | None = None
    max_stream_duration: StreamDuration | None = None
    retry_policy: RetryPolicy | None = None
    # ``hedge_policy.hedge_on_per_try_timeout`` (the route's, else its virtual host's): on
    # a per-try timeout the attempt keeps running beside its retry; the first good
    # response wins. Envoy implements no other hedging field.
    hedge_on_per_try_timeout: bool = False
    prefix_rewrite: str | None = None
    regex_rewrite: tuple[Regex, str] | None = None
    host_rewrite: str | None = None
    not_found_status: int = 503
    # Route ``upgrade_configs``: overrides the HCM's enabled flag per upgrade type.
    upgrades: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))

    def pick_cluster(self, headers: Mapping[str, str]) -> str | None:
        if self.weighted is not None:
            return self.weighted.pick()
        if self.cluster_header is not None:
            return headers.get(self.cluster_header)
        return self.cluster


@dataclass(frozen=True, slots=True)
class Route:
    """One compiled route; exactly one of ``action``/``direct_response``/``redirect`` is set."""

    name: str
    matches: Callable[[RequestView], bool]
    rewrite_path: Callable[[str], str] | None
    action: RouteAction | None
    direct_response: tuple[int, bytes] | None
    redirect: dict[str, Any] | None
    request_headers: HeaderMutation
    response_headers: HeaderMutation
    target_virtual_service: str = ""  # App Mesh's aggregate_stats metadata, for metrics


@dataclass(frozen=True, slots=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]

    def match(self, request: RequestView) -> Route | None:
        for route in self.routes:
            if route.matches(request):
                return route
        return None


@dataclass(frozen=True)
class RouteTable:
    """A compiled ``RouteConfiguration``: virtual hosts indexed by domain."""

    name: str
    virtual_hosts: tuple[VirtualHost, ...]
    exact: Mapping[str, VirtualHost]
    suffixes: tuple[tuple[str, VirtualHost], ...]
    prefixes: tuple[tuple[str, VirtualHost], ...]
    default: VirtualHost | None
    ignore_port: bool
    raw: Mapping[str, Any]
    _cache: dict[str, VirtualHost | None] = field(default_factory=dict, compare=False)

    def find_virtual_host(self, authority: str) -> VirtualHost | None:
        """Envoy's domain search; results are memoised per host value."""
        cached = self._cache.get(authority, False)
        if cached is not False:
            return cached  # type: ignore[return-value]
        host = authority.lower()
        if self.ignore_port:
            host = _strip_port(host)
        found = self.exact.get(host)
        if found is None:
            found = next(
                (v for s, v in self.suffixes if len(host) > len(s) and host.endswith(s)), None
            )
        if found is None:
            found = next(
                (v for p, v in self.prefixes if len(host) > len(p) and host.startswith(p)), None
            )
        if found is None:
            found = self.default
        if len(self._cache) < _HOST_CACHE_LIMIT:
            self._cache[authority] = found
        return found

    def route(self, authority: str, request: RequestView) -> Route | None:
        vhost = self.find_virtual_host(authority)
        return None if vhost is None else vhost.match(request)


def _strip_port(host: str) -> str:
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() else host


def compile_route_configuration(spec: dict[str, Any]) -> RouteTable:
    """A ``RouteConfiguration`` dict (inline in an HCM or from RDS) as a ``RouteTable``."""
    name = str(spec.get("name", ""))
    vhosts = tuple(_compile_virtual_host(v, spec) for v in spec.get("virtual_hosts", ()) or ())
    exact: dict[str, VirtualHost] = {}
    suffixes: list[tuple[str, VirtualHost]] = []
    prefixes: list[tuple[str, VirtualHost]] = []
    default: VirtualHost | None = None
    for vhost in vhosts:
        for domain in vhost.domains:
            if domain == "*":
                if default is not None:
                    raise ConfigError(f"route config {name}: duplicate domain '*'")
                default = vhost
            elif domain.startswith("*"):
                suffixes.append((domain[1:], vhost))
            elif domain.endswith("*"):
                prefixes.append((domain[:-1], vhost))
            elif domain in exact:
                raise ConfigError(f"route config {name}: duplicate domain {domain!r}")
            else:
                exact[domain] = vhost
    suffixes.sort(key=lambda item: -len(item[0]))
    prefixes.sort(key=lambda item: -len(item[0]))
    return RouteTable(
        name=name,
        virtual_hosts=vhosts,
        exact=exact,
        suffixes=tuple(suffixes),
        prefixes=tuple(prefixes),
        default=default,
        ignore_port=bool(spec.get("ignore_port_in_host_matching", False)),
        raw=spec,
    )


def _compile_virtual_host(spec: dict[str, Any], config: dict[str, Any]) -> VirtualHost:
    name = str(spec.get("name", ""))
    domains = tuple(str(d).lower() for d in spec.get("domains", ()) or ())
    if not domains:
        raise ConfigError(f"virtual host {name}: no domains")
    vhost_retry = compile_retry_policy(spec.get("retry_policy"))
    routes = tuple(
        _compile_route(route, spec, config, vhost_retry) for route in spec.get("routes", ()) or ()
    )
    return VirtualHost(name=name, domains=domains, routes=routes)


def _compile_route(
    spec: dict[str, Any],
    vhost: dict[str, Any],
    config: dict[str, Any],
    vhost_retry: RetryPolicy | None,
) -> Route:
    match = spec.get("match")
    if not isinstance(match, dict):
        raise ConfigError(f"route {spec.get('name', '')!r} without match")
    levels = (spec, vhost, config)
    action = None
    if isinstance(spec.get("route"), dict):
        action = _compile_action(spec["route"], vhost_retry, _hedges(vhost.get("hedge_policy")))
    direct = spec.get("direct_response")
    return Route(
        name=str(spec.get("name", "")),
        matches=_compile_match(match),
        rewrite_path=_path_rewriter(match, action),
        action=action,
        direct_response=_direct_response(direct) if isinstance(direct, dict) else None,
        redirect=spec.get("redirect") if isinstance(spec.get("redirect"), dict) else None,
        request_headers=_mutation(levels, "request_headers_to_add", "request_headers_to_remove"),
        response_headers=_mutation(levels, "response_headers_to_add", "response_headers_to_remove"),
        target_virtual_service=aggregate_stats_tag(spec, "TargetVirtualService"),
    )


def _direct_response(spec: dict[str, Any]) -> tuple[int, bytes]:
    body = spec.get("body") or {}
    text = body.get("inline_string") or body.get("inline_bytes") or ""
    return uint(spec.get("status"), 200), str(text).encode()


def _compile_match(match: dict[str, Any]) -> Callable[[RequestView], bool]:
    """A ``RouteMatch`` as one predicate: path specifier, then headers, query, gRPC, runtime."""
    case_sensitive = flag(match.get("case_sensitive"), True)
    path_test = _path_predicate(match, case_sensitive)
    headers: tuple[HeaderMatcher, ...] = tuple(
        compile_header_matcher(h) for h in match.get("headers", ()) or ()
    )
    queries: tuple[QueryParameterMatcher, ...] = tuple(
        compile_query_matcher(q) for q in match.get("query_parameters", ()) or ()
    )
    grpc = "grpc" in match
    runtime = match.get("runtime_fraction")
    probability = fraction(runtime.get("default_value")) if isinstance(runtime, dict) else 1.0

    def matches(request: RequestView) -> bool:
        if not path_test(request):
            return False
        hdrs = request.headers
        for header in headers:
            if not header.matches(hdrs):
                return False
        if queries:
            params = request.query
            for query in queries:
                if not query.matches(params):
                    return False
        if grpc and not hdrs.get("content-type", "").startswith("application/grpc"):
            return False
        return probability >= 1.0 or random.random() < probability

    return matches


def _path_predicate(match: dict[str, Any], case_sensitive: bool) -> Callable[[RequestView], bool]:
    if "prefix" in match:
        prefix = str(match["prefix"])
        if case_sensitive:
            return lambda r: r.path.startswith(prefix)
        lowered = prefix.lower()
        return lambda r: r.path.lower().startswith(lowered)
    if "path" in match:
        path = str(match["path"])
        if case_sensitive:
            return lambda r: r.path_only == path
        lowered = path.lower()
        return lambda r: r.path_only.lower() == lowered
    if "safe_regex" in match:
        matches = full_matcher(compile_regex(match["safe_regex"]))
        return lambda r: matches(r.path_only)
    if "path_separated_prefix" in match:
        sep_prefix = str(match["path_separated_prefix"])
        return lambda r: r.path_only == sep_prefix or r.path_only.startswith(sep_prefix + "/")
    if "connect_matcher" in match:
        return lambda r: r.headers.get(":method") == "CONNECT"
    raise ConfigError(f"route match without path specifier: {match!r}")


def _path_rewriter(
    match: dict[str, Any], action: RouteAction | None
) -> Callable[[str], str] | None:
    """The path rewrite for this route (``prefix_rewrite`` or ``regex_rewrite``), if any."""
    if action is None:
        return None
    if action.prefix_rewrite is not None:
        matched = str(
            match.get("prefix", match.get("path", match.get("path_separated_prefix", "")))
        )
        size, replacement = len(matched), action.prefix_rewrite
        return lambda path: replacement + path[size:]
    if action.regex_rewrite is not None:
        pattern, substitution = action.regex_rewrite
        sub = re.sub(r"\\(\d)", r"\\g<\1>", substitution)  # RE2 \1 → Python \g<1>

        def rewrite(path: str) -> str:
            only, sep, query = path.partition("?")
            return pattern.sub(sub, only) + sep + query

        return rewrite
    return None


def _hedges(policy: Any) -> bool:
    """A ``HedgePolicy``'s ``hedge_on_per_try_timeout``."""
    return isinstance(policy, dict) and flag(policy.get("hedge_on_per_try_timeout"), False)


def _compile_action(
    spec: dict[str, Any], vhost_retry: RetryPolicy | None, vhost_hedges: bool = False
) -> RouteAction:
    weighted = None
    if isinstance(spec.get("weighted_clusters"), dict):
        weighted = _weighted(spec["weighted_clusters"])
    elif "cluster" not in spec and "cluster_header" not in spec:
        raise ConfigError(f"route action without cluster: {spec!r}")
    timeout = duration(spec.get("timeout"), DEFAULT_ROUTE_TIMEOUT)
    regex_rewrite = None
    if isinstance(spec.get("regex_rewrite"), dict):
        rr = spec["regex_rewrite"]
        regex_rewrite = (compile_regex(rr.get("pattern")), str(rr.get("substitution", "")))
    retry = (
        compile_retry_policy(spec.get("retry_policy")) if "retry_policy" in spec else vhost_retry
    )
    return RouteAction(
        cluster=spec.get("cluster"),
        cluster_header=str(spec["cluster_header"]).lower() if "cluster_header" in spec else None,
        weighted=weighted,
        timeout=timeout or None,
        idle_timeout=duration(spec.get("idle_timeout")) or None,
        max_grpc_timeout=duration(spec.get("max_grpc_timeout")),
        grpc_timeout_offset=duration(spec.get("grpc_timeout_offset")),
        max_stream_duration=_stream_duration(spec.get("max_stream_duration")),
        retry_policy=retry,
        hedge_on_per_try_timeout=(
            _hedges(spec["hedge_policy"]) if "hedge_policy" in spec else vhost_hedges
        ),
        prefix_rewrite=spec.get("prefix_rewrite"),
        regex_rewrite=regex_rewrite,
        host_rewrite=spec.get("host_rewrite_literal"),
        not_found_status={"NOT_FOUND": 404, "INTERNAL_SERVER_ERROR": 500}.get(
            spec.get("cluster_not_found_response_code", ""), 503
        ),
        upgrades=compile_upgrades(spec.get("upgrade_configs")),
    )


def _stream_duration(spec: Any) -> StreamDuration | None:
    """A ``RouteAction.MaxStreamDuration``; its presence alone turns the route timeout off."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ConfigError(f"invalid max_stream_duration: {spec!r}")
    return StreamDuration(
        duration(spec.get("max_stream_duration")),
        duration(spec.get("grpc_timeout_header_max")),
        duration(spec.get("grpc_timeout_header_offset")),
    )


def _weighted(spec: dict[str, Any]) -> WeightedClusters:
    names: list[str] = []
    cumulative: list[int] = []
    total = 0
    for entry in spec.get("clusters", ()) or ():
        weight = uint(entry.get("weight"), 0)
        if weight == 0:
            continue
        total += weight
        names.append(str(entry.get("name")))
        cumulative.append(total)
    if total == 0:
        raise ConfigError(f"weighted_clusters with no weight: {spec!r}")
    return WeightedClusters(tuple(names), tuple(cumulative), total)


_REDIRECT_CODES = {
    "MOVED_PERMANENTLY": 301,
    "FOUND": 302,
    "SEE_OTHER": 303,
    "TEMPORARY_REDIRECT": 307,
    "PERMANENT_REDIRECT": 308,
}


def redirect_location(
    spec: dict[str, Any], scheme: str, authority: str, path: str
) -> tuple[int, str]:
    """A ``RedirectAction`` applied to one request: ``(status, location)``."""
    if spec.get("https_redirect"):
        scheme = "https"
    scheme = spec.get("scheme_redirect", scheme)
    host = spec.get("host_redirect") or _strip_port(authority)
    port = spec.get("port_redirect")
    if port is None and not spec.get("host_redirect") and not spec.get("https_redirect"):
        host = authority
    elif port is not None:
        host = f"{host}:{port}"
    if "path_redirect" in spec:
        path = str(spec["path_redirect"])
    if spec.get("strip_query"):
        path = path.split("?", 1)[0]
    return _REDIRECT_CODES.get(spec.get("response_code", ""), 301), f"{scheme}://{host}{path}"


def compile_upgrades(specs: Any) -> Mapping[str, bool]:
    """HCM ``upgrade_configs`` (or a route's): each type, lower-cased, and whether it is
    enabled (Envoy's default: true). Custom filter chains and CONNECT are refused before
    compiling (``unsupported``)."""
    upgrades: dict[str, bool] = {}
    for spec in specs or ():
        if not isinstance(spec, dict) or not isinstance(spec.get("upgrade_type"), str):
            raise ConfigError(f"upgrade_configs entry without upgrade_type: {spec!r}")
        upgrades[spec["upgrade_type"].lower()] = flag(spec.get("enabled"), True)
    return MappingProxyType(upgrades)
