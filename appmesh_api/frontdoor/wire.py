"""AWS error documents in each wire protocol a client may have spoken.

A refusal made before any service ran (a body over its limit, a bad signature, an
unknown region) must still reach botocore as an error it can parse, so it is rendered
in the protocol of the request: the client picked that protocol from its model, and
its parser reads errors only in that shape.
"""

from __future__ import annotations

import enum
import json
from xml.sax.saxutils import escape

from starlette.types import Scope

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]


class Protocol(enum.Enum):
    """The AWS protocols served on the port, as botocore's ``metadata.protocol`` names them."""

    REST_JSON = "rest-json"
    JSON = "json"
    QUERY = "query"
    EC2 = "ec2"
    REST_XML = "rest-xml"
    CBOR = "smithy-rpc-v2-cbor"


def protocol_of(scope: Scope, headers: dict[str, str], service: str) -> Protocol:
    """Which protocol a request speaks, from what each protocol puts on the wire."""
    if headers.get("smithy-protocol") == "rpc-v2-cbor":
        return Protocol.CBOR
    if "x-amz-target" in headers:
        return Protocol.JSON
    if service == "s3":
        return Protocol.REST_XML
    if service == "ec2":
        return Protocol.EC2
    query = scope.get("query_string", b"")
    form = headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
    if form or b"Action=" in query:
        return Protocol.QUERY
    return Protocol.REST_JSON


def render_error(
    protocol: Protocol,
    code: str,
    message: str,
    status: int,
    request_id: str,
    message_key: str = "message",
) -> Reply:
    """An error document botocore's parser for ``protocol`` reads as ``code``/``message``."""
    ids = [(b"x-amzn-requestid", request_id.encode())]
    if protocol is Protocol.REST_JSON:
        body = json.dumps({message_key: message}).encode()
        return status, [*_typed(b"application/json", code), *ids], body
    if protocol is Protocol.JSON:
        body = json.dumps({"__type": code, "message": message}).encode()
        return status, [*_typed(b"application/x-amz-json-1.1", code), *ids], body
    if protocol is Protocol.CBOR:
        body = _cbor_text_map({"__type": code, "message": message})
        headers = [(b"content-type", b"application/cbor"), (b"smithy-protocol", b"rpc-v2-cbor")]
        return status, [*headers, *ids], body
    return status, [(b"content-type", b"text/xml"), *ids], _xml(protocol, code, message, request_id)


def _typed(content_type: bytes, code: str) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", content_type), (b"x-amzn-errortype", code.encode())]


def _xml(protocol: Protocol, code: str, message: str, request_id: str) -> bytes:
    error = f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
    if protocol is Protocol.REST_XML:  # S3
        text = f"<Error>{error}<RequestId>{request_id}</RequestId></Error>"
    elif protocol is Protocol.EC2:
        errors = f"<Errors><Error>{error}</Error></Errors>"
        text = f"<Response>{errors}<RequestID>{request_id}</RequestID></Response>"
    else:  # awsQuery: STS, IAM, CloudFormation
        text = (
            f"<ErrorResponse><Error><Type>Sender</Type>{error}</Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    return ('<?xml version="1.0" encoding="UTF-8"?>' + text).encode()


def _cbor_text_map(items: dict[str, str]) -> bytes:
    """A CBOR map of text strings (RFC 8949 major types 5 and 3): all an error needs."""
    out = bytearray(_cbor_head(5, len(items)))
    for key, value in items.items():
        for text in (key, value):
            data = text.encode()
            out += _cbor_head(3, len(data)) + data
    return bytes(out)


def _cbor_head(major: int, length: int) -> bytes:
    if length < 24:
        return bytes([major << 5 | length])
    for extra, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if length < 1 << (8 * width):
            return bytes([major << 5 | extra]) + length.to_bytes(width, "big")
    raise ValueError("a CBOR length over 2**64")
