"""The local SDS agent client: secrets from SPIRE's agent (or any SDS server) on a Unix socket.

App Mesh's ``sds`` certificate and trust sources name a secret that Envoy fetches from
a local SDS agent over ``APPMESH_SDS_SOCKET_PATH`` (the bootstrap's static cluster
``static_cluster_sds_unix_socket``), with Envoy's gRPC ``SecretDiscoveryService
.StreamSecrets`` in state-of-the-world mode. This client does the same:

* one stream on the agent's socket, subscribed to every secret name the current TLS
  contexts reference (``watch``); a change of names is a new ``DiscoveryRequest`` on the
  open stream, as Envoy's gRPC mux sends;
* each response is checked (a certificate and key that load, a trust bundle that parses)
  and ACKed (its ``version_info`` and ``nonce``) or NACKed (the previous version, the
  nonce and ``error_detail``); a NACKed response changes nothing: the last good secrets
  stay;
* when the stream fails or ends it is opened again with jittered exponential back-off,
  and the secrets already received stay in use meanwhile, as Envoy keeps them;
* every accepted change calls ``on_change``, and the server compiles its config again
  with the new secrets: new connections get them, open ones keep theirs.

gRPC is spoken here over h2 (``proxy.xds.grpc_stream``, which the Delta ADS client
shares: one bidirectional stream, length-prefixed protobuf messages, ``grpc-status``
trailers) rather than with grpcio, whose import and channel cost a sidecar about
12 MB; protobuf (for the messages) and h2 are imported only when the first local secret
is watched, so a mesh without ``sds`` never loads them. The
agent's reason for being unreachable, and each secret's arrival, are logged once, and
``status`` gives them to the admin's ``/config_dump``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

from envoy_bootstrap.envoy_types import SECRET
from proxy.config.bootstrap import SdsAgent
from proxy.config.protojson import ConfigError
from proxy.config.tls import check_secret
from proxy.observe.stats import Stats
from proxy.xds.grpc_stream import GrpcError, GrpcStream

log = logging.getLogger(__name__)

INVALID_ARGUMENT = 3  # google.rpc.Code
STREAM_SECRETS = "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets"
SECRET_COUNTERS = ("update_attempt", "update_success", "update_rejected", "update_failure")


class SdsAgentClient:
    """Keeps the secrets the config names in step with the local SDS agent."""

    def __init__(
        self,
        agent: SdsAgent,
        node: dict[str, Any],
        on_change: Callable[[], None],
        *,
        stats: Stats | None = None,
        backoff_base: float = 0.25,
        backoff_max: float = 10.0,
    ) -> None:
        self.agent = agent
        self.node = node
        self.on_change = on_change
        self.stats = stats or Stats()
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.names: tuple[str, ...] = ()
        self.secrets: dict[str, dict[str, Any]] = {}  # last good, by name
        self.versions: dict[str, str] = {}  # the response version each secret came in
        self.version = ""  # last accepted version_info
        self.nonce = ""
        self.status = "not connected yet"
        self.last_rejection = ""
        self._task: asyncio.Task[None] | None = None
        self._requests: asyncio.Queue[Any] | None = None
        self._error: dict[str, Any] | None = None

    @property
    def target(self) -> str:
        return f"unix:{self.agent.socket_path}"

    def watch(self, names: Iterable[str]) -> None:
        """Subscribe to exactly ``names``; starts the stream on the first name."""
        wanted = tuple(sorted(set(names)))
        if wanted == self.names:
            return
        self.names = wanted
        for name in list(self.secrets):
            if name not in wanted:
                del self.secrets[name]
                self.versions.pop(name, None)
        for name in wanted:
            self.stats.scope("sds", name, SECRET_COUNTERS)
        if self._task is None and wanted:
            self._task = asyncio.get_running_loop().create_task(self._run())
        elif self._requests is not None:
            self._requests.put_nowait(self._request())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    # -- the stream -------------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                answered = await self._stream()
                reason = "the agent closed the stream"
            except GrpcError as exc:
                answered, reason = False, str(exc)
            except (OSError, ConnectionError, ValueError) as exc:
                answered, reason = False, f"{type(exc).__name__}: {exc}"
            failures = 1 if answered else failures + 1
            self._unavailable(reason)
            await asyncio.sleep(self._backoff(failures))

    async def _stream(self) -> bool:
        """One stream until it fails; True if the agent answered on it."""
        from envoy.service.discovery.v3 import discovery_pb2

        answered = False
        self._requests = asyncio.Queue()
        stream = await GrpcStream.open_unix(self.agent.socket_path, STREAM_SECRETS)
        writer = asyncio.get_running_loop().create_task(self._write(stream))
        try:
            self._requests.put_nowait(self._request())
            while True:
                message = await stream.read()
                if message is None:
                    return answered
                response = discovery_pb2.DiscoveryResponse.FromString(message)
                if not answered:
                    answered = True
                    self._connected()
                self._requests.put_nowait(self._handle(response))
        finally:
            writer.cancel()
            stream.close()
            self._requests = None

    async def _write(self, stream: GrpcStream) -> None:
        assert self._requests is not None
        queue = self._requests
        while True:
            await stream.send((await queue.get()).SerializeToString())

    def _request(self) -> Any:
        from envoy.config.core.v3 import base_pb2
        from envoy.service.discovery.v3 import discovery_pb2
        from google.protobuf import json_format

        node = json_format.ParseDict(self.node, base_pb2.Node(), ignore_unknown_fields=True)
        request = discovery_pb2.DiscoveryRequest(
            version_info=self.version,
            node=node,
            resource_names=list(self.names),
            type_url=SECRET,
            response_nonce=self.nonce,
        )
        if self._error is not None:
            request.error_detail.code = self._error["code"]
            request.error_detail.message = self._error["message"]
        return request

    # -- one response -----------------------------------------------------------------------
    def _handle(self, response: Any) -> Any:
        """Check, keep or reject one ``DiscoveryResponse``; the ACK or NACK to send."""
        self.nonce = response.nonce
        try:
            received = _secrets(response)
        except ConfigError as exc:
            self._reject(response.version_info, str(exc), ())
            return self._request()
        for name in received:
            self.stats.scope("sds", name, SECRET_COUNTERS).inc("update_attempt")
        problem = self._problem(received)
        if problem is not None:
            self._reject(response.version_info, problem, received)
            return self._request()
        self.version, self._error = response.version_info, None
        changed = self._keep(received, response.version_info)
        if changed:
            self.on_change()
        return self._request()

    def _problem(self, received: dict[str, dict[str, Any]]) -> str | None:
        for name, secret in received.items():
            try:
                check_secret(secret)
            except ConfigError as exc:
                return f"SDS secret {name!r}: {exc}"
        return None

    def _keep(self, received: dict[str, dict[str, Any]], version: str) -> bool:
        """Store the watched secrets of an accepted response; True if one changed."""
        changed = False
        for name, secret in received.items():
            if name not in self.names:
                continue  # an agent may send more than asked (SPIRE sends all it has)
            self.stats.scope("sds", name, SECRET_COUNTERS).inc("update_success")
            if self.secrets.get(name) != secret:
                first = name not in self.secrets
                self.secrets[name], self.versions[name] = secret, version
                changed = True
                log.info(
                    "sds: secret %r %s from the local SDS agent (%s), version %s",
                    name,
                    "received" if first else "rotated",
                    self.target,
                    version,
                )
        return changed

    def _reject(self, version: str, message: str, received: Iterable[str]) -> None:
        for name in received:
            self.stats.scope("sds", name, SECRET_COUNTERS).inc("update_rejected")
        self._error = {"code": INVALID_ARGUMENT, "message": message}
        self.last_rejection = message
        log.warning(
            "sds: rejecting version %s from the local SDS agent (%s): %s; keeping the last "
            "good secrets",
            version,
            self.target,
            message,
        )

    # -- state ------------------------------------------------------------------------------
    def _connected(self) -> None:
        if self.status != "connected":
            log.info("sds: local SDS agent %s connected", self.target)
        self.status = "connected"

    def _unavailable(self, reason: str) -> None:
        for name in self.names:
            self.stats.scope("sds", name, SECRET_COUNTERS).inc("update_failure")
        status = f"unavailable: {reason}"
        if status != self.status:
            missing = [name for name in self.names if name not in self.secrets]
            log.warning(
                "sds: local SDS agent %s %s; retrying (%s)",
                self.target,
                status,
                f"listeners and clusters needing {', '.join(map(repr, missing))} are warming"
                if missing
                else "serving the secrets already received",
            )
        self.status = status

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2 ** min(attempt - 1, 10))
        return delay * (0.5 + random.random() / 2)


def _secrets(response: Any) -> dict[str, dict[str, Any]]:
    """The response's ``Secret`` resources as Envoy's JSON (snake_case field names)."""
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
    from google.protobuf import json_format

    out: dict[str, dict[str, Any]] = {}
    for resource in response.resources:
        if resource.type_url != SECRET:
            raise ConfigError(f"unexpected resource type {resource.type_url!r}")
        secret = secret_pb2.Secret()
        if not resource.Unpack(secret):
            raise ConfigError("a Secret resource that does not decode")
        if not secret.name:
            raise ConfigError("a Secret without a name")
        out[secret.name] = json_format.MessageToDict(secret, preserving_proto_field_name=True)
    return out
