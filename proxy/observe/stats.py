"""Envoy-named statistics as plain ints in dicts.

Each stats *scope* (``cluster.<name>.``, ``http.<stat_prefix>.``, ``listener.<addr>.``,
``tcp.<stat_prefix>.``) owns two dicts keyed by the short stat name, so the request path
does ``scope.counters["upstream_rq_total"] += 1`` with no string building. Gauges that
mirror live state (active connections, ejections) are read through callables only when
someone asks (admin, Prometheus), so keeping them costs nothing per request.

Names and Prometheus tag extraction follow Envoy, so dashboards and the App Mesh
walkthroughs (``upstream_rq_retry``, ``outlier_detection.ejections_active``...) read the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from proxy.config.observability import StatsTags

# Counters Envoy always shows for a cluster, so /stats lists zeros as Envoy does.
CLUSTER_COUNTERS = (
    "upstream_cx_total",
    "upstream_cx_connect_fail",
    "upstream_cx_connect_timeout",
    "upstream_cx_overflow",
    "upstream_cx_destroy",
    "upstream_cx_none_healthy",
    "upstream_cx_idle_timeout",
    "upstream_cx_protocol_error",
    "upstream_flow_control_paused_reading_total",
    "upstream_flow_control_resumed_reading_total",
    "upstream_flow_control_backed_up_total",
    "upstream_flow_control_drained_total",
    "upstream_cx_rx_bytes_total",
    "upstream_cx_tx_bytes_total",
    "upstream_rq_total",
    "upstream_rq_completed",
    "upstream_rq_pending_total",
    "upstream_rq_pending_overflow",
    "upstream_rq_cancelled",
    "upstream_rq_timeout",
    "upstream_rq_per_try_timeout",
    "upstream_rq_retry",
    "upstream_rq_retry_success",
    "upstream_rq_retry_overflow",
    "upstream_rq_retry_limit_exceeded",
    "upstream_rq_rx_reset",
    "upstream_rq_tx_reset",
    "lb_healthy_panic",
    "outlier_detection.ejections_enforced_total",
    "outlier_detection.ejections_enforced_consecutive_5xx",
    "outlier_detection.ejections_detected_consecutive_5xx",
    "outlier_detection.ejections_enforced_consecutive_gateway_failure",
    "outlier_detection.ejections_detected_consecutive_gateway_failure",
    "outlier_detection.ejections_overflow",
    "outlier_detection.ejections_total",
)
HEALTH_CHECK_COUNTERS = (
    "health_check.attempt",
    "health_check.success",
    "health_check.failure",
    "health_check.network_failure",
    "health_check.verify_cluster",
)
HTTP_COUNTERS = (
    "downstream_cx_total",
    "downstream_cx_http1_total",
    "downstream_cx_http2_total",
    "downstream_cx_destroy",
    "downstream_cx_protocol_error",
    "downstream_cx_idle_timeout",
    "downstream_cx_drain_close",
    "downstream_cx_upgrades_total",
    "downstream_rq_header_timeout",
    "downstream_rq_too_large_headers",
    "downstream_rq_total",
    "downstream_rq_http1_total",
    "downstream_rq_http2_total",
    "downstream_rq_completed",
    "downstream_rq_1xx",
    "downstream_rq_2xx",
    "downstream_rq_3xx",
    "downstream_rq_4xx",
    "downstream_rq_5xx",
    "downstream_rq_timeout",
    "downstream_rq_max_duration_reached",
    "downstream_rq_rx_reset",
    "downstream_rq_tx_reset",
    "no_route",
    "no_cluster",
    "rq_direct_response",
    "rq_redirect",
)
TCP_COUNTERS = (
    "downstream_cx_total",
    "downstream_cx_no_route",
    "downstream_cx_rx_bytes_total",
    "downstream_cx_tx_bytes_total",
    "idle_timeout",
    "upstream_flush_total",
)
# Envoy's TLS counters, shown for listeners and clusters that carry a TLS context.
SSL_COUNTERS = (
    "ssl.handshake",
    "ssl.connection_error",
    "ssl.no_certificate",
    "ssl.fail_verify_no_cert",
    "ssl.fail_verify_error",
    "ssl.fail_verify_san",
)
# Envoy's HTTP/2 codec stats that this proxy's codecs see: rooted at ``http2.`` for the
# connection managers' codec, at ``cluster.<name>.http2.`` for upstream connections.
HTTP2_COUNTERS = ("rx_reset", "tx_reset", "trailers", "goaway_sent")
HTTP2_MESSAGING_COUNTERS = ("rx_messaging_error", "too_many_header_frames")
HTTP2_DOWNSTREAM_COUNTERS = (
    *HTTP2_COUNTERS, *HTTP2_MESSAGING_COUNTERS, "header_overflow", "inbound_empty_frames_flood",
    "inbound_priority_frames_flood", "inbound_window_update_frames_flood", "outbound_flood",
    "outbound_control_flood",
)  # fmt: skip
HTTP2_UPSTREAM_COUNTERS = tuple(
    f"http2.{name}"
    for name in (*HTTP2_COUNTERS, *HTTP2_MESSAGING_COUNTERS, "stream_refused_errors")
)
LISTENER_COUNTERS = (
    "downstream_cx_total",
    "downstream_cx_destroy",
    "no_filter_chain_match",
)
# Envoy's ``listener_manager.`` counters for listener updates (its gauges are read live).
LISTENER_MANAGER_COUNTERS = (
    "listener_added",
    "listener_modified",
    "listener_removed",
    "listener_in_place_updated",
    "listener_create_failure",  # a listener that could not bind (Envoy counts it so too)
)

# Prometheus: scope kind → (metric prefix, tag name), as Envoy's default tag extractors.
_PROM_SCOPES = {
    "cluster": ("envoy_cluster_", "envoy_cluster_name"),
    "http": ("envoy_http_", "envoy_http_conn_manager_prefix"),
    "listener": ("envoy_listener_", "envoy_listener_address"),
    "tcp": ("envoy_tcp_", "envoy_tcp_prefix"),
    "server": ("envoy_server_", ""),
    "control_plane": ("envoy_control_plane_", ""),
}
_CODE_CLASS = re.compile(r"^(.*_rq)_([1-5])xx$")
_CODE = re.compile(r"^(.*_rq)_(\d{3})$")


class StatsScope:
    """Counters and gauges under one prefix, e.g. ``cluster.cds_egress_mesh_blue_http_80.``."""

    __slots__ = ("counters", "gauge_fns", "gauges", "kind", "prefix", "tag")

    def __init__(self, kind: str, tag: str, counters: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.tag = tag
        self.prefix = f"{kind}.{tag}." if tag else f"{kind}."
        self.counters: dict[str, int] = dict.fromkeys(counters, 0)
        self.gauges: dict[str, int] = {}
        self.gauge_fns: dict[str, Callable[[], int]] = {}

    def inc(self, name: str, amount: int = 1) -> None:
        """Increment a counter that may not exist yet (off the hottest paths)."""
        counters = self.counters
        counters[name] = counters.get(name, 0) + amount

    def gauge_fn(self, name: str, fn: Callable[[], int]) -> None:
        """Expose a gauge computed from live state when read."""
        self.gauge_fns[name] = fn

    def items(self) -> Iterator[tuple[str, int, bool]]:
        """``(full name, value, is_counter)`` for every stat in the scope."""
        prefix = self.prefix
        for name, value in self.counters.items():
            yield prefix + name, value, True
        for name, value in self.gauges.items():
            yield prefix + name, value, False
        for name, fn in self.gauge_fns.items():
            yield prefix + name, int(fn()), False


class Stats:
    """The store of all scopes; scopes live as long as the process, like Envoy's counters."""

    def __init__(self) -> None:
        self._scopes: dict[tuple[str, str], StatsScope] = {}

    def scope(self, kind: str, tag: str = "", counters: tuple[str, ...] = ()) -> StatsScope:
        """The scope ``kind.tag.``, created on first use and reused across config versions."""
        key = (kind, tag)
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = StatsScope(kind, tag, counters)
        else:
            for name in counters:
                scope.counters.setdefault(name, 0)
        return scope

    def drop_gauges(self, kind: str, tag: str) -> None:
        """Stop reading live gauges of a removed object (its counters stay)."""
        scope = self._scopes.get((kind, tag))
        if scope is not None:
            scope.gauge_fns.clear()

    def scopes(self, kind: str | None = None) -> list[StatsScope]:
        """The scopes of one kind (all when None), for exporters that read them whole."""
        return [s for (k, _), s in list(self._scopes.items()) if kind is None or k == kind]

    def snapshot(self) -> list[tuple[str, int, bool]]:
        """All stats sorted by name, as ``/stats`` prints them."""
        rows = [row for scope in list(self._scopes.values()) for row in scope.items()]
        rows.sort(key=lambda row: row[0])
        return rows

    def get(self, name: str) -> int | None:
        """One stat by full name (tests and the admin filter use this)."""
        for full, value, _ in self.snapshot():
            if full == name:
                return value
        return None

    def render_text(self, name_filter: re.Pattern[str] | None = None) -> str:
        """Envoy's ``/stats`` text format: ``name: value`` per line."""
        lines = [
            f"{name}: {value}"
            for name, value, _ in self.snapshot()
            if name_filter is None or name_filter.search(name)
        ]
        return "\n".join(lines) + ("\n" if lines else "")

    def render_prometheus(self, tags: StatsTags | None = None) -> str:
        """Envoy's ``/stats/prometheus`` format with its default tag extraction, plus the
        bootstrap's ``stats_tags``: regex extractors, and fixed tags on every stat."""
        tags = tags or StatsTags()
        families: dict[str, tuple[str, list[str]]] = {}
        fixed = [f'{prometheus_label(k)}="{_escape(v)}"' for k, v in tags.fixed]
        for scope in list(self._scopes.values()):
            base, tag_name = _PROM_SCOPES.get(scope.kind, (f"envoy_{scope.kind}_", ""))
            for full, value, is_counter in scope.items():
                tag, short, extracted = extract_tags(scope, full, tags)
                metric, labels = _prometheus_name(short, base)
                labels[:0] = [f'{prometheus_label(k)}="{_escape(v)}"' for k, v in extracted]
                if tag_name and tag:
                    labels.insert(0, f'{tag_name}="{_escape(tag)}"')
                labels[:0] = fixed
                label_text = "{" + ",".join(labels) + "}" if labels else ""
                kind = "counter" if is_counter else "gauge"
                families.setdefault(metric, (kind, []))[1].append(f"{metric}{label_text} {value}")
        out: list[str] = []
        for metric in sorted(families):
            kind, samples = families[metric]
            out.append(f"# TYPE {metric} {kind}")
            out.extend(sorted(samples))
        return "\n".join(out) + "\n"


def extract_tags(
    scope: StatsScope, full: str, tags: StatsTags
) -> tuple[str, str, list[tuple[str, str]]]:
    """Apply the bootstrap's regex extractors to one stat, as Envoy's tag producer does:
    each runs on the whole name, its first group is cut out and its second (or first)
    group is the value. Returns the scope's tag and the stat's short name after the cuts,
    and the tags found. A stat no extractor matches costs one search per extractor."""
    prefix = scope.prefix
    if not tags.regex:
        return scope.tag, full[len(prefix) :], []
    cut: set[int] = set()
    found: list[tuple[str, str]] = []
    for name, pattern in tags.regex:
        match = pattern.search(full)
        if match is None or match.start(1) < 0:
            continue
        found.append((name, match.group(2) if pattern.groups >= 2 else match.group(1)))
        cut.update(range(*match.span(1)))
    if not cut:
        return scope.tag, full[len(prefix) :], []
    start = len(scope.kind) + 1
    tag = "".join(full[i] for i in range(start, len(prefix) - 1) if i not in cut).strip(".")
    short = "".join(full[i] for i in range(len(prefix), len(full)) if i not in cut)
    return tag, short, found


def _prometheus_name(short: str, base: str) -> tuple[str, list[str]]:
    """Metric name and labels for one stat: response codes become labels, as in Envoy."""
    labels: list[str] = []
    if match := _CODE_CLASS.match(short):
        short = match.group(1) + "_xx"
        labels.append(f'envoy_response_code_class="{match.group(2)}"')
    elif match := _CODE.match(short):
        short = match.group(1)
        labels.append(f'envoy_response_code="{match.group(2)}"')
    return base + re.sub(r"[^a-zA-Z0-9_]", "_", short), labels


def prometheus_label(name: str) -> str:
    """A tag name as a Prometheus label: Envoy turns ``appmesh.mesh`` into ``appmesh_mesh``."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def tag_name(kind: str) -> str:
    """The tag Envoy's default extractors give a scope kind (``envoy.cluster_name``...)."""
    return _PROM_SCOPES.get(kind, ("", ""))[1].replace("envoy_", "envoy.", 1)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
