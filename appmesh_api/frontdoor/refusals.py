"""The refusals the front door makes, named as AWS names them in each protocol.

AWS's JSON services, its query services (STS, IAM, CloudFormation) and S3 spell the
same refusal differently (``InvalidSignatureException``, ``SignatureDoesNotMatch``,
S3's ``SignatureDoesNotMatch`` with status 403): each refusal here carries its name per
protocol family so a client's error handling sees what it would see from AWS.
"""

from __future__ import annotations

from dataclasses import dataclass

from appmesh_api.frontdoor.wire import Protocol


@dataclass(frozen=True)
class Refusal(Exception):
    """A request refused before any service ran; ``codes`` is (json, query, s3)."""

    codes: tuple[str, str, str]
    message: str
    status: int = 403
    s3_status: int | None = None
    close: bool = False  # the body was left unread: end the connection after the reply

    def code_for(self, protocol: Protocol) -> str:
        if protocol is Protocol.REST_XML:
            return self.codes[2]
        if protocol in (Protocol.QUERY, Protocol.EC2):
            return self.codes[1]
        return self.codes[0]

    def status_for(self, protocol: Protocol) -> int:
        if protocol is Protocol.REST_XML and self.s3_status is not None:
            return self.s3_status
        return self.status


def missing_authentication() -> Refusal:
    return Refusal(
        ("MissingAuthenticationTokenException", "MissingAuthenticationToken", "AccessDenied"),
        "Missing Authentication Token",
    )


def unrecognized_client(access_key: str) -> Refusal:
    return Refusal(
        ("UnrecognizedClientException", "InvalidClientTokenId", "InvalidAccessKeyId"),
        f"The security token included in the request is invalid (access key {access_key!r} "
        "is not among the credentials appmesh-local was given).",
    )


def invalid_session_token() -> Refusal:
    return Refusal(
        ("UnrecognizedClientException", "InvalidClientTokenId", "InvalidToken"),
        "The security token included in the request is invalid.",
        s3_status=400,
    )


def invalid_signature(detail: str = "") -> Refusal:
    message = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method."
    )
    return Refusal(
        ("InvalidSignatureException", "SignatureDoesNotMatch", "SignatureDoesNotMatch"),
        message + (f" {detail}" if detail else ""),
    )


def signature_expired(signed_at: str, now: str) -> Refusal:
    return Refusal(
        ("InvalidSignatureException", "SignatureDoesNotMatch", "RequestTimeTooSkewed"),
        f"Signature expired: {signed_at} is now earlier or later than {now} by more than 15 "
        "minutes.",
    )


def invalid_region(region: str) -> Refusal:
    return Refusal(
        ("InvalidSignatureException", "SignatureDoesNotMatch", "AuthorizationHeaderMalformed"),
        f"Credential should be scoped to a valid region, not {region[:64]!r}.",
        s3_status=400,
    )


def too_large(what: str, limit: int) -> Refusal:
    """413 (S3: its ``EntityTooLarge``, 400). The JSON and query codes are UNCONFIRMED."""
    return Refusal(
        ("RequestEntityTooLargeException", "RequestEntityTooLarge", "EntityTooLarge"),
        f"The request {what} is larger than the {limit} bytes this service accepts.",
        status=413,
        s3_status=400,
        close=True,
    )


def admin_closed() -> Refusal:
    return Refusal(
        ("UnknownOperationException", "InvalidAction", "NoSuchKey"),
        "moto's admin API (/moto-api) is closed; start `appmesh-local serve --moto-admin` to "
        "open it (it can read every account's side-service data and reset it).",
        status=404,
    )


def bad_request(message: str) -> Refusal:
    return Refusal(("BadRequestException", "MalformedInput", "InvalidRequest"), message, 400)
