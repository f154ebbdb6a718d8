"""RAM's rest-json operations, answered in-process behind the front door.

Requests are small JSON documents (``POST /createresourceshare`` ...); replies carry
the members botocore's ``ram`` model names, timestamps as epoch seconds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from appmesh_api.frontdoor import limits
from appmesh_api.frontdoor.chain import Exchange, Target
from appmesh_api.frontdoor.wire import Reply
from appmesh_api.identity import Caller
from appmesh_api.ram.shares import Invitation, RamError, Share, Shares

log = logging.getLogger("appmesh_local.ram")
Operation = Callable[[Shares, Caller, dict[str, Any]], dict[str, Any]]


def _share_json(share: Share) -> dict[str, Any]:
    return {
        "resourceShareArn": share.arn,
        "name": share.name,
        "owningAccountId": share.owner,
        "allowExternalPrincipals": share.allow_external,
        "status": share.status,
        "creationTime": share.created,
        "lastUpdatedTime": share.created,
        "featureSet": "STANDARD",
    }


def _invitation_json(shares: Shares, invitation: Invitation) -> dict[str, Any]:
    share = shares.shares[invitation.share_arn]
    return {
        "resourceShareInvitationArn": invitation.arn,
        "resourceShareName": share.name,
        "resourceShareArn": share.arn,
        "senderAccountId": invitation.sender,
        "receiverAccountId": invitation.receiver,
        "invitationTimestamp": invitation.created,
        "status": invitation.status,
    }


def create_resource_share(shares: Shares, caller: Caller, params: dict) -> dict:
    if not params.get("name"):
        raise RamError("MissingRequiredParameterException", "name is required")
    share = shares.create(
        caller.account,
        caller.region,
        params["name"],
        list(params.get("resourceArns") or ()),
        list(params.get("principals") or ()),
    )
    return {"resourceShare": _share_json(share)}


def get_resource_shares(shares: Shares, caller: Caller, params: dict) -> dict:
    if params.get("resourceOwner") == "OTHER-ACCOUNTS":
        found = shares.shared_with(caller.account, caller.region)
    else:
        found = shares.owned_by(caller.account, caller.region)
    return {"resourceShares": [_share_json(share) for share in found]}


def get_resource_share_invitations(shares: Shares, caller: Caller, params: dict) -> dict:
    wanted = set(params.get("resourceShareInvitationArns") or ())
    found = [i for i in shares.received_by(caller.account) if not wanted or i.arn in wanted]
    return {"resourceShareInvitations": [_invitation_json(shares, i) for i in found]}


def _respond(accept: bool) -> Operation:
    def respond(shares: Shares, caller: Caller, params: dict) -> dict:
        arn = str(params.get("resourceShareInvitationArn") or "")
        invitation = shares.respond(arn, caller.account, accept)
        return {"resourceShareInvitation": _invitation_json(shares, invitation)}

    return respond


def delete_resource_share(shares: Shares, caller: Caller, params: dict) -> dict:
    shares.delete(str(params.get("resourceShareArn") or ""), caller.account)
    return {"returnValue": True}


OPERATIONS: dict[str, Operation] = {
    "/createresourceshare": create_resource_share,
    "/getresourceshares": get_resource_shares,
    "/getresourceshareinvitations": get_resource_share_invitations,
    "/acceptresourceshareinvitation": _respond(True),
    "/rejectresourceshareinvitation": _respond(False),
    "/deleteresourceshare": delete_resource_share,
}


def answer(shares: Shares, exchange: Exchange) -> Reply:
    """Run one RAM call; an operation appmesh-local lacks is refused, not forwarded."""
    caller = exchange.caller or Caller("", "")
    operation = OPERATIONS.get(exchange.raw_path.lower())
    try:
        if operation is None:
            raise RamError(
                "NotImplemented",
                f"appmesh-local's RAM does not serve {exchange.method} {exchange.raw_path}; it "
                f"serves {', '.join(sorted(OPERATIONS))}",
                501,
            )
        params = _params(exchange)
        result = operation(shares, caller, params)
    except RamError as error:
        log.info("ram %s -> %s: %s", exchange.raw_path, error.code, error.message)
        body = json.dumps({"message": error.message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"x-amzn-errortype", error.code.encode()),
        ]
        return error.status, headers, body
    return 200, [(b"content-type", b"application/json")], json.dumps(result).encode()


def _params(exchange: Exchange) -> dict[str, Any]:
    """The JSON body, plus the query string (DeleteResourceShare sends its ARN there)."""
    try:
        params = json.loads(exchange.body or b"{}")
    except ValueError:
        raise RamError("MalformedArnException", "The request body is not JSON") from None
    if not isinstance(params, dict):
        raise RamError("InvalidParameterException", "The request body must be a JSON object")
    params.update(parse_qsl(exchange.query))
    return params


def ram_target(shares: Shares) -> Target:
    """RAM behind the front door: requests signed for ``ram``."""
    return Target(
        "ram",
        limits.APPMESH_BODY_LIMIT,
        lambda exchange: bool(exchange.credential and exchange.credential.service == "ram"),
        answer=lambda exchange: answer(shares, exchange),
    )
