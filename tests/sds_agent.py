"""A fake SPIRE agent: a real grpcio SDS server on a Unix socket, for the sidecar to use.

It serves ``envoy.service.secret.v3.SecretDiscoveryService.StreamSecrets`` as SPIRE's
agent does for Envoy: workload certificates (``tls_certificate``) under their SPIFFE ID
and the trust bundle (``validation_context``) under ``spiffe://<trust domain>``, inline
as bytes. A request whose names changed, or the stream's first, is answered at once; an
ACK or NACK (the nonce of the last response) is recorded and not answered; ``push()``
sends the watched secrets again with a new version on every open stream (a rotation).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from tests.certificates import Authority, Pem

SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
_PUSH = object()


class FakeSpireAgent(sds_pb2_grpc.SecretDiscoveryServiceServicer):
    """An SDS server on ``socket_path``; start with ``start()``, end with ``stop()``."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.secrets: dict[str, Any] = {}
        self.version = 1
        self.requests: list[Any] = []  # every DiscoveryRequest received, in order
        self.served: list[str] = []  # the nonce of every response sent
        self._nonces = itertools.count(1)
        self._streams: set[queue.Queue[Any]] = set()
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    # -- what it serves ---------------------------------------------------------------------
    def certificate(self, spiffe_id: str, pem: Pem) -> None:
        """The workload's X.509 SVID and key, under its SPIFFE ID."""
        pair = common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=pem.chain.read_bytes()),
            private_key=base_pb2.DataSource(inline_bytes=pem.key.read_bytes()),
        )
        self.secrets[spiffe_id] = secret_pb2.Secret(name=spiffe_id, tls_certificate=pair)

    def bundle(self, name: str, *authorities: Authority) -> None:
        """The trust bundle (``spiffe://<trust domain>``): the CA certificates."""
        pem = b"".join(authority.pem.read_bytes() for authority in authorities)
        context = common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=pem)
        )
        self.secrets[name] = secret_pb2.Secret(name=name, validation_context=context)

    def raw(self, secret: Any) -> None:
        """Any ``Secret`` as given (a broken one, to be NACKed)."""
        self.secrets[secret.name] = secret

    def push(self) -> None:
        """A new version of everything, to every open stream (SPIRE rotating SVIDs)."""
        with self._lock:
            self.version += 1
            for stream in self._streams:
                stream.put(_PUSH)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> FakeSpireAgent:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"unix:{self.socket_path}")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None
        with self._lock:
            for stream in self._streams:
                stream.put(None)

    @property
    def acks(self) -> list[Any]:
        """Requests that answered one of our responses without an error."""
        return [r for r in self.requests if r.response_nonce and not r.error_detail.message]

    @property
    def nacks(self) -> list[Any]:
        return [r for r in self.requests if r.error_detail.message]

    # -- the service ------------------------------------------------------------------------
    def StreamSecrets(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        stream: queue.Queue[Any] = queue.Queue()
        with self._lock:
            self._streams.add(stream)
        threading.Thread(target=self._read, args=(request_iterator, stream), daemon=True).start()
        names: tuple[str, ...] | None = None
        try:
            while context.is_active():
                item = stream.get()
                if item is None:
                    return
                if item is _PUSH:
                    if names:
                        yield self._response(names)
                    continue
                wanted = tuple(item.resource_names)
                if wanted != names:
                    names = wanted
                    yield self._response(names)
        finally:
            with self._lock:
                self._streams.discard(stream)

    def _read(self, requests: Iterator[Any], stream: queue.Queue[Any]) -> None:
        try:
            for request in requests:
                self.requests.append(request)
                stream.put(request)
        except grpc.RpcError:
            pass
        stream.put(None)

    def _response(self, names: tuple[str, ...]) -> Any:
        response = discovery_pb2.DiscoveryResponse(
            version_info=str(self.version), type_url=SECRET, nonce=str(next(self._nonces))
        )
        for name in names:
            if name in self.secrets:
                response.resources.add().Pack(self.secrets[name])
        self.served.append(response.nonce)
        return response
