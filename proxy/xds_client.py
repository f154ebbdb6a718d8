"""The xDS client: REST-JSON long-poll discovery, ACK/NACK, last good config kept.

Contract with the control plane (``appmesh_api``):

* ``POST {endpoint}/v3/discovery:{listeners|clusters|routes|endpoints|secrets}?wait=30``
  with a JSON ``DiscoveryRequest``: ``version_info``, ``node`` (``id``, ``cluster``,
  ``metadata``), ``resource_names``, ``type_url``, ``response_nonce`` and, for a NACK,
  ``error_detail: {code: 3, message}``.
* ``200`` carries a ``DiscoveryResponse`` (``version_info``, ``resources`` with ``@type``,
  ``type_url``, ``nonce``); the server holds a request whose ``version_info`` is current
  for up to ``wait`` seconds and then answers ``304`` with no body.

One long-poll loop runs per resource type. Listeners and clusters are wildcard
subscriptions; routes, endpoints and secrets subscribe to the names the current
listeners and clusters reference, and a change of names re-polls at once (empty
``version_info``) so new references resolve without waiting for the next push.
Responses that arrive together are applied together after a short settle delay, and an
update that references routes, endpoints or secrets not yet received waits (bounded) for
them, the way Envoy warms clusters and listeners. The verdict goes back in the next
request: ACK (new version + nonce) or NACK (previous version + nonce + ``error_detail``); a
rejected version sent again is NACKed again, not re-applied, with back-off. When the
control plane is unreachable the proxy keeps serving its last good config and the loops
retry with jittered exponential back-off.

Several endpoints are replicas of one control plane (``docs/scale-out.md``). All loops
talk to the current one; the first request that fails there moves every loop to the next
in order, at once, and back-off starts only once each endpoint has failed in a row. A
replica killed outright is left as soon as the kernel resets its connections; one that
stops answering within ``connect_timeout`` (new connections) or the long-poll's own
timeout (``wait_seconds`` + 15 s, held ones) is left then. The new replica's versions
differ from the old one's (each has its own boot prefix), so it answers the first poll
at once with its full config, which the proxy applies like any update.

Each loop holds one keep-alive HTTP/1.1 connection (``_Connection``, parsed by httptools,
which the data path loads anyway) rather than an aiohttp session: the client is open in
every sidecar, and aiohttp was 12 MB of one. The connection is dropped on any error and
when the loops move to another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools

from envoy_bootstrap.envoy_types import (
    CLUSTER,
    CLUSTER_LOAD_ASSIGNMENT,
    LISTENER,
    ROUTE_CONFIGURATION,
    SECRET,
)
from proxy.config import unsupported
from proxy.config.protojson import ConfigError, type_url
from proxy.observe.stats import Stats
from proxy.xds_auth import Signer

log = logging.getLogger(__name__)

KINDS = {
    "listeners": LISTENER,
    "clusters": CLUSTER,
    "routes": ROUTE_CONFIGURATION,
    "endpoints": CLUSTER_LOAD_ASSIGNMENT,
    "secrets": SECRET,
}
WILDCARD_KINDS = ("listeners", "clusters")
INVALID_ARGUMENT = 3  # google.rpc.Code

Apply = Callable[[list[dict[str, Any]], str], Awaitable[None]]


@dataclass
class _Subscription:
    """One resource type: what was accepted, and what the next request must say."""

    kind: str
    type_url: str
    names: tuple[str, ...] = ()
    version: str = ""  # last accepted version_info
    nonce: str = ""
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: bool = False
    error: dict[str, Any] | None = None
    force_refresh: bool = False
    task: asyncio.Task[None] | None = None
    staged: tuple[str, str, dict[str, dict[str, Any]]] | None = None
    awaiting: set[str] = field(default_factory=set)  # newly referenced, not yet answered
    rejected: tuple[str, dict[str, Any]] | None = None  # (version, error_detail) last NACKed
    refused: list[str] = field(default_factory=list)  # staged resources this proxy can't serve
    verdict: asyncio.Future[bool] | None = None


class XdsClient:
    """Keeps a ``ProxyServer`` (through ``apply``) in step with the control plane."""

    def __init__(
        self,
        endpoint: str | Sequence[str],
        node: dict[str, Any],
        apply: Apply,
        *,
        wait_seconds: int = 30,
        stats: Stats | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        settle_seconds: float = 0.05,
        warm_timeout: float = 5.0,
        sign: Signer | None = None,
        connect_timeout: float = 2.0,
    ) -> None:
        self.sign = sign  # SigV4 headers for each request (proxy.xds_auth)
        listed = [endpoint] if isinstance(endpoint, str) else list(endpoint)
        self.endpoints = tuple(_url(one) for one in listed)
        if not self.endpoints:
            raise ValueError("XdsClient needs at least one control-plane endpoint")
        self._current = 0
        self.failovers = 0
        self.connect_timeout = connect_timeout
        self.node = node
        self.apply = apply
        self.wait_seconds = wait_seconds
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.settle_seconds = settle_seconds
        self.warm_timeout = warm_timeout
        self.connected = False
        self._unreachable = False  # reported as unreachable, not yet reachable again
        self.first_applied = asyncio.Event()
        self.subs = {kind: _Subscription(kind, url) for kind, url in KINDS.items()}
        self._connections: dict[str, _Connection] = {}  # per loop (kind)
        self._applier: asyncio.Task[None] | None = None
        self._warm_deadline: float | None = None
        if stats is not None:
            scope = stats.scope("control_plane")
            scope.gauge_fn("connected_state", lambda: int(self.connected))

    @property
    def endpoint(self) -> str:
        """The control-plane replica the loops talk to now."""
        return self.endpoints[self._current]

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the wildcard subscriptions (LDS, CDS)."""
        for kind in WILDCARD_KINDS:
            self._start_loop(self.subs[kind])

    async def stop(self) -> None:
        tasks = [s.task for s in self.subs.values() if s.task is not None]
        if self._applier is not None:
            tasks.append(self._applier)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

    def _start_loop(self, sub: _Subscription) -> None:
        if sub.task is not None:
            sub.task.cancel()
        sub.task = asyncio.get_running_loop().create_task(self._poll_loop(sub))

    # -- one resource type ------------------------------------------------------------------
    async def _poll_loop(self, sub: _Subscription) -> None:
        failures = repeats = 0
        while True:
            used = self.endpoint
            try:
                response = await self._request(sub, used)
            except (OSError, XdsHttpError, TimeoutError, ValueError) as exc:
                self._drop_connection(sub.kind)
                self._lost(sub, exc)
                failures += 1
                if self._fail_over(used, exc) and failures <= len(self.endpoints):
                    continue  # another replica, at once: back-off is for when all failed
                await asyncio.sleep(self._backoff(failures))
                continue
            if self._unreachable:
                self._unreachable = False
                log.info("xds: control plane %s reachable again", self.endpoint)
            self.connected = True
            failures = 0
            sub.error = None
            if response is None:
                continue
            if await self._stage(sub, response):
                repeats = 0
            else:
                # The version we rejected, again: NACK it again, but without hammering.
                repeats += 1
                await asyncio.sleep(self._backoff(repeats))

    def _lost(self, sub: _Subscription, exc: Exception) -> None:
        """One warning when the control plane goes away, not one per poll and retry."""
        self.connected = False
        if self._unreachable:
            log.debug("xds %s: %s", sub.kind, exc)
            return
        self._unreachable = True
        reason: object = exc or type(exc).__name__
        if _answered_without_http1(exc):
            reason = _NOT_HTTP1
        log.warning(
            "xds: control plane %s unreachable (%s: %s); serving the last good config and retrying",
            self.endpoint,
            sub.kind,
            reason,
        )

    def _fail_over(self, used: str, exc: Exception) -> bool:
        """Whether the next request goes to another endpoint than ``used``.

        The first loop to fail on the current endpoint moves them all to the next one;
        a loop whose failure was on an endpoint already left just follows.
        """
        if self.endpoint != used:
            return True
        if len(self.endpoints) == 1:
            return False
        self._current = (self._current + 1) % len(self.endpoints)
        self.failovers += 1
        log.warning(
            "xds: leaving control plane %s (%s); failing over to %s",
            used,
            exc or type(exc).__name__,
            self.endpoint,
        )
        return True

    def _backoff(self, attempt: int) -> float:
        """Jittered exponential back-off, ``backoff_base`` doubling up to ``backoff_max``."""
        delay = min(self.backoff_max, self.backoff_base * 2 ** min(attempt - 1, 10))
        return delay * (0.5 + random.random() / 2)

    async def _request(self, sub: _Subscription, endpoint: str) -> dict[str, Any] | None:
        """One long-poll to ``endpoint``; ``None`` on 304 (nothing new within ``wait``)."""
        body: dict[str, Any] = {
            "version_info": "" if sub.force_refresh else sub.version,
            "node": self.node,
            "resource_names": list(sub.names),
            "type_url": sub.type_url,
            "response_nonce": sub.nonce,
        }
        if sub.error is not None:
            body["error_detail"] = sub.error
        sub.force_refresh = False
        url = f"{endpoint}/v3/discovery:{sub.kind}?wait={self.wait_seconds}"
        data = json.dumps(body).encode()
        headers = self.sign(url, data) if self.sign else {"content-type": "application/json"}
        conn = self._connection(sub.kind, endpoint)
        async with asyncio.timeout(self.wait_seconds + 15):
            status, answer = await conn.post(url, data, headers, self.connect_timeout)
        if status == 304:
            return None
        if status != 200:
            text = answer.decode("utf-8", "replace").strip()
            raise XdsHttpError(f"HTTP {status} from {url}: {text}")
        response = json.loads(answer)
        if not isinstance(response, dict):
            raise ValueError("DiscoveryResponse is not an object")
        return response

    def _connection(self, kind: str, endpoint: str) -> _Connection:
        """The loop's connection to ``endpoint`` (a new one after a failover)."""
        conn = self._connections.get(kind)
        if conn is None or conn.endpoint != endpoint:
            if conn is not None:
                conn.close()
            conn = self._connections[kind] = _Connection(endpoint)
        return conn

    def _drop_connection(self, kind: str) -> None:
        conn = self._connections.pop(kind, None)
        if conn is not None:
            conn.close()

    async def _stage(self, sub: _Subscription, response: dict[str, Any]) -> bool:
        """Hand a response to the applier and wait for its verdict.

        Returns ``False`` when the response repeats a version already rejected: it is
        NACKed again without being applied.
        """
        version = str(response.get("version_info", ""))
        nonce = str(response.get("nonce", ""))
        if sub.rejected is not None and sub.rejected[0] == version:
            sub.nonce, sub.error = nonce, sub.rejected[1]
            return False
        try:
            resources = _by_name(sub, response.get("resources") or [])
        except ConfigError as exc:
            sub.nonce, sub.error = nonce, {"code": INVALID_ARGUMENT, "message": str(exc)}
            sub.rejected = (version, sub.error)
            return True
        sub.refused = self._refuse_unsupported(sub, resources)
        sub.staged = (version, nonce, resources)
        sub.awaiting.clear()
        sub.verdict = asyncio.get_running_loop().create_future()
        self._schedule_apply()
        await asyncio.shield(sub.verdict)
        return True

    @staticmethod
    def _refuse_unsupported(sub: _Subscription, resources: dict[str, dict[str, Any]]) -> list[str]:
        """Take out the listeners and clusters this proxy cannot serve (TLS, HTTP/2, ...).

        As Envoy does with a resource it cannot load, each keeps its last accepted version
        (or is left out) while the rest of the update goes live, and the update is NACKed
        with every reason, so nothing runs downgraded and nothing else is held back.
        """
        reasons = []
        for name, resource in list(resources.items()):
            reason = unsupported.problem(sub.type_url, resource)
            if reason is None:
                continue
            reasons.append(reason)
            previous = sub.resources.get(name)
            if previous is not None and unsupported.problem(sub.type_url, previous) is None:
                resources[name] = previous
            else:
                del resources[name]
        return reasons

    # -- applying ---------------------------------------------------------------------------
    def _schedule_apply(self) -> None:
        if self._applier is None or self._applier.done():
            self._applier = asyncio.get_running_loop().create_task(self._apply_staged())

    async def _apply_staged(self) -> None:
        await asyncio.sleep(self.settle_seconds)
        staged = [s for s in self.subs.values() if s.staged is not None]
        if not staged:
            return
        merged = {k: s.staged[2] if s.staged else s.resources for k, s in self.subs.items()}
        if self._resubscribe(merged) and not self._warm_expired():
            # Wait for the newly referenced routes/endpoints; their response re-triggers us.
            self._applier = None
            return
        self._warm_deadline = None
        for sub in self.subs.values():
            sub.awaiting.clear()  # answered, or waited for long enough
        staged = [s for s in self.subs.values() if s.staged is not None]
        merged = {k: s.staged[2] if s.staged else s.resources for k, s in self.subs.items()}
        resources = [r for kind in KINDS for r in merged[kind].values()]
        try:
            await self.apply(resources, self._combined_version(staged))
        except Exception as exc:  # ConfigError, or any failure: NACK and keep the old config
            log.warning("xds: rejecting update: %s", exc, exc_info=not isinstance(exc, ConfigError))
            self._settle(staged, accepted=False, message=str(exc))
            return
        self._settle(staged, accepted=True)
        for sub in self.subs.values():
            # A rejection may have been another type's fault: let every type try again.
            if not sub.refused:
                sub.rejected = None
        self.first_applied.set()

    def _settle(self, staged: list[_Subscription], accepted: bool, message: str = "") -> None:
        for sub in staged:
            assert sub.staged is not None
            version, nonce, resources = sub.staged
            sub.nonce = nonce
            if accepted and sub.refused:
                # Applied without what it could not serve: live, but NACKed with the reasons.
                message = "; ".join(sub.refused)
                log.warning("xds: refusing part of %s version %s: %s", sub.kind, version, message)
                sub.resources, sub.received = resources, True
                sub.error = {"code": INVALID_ARGUMENT, "message": message}
                sub.rejected = (version, sub.error)
            elif accepted:
                sub.version, sub.resources, sub.received = version, resources, True
                sub.rejected = None
            else:
                sub.error = {"code": INVALID_ARGUMENT, "message": message}
                sub.rejected = (version, sub.error)
            sub.staged = None
            if sub.verdict is not None and not sub.verdict.done():
                sub.verdict.set_result(accepted)
        if not accepted:
            self._resubscribe({k: s.resources for k, s in self.subs.items()})

    def _combined_version(self, staged: list[_Subscription]) -> str:
        versions = {
            kind: (s.staged[0] if s.staged else s.version)
            for kind, s in self.subs.items()
            if s.staged or s.received
        }
        distinct = set(versions.values())
        if len(distinct) == 1:
            return distinct.pop()
        return ",".join(f"{kind}:{v}" for kind, v in versions.items())

    def _resubscribe(self, merged: dict[str, dict[str, dict[str, Any]]]) -> bool:
        """Follow references to routes/endpoints/secrets; True if an update must wait.

        It waits for names referenced for the first time (and, at start-up, for both
        listeners and clusters) so a new listener never goes live without its routes.
        Names the control plane already answered without are not waited for again.
        """
        wanted = {
            "routes": set(_route_names(merged["listeners"].values())),
            "endpoints": set(_eds_names(merged["clusters"].values())),
            "secrets": set(
                _secret_names([*merged["listeners"].values(), *merged["clusters"].values()])
            ),
        }
        wait = any(not (self.subs[k].received or self.subs[k].staged) for k in WILDCARD_KINDS)
        for kind, names in wanted.items():
            sub = self.subs[kind]
            ordered = tuple(sorted(names))
            if ordered == sub.names:
                continue
            added = names - set(sub.names)
            sub.names = ordered
            sub.force_refresh = True
            if ordered:
                self._restart(sub)
            elif sub.task is not None:
                sub.task.cancel()
                sub.task = None
            sub.awaiting |= added - set(merged[kind])
            sub.awaiting &= names
        return wait or any(self.subs[k].awaiting for k in ("routes", "endpoints", "secrets"))

    def _restart(self, sub: _Subscription) -> None:
        """Re-poll with the new names now.

        A response of this type still waiting for its verdict was for the old names: it is
        set aside (neither ACKed nor NACKed) and the loop asks again with the new names.
        """
        if sub.verdict is not None and not sub.verdict.done():
            assert sub.staged is not None
            sub.nonce = sub.staged[1]
            sub.staged = None
            sub.verdict.set_result(False)
            return
        self._start_loop(sub)

    def _warm_expired(self) -> bool:
        now = asyncio.get_running_loop().time()
        if self._warm_deadline is None:
            self._warm_deadline = now + self.warm_timeout
            loop = asyncio.get_running_loop()
            loop.call_later(self.warm_timeout + 0.01, self._schedule_apply)
        return now >= self._warm_deadline


def _url(endpoint: str) -> str:
    """``host:port`` or a URL -> the URL discovery requests are posted under."""
    return (endpoint if "://" in endpoint else f"http://{endpoint}").rstrip("/")


def _by_name(sub: _Subscription, resources: list[Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    key = "cluster_name" if sub.kind == "endpoints" else "name"
    for resource in resources:
        if not isinstance(resource, dict) or type_url(resource) != sub.type_url:
            raise ConfigError(f"{sub.kind}: unexpected resource type {type_url(resource)!r}")
        name = resource.get(key)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{sub.kind}: resource without {key}")
        out[name] = resource
    return out


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _walk(child)
    elif isinstance(value, list):
        for child in value:
            yield from _walk(child)


def _route_names(listeners: Any) -> Iterator[str]:
    """RDS names referenced by HTTP connection managers."""
    for node in _walk(list(listeners)):
        rds = node.get("rds")
        if "stat_prefix" in node and isinstance(rds, dict) and rds.get("route_config_name"):
            yield str(rds["route_config_name"])


def _eds_names(clusters: Any) -> Iterator[str]:
    for cluster in clusters:
        if cluster.get("type") == "EDS":
            eds = cluster.get("eds_cluster_config") or {}
            yield str(eds.get("service_name") or cluster.get("name"))


def _secret_names(resources: list[Any]) -> Iterator[str]:
    """Names of the SDS secrets the control plane sends (``SdsSecretConfig``: a ``name``
    next to ``sds_config: {ads: {}}``); a local SDS agent's are ``proxy.sds_client``'s."""
    for node in _walk(resources):
        config = node.get("sds_config")
        if isinstance(config, dict) and "ads" in config and isinstance(node.get("name"), str):
            yield node["name"]


_NOT_HTTP1 = (
    "it does not answer HTTP/1.1: is it gRPC ADS (appmesh-local's --xds-port, 15010)? "
    "appmesh-proxy speaks REST xDS, which appmesh-local serves on its main port (4567)"
)


def _answered_without_http1(exc: Exception) -> bool:
    """The server answered, but not with an HTTP/1.1 status line: an HTTP/2-only server
    such as a gRPC ADS port opens with its SETTINGS frame instead."""
    return isinstance(exc, XdsHttpError) and exc.not_http1


class XdsHttpError(Exception):
    """An answer that is not a usable HTTP/1.1 response, or a status other than 200/304."""

    def __init__(self, message: str, *, not_http1: bool = False) -> None:
        super().__init__(message)
        self.not_http1 = not_http1


class _Connection:
    """One keep-alive HTTP/1.1 connection to a control-plane endpoint; one request at a
    time (each long-poll loop has its own). Responses are parsed by httptools."""

    def __init__(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        self.endpoint = endpoint
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.secure else 80)
        self.authority = parts.netloc
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], connect_timeout: float
    ) -> tuple[int, bytes]:
        """``POST url``: the status and the body. Raises ``OSError``, ``TimeoutError`` or
        ``XdsHttpError``; the caller drops the connection then. A kept-alive connection
        the server closed while it idled is replaced once, at once."""
        reused = self._writer is not None and not self._writer.is_closing()
        if not reused:
            await self._open(connect_timeout)
        try:
            return await self._exchange(url, body, headers)
        except (ConnectionError, _ClosedBeforeAnswer):
            if not reused:
                raise
        self.close()
        await self._open(connect_timeout)
        return await self._exchange(url, body, headers)

    async def _exchange(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        fields = {"Host": self.authority, "User-Agent": "appmesh-proxy", **headers}
        fields["Content-Length"] = str(len(body))
        head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        self._writer.write(head.encode("latin-1") + b"\r\n" + body)
        response = _Response()
        parser = httptools.HttpResponseParser(response)
        while not response.complete:
            chunk = await self._reader.read(65536)
            if not chunk and not response.began:
                raise _ClosedBeforeAnswer(f"{self.endpoint} closed the connection")
            if not chunk:
                raise XdsHttpError(f"{self.endpoint} closed the connection mid-response")
            try:
                parser.feed_data(chunk)
            except httptools.HttpParserError as exc:
                raise XdsHttpError(f"bad response: {exc}", not_http1=not response.began) from exc
        if not parser.should_keep_alive():
            self.close()
        return parser.get_status_code(), b"".join(response.body)

    async def _open(self, connect_timeout: float) -> None:
        context = ssl.create_default_context() if self.secure else None
        async with asyncio.timeout(connect_timeout):
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, ssl=context
            )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = self._reader = None


class _ClosedBeforeAnswer(XdsHttpError):
    """The server closed the connection before any byte of its answer."""


class _Response:
    """httptools' callbacks for one response."""

    def __init__(self) -> None:
        self.began = False
        self.complete = False
        self.body: list[bytes] = []

    def on_status(self, status: bytes) -> None:
        self.began = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
