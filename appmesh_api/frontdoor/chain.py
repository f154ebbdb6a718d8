"""The front door: every request on the control-plane port passes one chain of handlers.

``FrontDoor`` runs, in order: read the caller from the credential scope
(``identify``), pick the service (``route``), refuse an unknown region, read and bound the body,
verify the signature when ``--verify-signatures`` is on, then hand the request to its
service. A handler refuses by raising :class:`~appmesh_api.frontdoor.refusals.Refusal`;
the chain renders it in the protocol the client spoke. Services answered in-process
(App Mesh, X-Ray) are plain functions of an :class:`Exchange`; the rest (appmesh-local's
own endpoints, the side services) are ASGI apps that get the body already read.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from appmesh_api.frontdoor import limits, refusals
from appmesh_api.frontdoor.regions import is_known_region
from appmesh_api.frontdoor.signatures import Secret, SignedRequest, verify
from appmesh_api.frontdoor.wire import Protocol, Reply, protocol_of, render_error
from appmesh_api.identity import (
    Caller,
    CredentialScope,
    caller_of,
    parse_credential_scope,
    signing_secret,
)
from appmesh_api.settings import Settings

log = logging.getLogger("appmesh_local.frontdoor")
_MOTO_ACCOUNT = b"x-moto-account-id"


@dataclass
class Exchange:
    """One request as the chain learns about it; each handler fills in a little more."""

    scope: Scope
    receive: Receive
    headers: dict[str, str]
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    target: Target | None = None
    credential: CredentialScope | None = None
    caller: Caller | None = None
    body: bytes = b""

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def raw_path(self) -> str:
        raw = self.scope.get("raw_path") or self.scope["path"].encode()
        return bytes(raw).decode("latin-1").split("?", 1)[0]

    @property
    def query(self) -> str:
        return bytes(self.scope.get("query_string", b"")).decode("latin-1")


@dataclass(frozen=True)
class Target:
    """A service behind the door: its limits, its error style and how it is answered.

    ``answer`` runs the request in-process and returns the reply, without awaiting
    (App Mesh: a whole operation atomic on the loop); ``serve`` does the same for a
    service that waits (xDS long-polls). Without either, the application behind the
    door (appmesh-local's FastAPI app, which also mounts the side services) gets the
    request with its body replayed.
    """

    name: str
    body_limit: int
    matches: Callable[[Exchange], bool]
    answer: Callable[[Exchange], Reply] | None = None
    serve: Callable[[Exchange], Awaitable[Reply]] | None = None
    signed: bool = True  # its requests are AWS API calls, checked by --verify-signatures
    signed_if_present: bool = False  # checked only when they carry an Authorization
    message_key: str = "message"  # the rest-json error body's key (X-Ray says "Message")
    status_body: bool = False  # refusals as a google.rpc.Status JSON body (REST xDS)


Handler = Callable[[Exchange], Awaitable[None]]


class FrontDoor:
    """The ASGI app on the port: the handler chain, then the request's target.

    Installed as the outermost middleware of ``app``; a request no target matches is
    refused rather than guessed at, so the last target should match everything.
    """

    def __init__(self, app: ASGIApp, targets: Sequence[Target], settings: Settings) -> None:
        self.app = app
        self.targets = tuple(targets)
        self.settings = settings
        self.handlers: tuple[Handler, ...] = (
            self.identify,
            self.route,
            self.check_region,
            self.read_body,
            self.authenticate,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan and websockets are the application's
            await self.app(scope, receive, send)
            return
        exchange = Exchange(scope, receive, _header_map(scope))
        try:
            for handler in self.handlers:
                await handler(exchange)
        except refusals.Refusal as refusal:
            await _send(send, self._render(exchange, refusal))
            return
        await self.dispatch(exchange, send)

    async def route(self, exchange: Exchange) -> None:
        """Pick the service; moto's admin API stays closed unless ``--moto-admin``."""
        if exchange.scope["path"].startswith("/moto-api") and not self.settings.moto_admin:
            raise refusals.admin_closed()
        exchange.target = next((t for t in self.targets if t.matches(exchange)), None)
        if exchange.target is None:
            raise refusals.bad_request(f"No service on this port serves {exchange.raw_path}")

    async def identify(self, exchange: Exchange) -> None:
        exchange.credential = parse_credential_scope(exchange.headers.get("authorization"))
        exchange.caller = caller_of(exchange.credential, self.settings)

    async def check_region(self, exchange: Exchange) -> None:
        if exchange.credential and not is_known_region(exchange.credential.region):
            raise refusals.invalid_region(exchange.credential.region)

    async def read_body(self, exchange: Exchange) -> None:
        limit = _target(exchange).body_limit
        limits.declared_length(exchange.headers, limit)
        exchange.body = await limits.read_bounded(exchange.receive, limit)

    async def authenticate(self, exchange: Exchange) -> None:
        target = _target(exchange)
        present = target.signed_if_present and "authorization" in exchange.headers
        if not (self.settings.verify_signatures and (target.signed or present)):
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in exchange.scope["headers"]]
        signed = SignedRequest(
            exchange.method, exchange.raw_path, exchange.query, headers, exchange.body
        )
        verify(signed, self._secret_for)

    def _secret_for(self, access_key: str) -> str | Secret | None:
        return signing_secret(access_key, self.settings)

    async def dispatch(self, exchange: Exchange, send: Send) -> None:
        target = _target(exchange)
        if target.answer is not None:
            await _send(send, target.answer(exchange))
            return
        if target.serve is not None:
            await _send(send, await target.serve(exchange))
            return
        scope = _with_account(exchange.scope, exchange.caller)
        await self.app(scope, limits.replay(exchange.body, exchange.receive), send)

    def _render(self, exchange: Exchange, refusal: refusals.Refusal) -> Reply:
        service = exchange.credential.service if exchange.credential else ""
        protocol = protocol_of(exchange.scope, exchange.headers, service)
        target = exchange.target
        if target is not None and target.status_body:
            return _rpc_status(refusal, exchange.request_id)
        if target is not None and target.answer is not None:
            protocol = Protocol.REST_JSON  # App Mesh and X-Ray are rest-json services
        code = refusal.code_for(protocol)
        log.info("refused %s %s: %s %s", exchange.method, exchange.raw_path, code, refusal.message)
        status, headers, body = render_error(
            protocol,
            code,
            refusal.message,
            refusal.status_for(protocol),
            exchange.request_id,
            target.message_key if target else "message",
        )
        if refusal.close:  # uvicorn then closes instead of reading the rest of the body
            headers.append((b"connection", b"close"))
        return status, headers, body


def _rpc_status(refusal: refusals.Refusal, request_id: str) -> Reply:
    """A refusal as xDS's REST transport reports errors: a google.rpc.Status body."""
    code = {413: 8, 400: 3}.get(refusal.status, 7)  # RESOURCE_EXHAUSTED, INVALID_ARGUMENT
    body = json.dumps({"code": code, "message": refusal.message}).encode()
    headers = [(b"content-type", b"application/json"), (b"x-amzn-requestid", request_id.encode())]
    if refusal.close:
        headers.append((b"connection", b"close"))
    return refusal.status, headers, body


def _target(exchange: Exchange) -> Target:
    assert exchange.target is not None, "route runs first"
    return exchange.target


def _with_account(scope: Scope, caller: Caller | None) -> Scope:
    """The scope with moto's account header set from the caller, never from the client.

    moto picks the account from ``x-moto-account-id``; a client that sent its own could
    read any account's side-service data, so the header the client sent is dropped.
    """
    headers = [(k, v) for k, v in scope["headers"] if k != _MOTO_ACCOUNT]
    if caller is not None:
        headers.append((_MOTO_ACCOUNT, caller.account.encode()))
    return {**scope, "headers": headers}


def _header_map(scope: Scope) -> dict[str, str]:
    """Request headers with lower-case names (ASGI already lower-cases them)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


async def _send(send: Send, reply: Reply) -> None:
    status, headers, body = reply
    if status not in (204, 304):  # those have no body, and say no length (RFC 9110)
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
