"""The REST xDS client: REST-JSON long-poll discovery (State of the World).

Contract with the control plane (``appmesh_api``):

* ``POST {endpoint}/v3/discovery:{listeners|clusters|routes|endpoints|secrets}?wait=30``
  with a JSON ``DiscoveryRequest``: ``version_info``, ``node`` (``id``, ``cluster``,
  ``metadata``), ``resource_names``, ``type_url``, ``response_nonce`` and, for a NACK,
  ``error_detail: {code: 3, message}``.
* ``200`` carries a ``DiscoveryResponse`` (``version_info``, ``resources`` with ``@type``,
  ``type_url``, ``nonce``); the server holds a request whose ``version_info`` is current
  for up to ``wait`` seconds and then answers ``304`` with no body.

One long-poll loop runs per resource type; what the responses mean (subscriptions that
follow references, warming, applying, verdicts, failover) is ``state.DiscoveryState``'s.
A change of referenced names re-polls that type at once (empty ``version_info``) so new
references resolve without waiting for the next push. The verdict goes back in the next
request: ACK (new version + nonce) or NACK (previous version + nonce + ``error_detail``); a
rejected version sent again is NACKed again, not re-applied, with back-off. When the
control plane is unreachable the proxy keeps serving its last good config and the loops
retry with jittered exponential back-off.

Several endpoints are replicas of one control plane (``docs/scale-out.md``). All loops
talk to the current one; the first request that fails there moves every loop to the next
in order, at once. A replica killed outright is left as soon as the kernel resets its
connections; one that stops answering within ``connect_timeout`` (new connections) or
the long-poll's own timeout (``wait_seconds`` + 15 s, held ones) is left then. The new
replica's versions
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
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httptools

from proxy.config.protojson import ConfigError
from proxy.observe.stats import Stats
from proxy.xds.state import (
    INVALID_ARGUMENT,
    WILDCARD_KINDS,
    Apply,
    DiscoveryState,
    Subscription,
    by_name,
    endpoint_urls,
)
from proxy.xds_auth import Signer

log = logging.getLogger(__name__)


class XdsClient(DiscoveryState):
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
        agent_cluster: str = "",
    ) -> None:
        super().__init__(
            endpoint_urls(endpoint),
            node,
            apply,
            stats=stats,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            settle_seconds=settle_seconds,
            warm_timeout=warm_timeout,
            connect_timeout=connect_timeout,
            agent_cluster=agent_cluster,
        )
        self.sign = sign  # SigV4 headers for each request (proxy.xds_auth)
        self.wait_seconds = wait_seconds
        self._connections: dict[str, _Connection] = {}  # per loop (kind)

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

    def _start_loop(self, sub: Subscription) -> None:
        if sub.task is not None:
            sub.task.cancel()
        sub.task = asyncio.get_running_loop().create_task(self._poll_loop(sub))

    # -- one resource type ------------------------------------------------------------------
    async def _poll_loop(self, sub: Subscription) -> None:
        failures = repeats = 0
        while True:
            used = self.endpoint
            try:
                response = await self._request(sub, used)
            except (OSError, XdsHttpError, TimeoutError, ValueError) as exc:
                self._drop_connection(sub.kind)
                reason = _NOT_HTTP1 if _answered_without_http1(exc) else None
                self._lost(sub.kind, exc, reason)
                failures += 1
                if self._fail_over(used, exc) and failures <= len(self.endpoints):
                    continue  # another replica, at once: back-off is for when all failed
                await asyncio.sleep(self._backoff(failures))
                continue
            self._reached()
            failures = 0
            sub.error = None
            if response is None:
                continue
            if await self._stage_response(sub, response):
                repeats = 0
            else:
                # The version we rejected, again: NACK it again, but without hammering.
                repeats += 1
                await asyncio.sleep(self._backoff(repeats))

    async def _request(self, sub: Subscription, endpoint: str) -> dict[str, Any] | None:
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

    async def _stage_response(self, sub: Subscription, response: dict[str, Any]) -> bool:
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
            resources = by_name(sub, response.get("resources") or [])
        except ConfigError as exc:
            sub.nonce, sub.error = nonce, {"code": INVALID_ARGUMENT, "message": str(exc)}
            sub.rejected = (version, sub.error)
            return True
        await self._stage(sub, version, nonce, resources)
        return True

    # -- names --------------------------------------------------------------------------------
    def _names_changed(self, sub: Subscription, added: set[str], removed: set[str]) -> None:
        """Re-poll with the new names now (or stop polling a type nothing references).

        A response of this type still waiting for its verdict was for the old names: it is
        set aside (neither ACKed nor NACKed) and the loop asks again with the new names.
        """
        sub.force_refresh = True
        if not sub.names:
            if sub.task is not None:
                sub.task.cancel()
                sub.task = None
            return
        if sub.verdict is not None and not sub.verdict.done():
            assert sub.staged is not None
            sub.nonce = sub.staged[1]
            sub.staged = None
            sub.verdict.set_result(False)
            return
        self._start_loop(sub)


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
