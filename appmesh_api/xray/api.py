"""The X-Ray API on appmesh-local's endpoint: an ASGI layer in front of the side services.

A request is X-Ray's when its SigV4 credential scope names the ``xray`` service, or when it
is an unsigned ``POST`` to one of X-Ray's paths (``/TraceSegments``, ``/GetSamplingRules``,
...: CamelCase paths no other service on the port uses, and what the X-Ray SDKs' unsigned
sampling client sends). Those are answered here; every other request passes on unchanged
to moto. With ``--aws-endpoint`` the layer is not installed and X-Ray is forwarded like
every other side service.

Operations run without awaiting, so each one is atomic on the event loop, like the App
Mesh API's.
"""

from __future__ import annotations

import json
import logging
import uuid

from starlette.types import Scope

from appmesh_api.frontdoor import limits
from appmesh_api.frontdoor.chain import Exchange, Target
from appmesh_api.frontdoor.wire import Reply as WireReply
from appmesh_api.identity import Caller, parse_credential_scope
from appmesh_api.xray import wire
from appmesh_api.xray.errors import NotImplementedOperation, XRayError
from appmesh_api.xray.operations import HANDLERS
from appmesh_api.xray.store import XRayState

log = logging.getLogger("appmesh_local.xray")

Reply = tuple[int, dict[str, str], bytes]


class XRayService:
    """Runs X-Ray operations for an account and region; shared by the API and the daemon."""

    def __init__(self, state: XRayState | None = None) -> None:
        self.state = state or XRayState()

    def handle(self, account: str, region: str, method: str, path: str, body: bytes) -> Reply:
        """One rest-json call: status, headers and body, errors rendered as X-Ray's."""
        request_id = str(uuid.uuid4())
        operation = wire.find_operation(method, path)
        if operation is None:
            error = NotImplementedOperation(f"No X-Ray operation serves {method} {path}")
            return self._error(error, request_id, 404)
        try:
            handler = HANDLERS.get(operation.name)
            if handler is None:
                raise NotImplementedOperation(
                    f"appmesh-local does not implement X-Ray's {operation.name}"
                )
            params = wire.parse(operation, body)
            partition = self.state.partition(account, region)
            result = handler(partition, params)
            self.state.saved(partition, operation.name)  # committed before the answer
            payload = wire.serialize(operation, result)
        except XRayError as error:
            log.info("xray %s -> %s: %s", operation.name, error.code, error.message)
            return self._error(error, request_id)
        except Exception:
            log.exception("xray %s failed unexpectedly", operation.name)
            failure = XRayError("The request failed inside appmesh-local; see the server log")
            failure.code = "InternalFailure"
            return self._error(failure, request_id, 500)
        log.debug("xray %s by %s/%s -> 200", operation.name, account, region)
        return 200, {"x-amzn-RequestId": request_id}, payload

    @staticmethod
    def _error(error: XRayError, request_id: str, status: int | None = None) -> Reply:
        headers = {"x-amzn-ErrorType": error.code, "x-amzn-RequestId": request_id}
        body = json.dumps({"Message": error.message}).encode()
        return status or error.status_code, headers, body


def is_xray_request(scope: Scope) -> bool:
    """Signed for ``xray``, or an unsigned POST to one of X-Ray's paths."""
    if scope["type"] != "http":
        return False
    authorization = None
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            authorization = value.decode("latin-1")
            break
    credential = parse_credential_scope(authorization)
    if credential is not None:
        return credential.service == "xray"
    return scope["method"] == "POST" and wire.find_operation("POST", scope["path"]) is not None


def xray_target(service: XRayService) -> Target:
    """X-Ray behind the front door: its requests are answered by ``service`` in-process."""

    def answer(exchange: Exchange) -> WireReply:
        caller = exchange.caller or Caller("", "")
        status, extra, payload = service.handle(
            caller.account, caller.region, exchange.method, exchange.scope["path"], exchange.body
        )
        headers = [
            (b"content-type", b"application/json"),
            *((name.encode(), value.encode()) for name, value in extra.items()),
        ]
        return status, headers, payload

    return Target(
        "xray",
        limits.XRAY_BODY_LIMIT,
        lambda exchange: is_xray_request(exchange.scope),
        answer=answer,
        message_key="Message",
    )
