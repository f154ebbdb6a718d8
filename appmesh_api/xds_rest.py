"""xDS over REST-JSON (``POST /v3/discovery:<type>``), answered by the front door itself.

A push wakes every long-poll of the nodes it concerns at once, and each woken poll is
one HTTP response; a thousand of them per change is the common case, so the cost per
response is what bounds push latency on a busy machine. Going through FastAPI (its
router, the per-route dependency solving, Request and Response objects, the exception
middleware) was most of that cost in a py-spy profile of 1,000 woken watchers; here
the front door hands the request, already identified, bounded, read and (under
``--verify-signatures``) verified, straight to :class:`DiscoveryService`.

The answers are the ones the FastAPI route gave: the DiscoveryResponse JSON, 304 when
a long-poll ran out with nothing new, and failures as a ``google.rpc.Status`` body.
"""

from __future__ import annotations

import json
import math
from urllib.parse import parse_qsl

from appmesh_api.ads import XDS_UNSIGNED
from appmesh_api.discovery import (
    INVALID_ARGUMENT,
    PERMISSION_DENIED,
    DiscoveryService,
    XdsError,
)
from appmesh_api.frontdoor.chain import Exchange
from appmesh_api.frontdoor.wire import Reply
from appmesh_api.identity import account_of
from appmesh_api.settings import Settings

PATH_PREFIX = "/v3/discovery:"
MAX_WAIT = 300.0  # seconds a long-poll may ask to be held
_JSON = [(b"content-type", b"application/json")]


class XdsRestApi:
    """The REST transport of xDS, as a front-door target's ``serve``."""

    def __init__(self, discovery: DiscoveryService, settings: Settings) -> None:
        self.discovery = discovery
        self.settings = settings

    async def serve(self, exchange: Exchange) -> Reply:
        """One DiscoveryRequest; a long-poll (``?wait=S``) is held here until its node's
        config moves past the version it names, or S seconds pass (then 304)."""
        if exchange.method != "POST":
            return _status(405, INVALID_ARGUMENT, "xDS over REST takes POST only")
        if exchange.credential is None:  # the front door read it from the Authorization
            return _status(403, PERMISSION_DENIED, XDS_UNSIGNED)
        account = account_of(exchange.credential.access_key, self.settings)
        type_name = str(exchange.scope["path"])[len(PATH_PREFIX) :]
        try:
            wait = _wait_of(exchange.query)
            body = json.loads(exchange.body or b"{}")
            if not isinstance(body, dict):
                raise XdsError(400, INVALID_ARGUMENT, "the body must be a DiscoveryRequest object")
            answer = await self.discovery.discover(type_name, body, wait, account)
        except json.JSONDecodeError as exc:
            return _status(400, INVALID_ARGUMENT, f"invalid JSON: {exc}")
        except XdsError as error:
            return _status(error.http_status, error.code, error.message)
        if answer is None:
            return 304, [], b""
        return 200, _JSON, answer


def _wait_of(query: str) -> float:
    """``?wait=S`` as seconds within [0, MAX_WAIT] (absent: 0, answer at once)."""
    text = dict(parse_qsl(query)).get("wait")
    if text is None:
        return 0.0
    try:
        wait = float(text)
    except ValueError:
        wait = math.nan
    if not math.isfinite(wait):
        raise XdsError(400, INVALID_ARGUMENT, f"wait={text!r} is not a number of seconds")
    return min(max(wait, 0.0), MAX_WAIT)


def _status(http_status: int, code: int, message: str) -> Reply:
    """A failure as xDS's REST transport reports it: a google.rpc.Status JSON body."""
    body = json.dumps({"code": code, "message": message}, ensure_ascii=False, separators=(",", ":"))
    return http_status, _JSON, body.encode()
