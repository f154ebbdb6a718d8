"""SigV4 verification: recompute the caller's signature with botocore's own signer.

botocore is the reference implementation every AWS SDK agrees with, so the canonical
request is built by ``SigV4Auth`` (``S3SigV4Auth`` for S3, which neither normalizes nor
double-encodes the path) from exactly the headers the caller listed in ``SignedHeaders``.
Only header signatures are verified; presigned URLs are refused while verification is on
rather than waved through, and S3's per-chunk signatures (``STREAMING-AWS4-HMAC-SHA256-
PAYLOAD``) are not checked beyond the seed signature in the header.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from appmesh_api.frontdoor import refusals

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)
_SKEW = timedelta(minutes=15)
_TIMESTAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class SignedRequest:
    """What a signature covers, as it arrived on the wire."""

    method: str
    raw_path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes


def verify(
    request: SignedRequest,
    secret_for: Callable[[str], str | None],
    now: datetime | None = None,
    hosts: Sequence[str] | None = None,
) -> None:
    """Raise a :class:`~appmesh_api.frontdoor.refusals.Refusal` unless the signature holds.

    ``hosts`` are the values the signed ``host`` header may have had, for a request whose
    host is not among its headers (a gRPC call's ``:authority``, which gRPC Python does
    not show a server); the signature must hold for one of them. Without it the request's
    own ``host`` header is used.
    """
    lower = {name.lower(): value for name, value in request.headers}
    authorization = lower.get("authorization")
    if authorization is None:
        if "X-Amz-Signature=" in request.query:
            raise refusals.invalid_signature(
                "appmesh-local does not verify presigned URLs; sign the request's headers."
            )
        raise refusals.missing_authentication()
    parsed = _AUTHORIZATION.match(authorization.strip())
    if parsed is None:
        raise refusals.invalid_signature("The Authorization header is not a SigV4 header.")
    access_key, date, region, service, _ = (parsed["credential"].split("/") + [""] * 5)[:5]
    secret = secret_for(access_key)
    if secret is None:
        raise refusals.unrecognized_client(access_key)
    timestamp = lower.get("x-amz-date", "")
    _check_clock(timestamp, now or datetime.now(UTC))
    candidates = (lower.get("host"),) if hosts is None else tuple(hosts)
    key = (access_key, secret)
    if not any(
        hmac.compare_digest(
            _signature(request, lower, parsed["signed"], timestamp, key, region, service, host),
            parsed["signature"],
        )
        for host in candidates
    ):
        raise refusals.invalid_signature()
    if not timestamp.startswith(date):
        raise refusals.invalid_signature("The credential scope's date is not X-Amz-Date's.")
    _check_payload(lower, request.body)


def _check_clock(timestamp: str, now: datetime) -> None:
    try:
        signed_at = datetime.strptime(timestamp, _TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        raise refusals.invalid_signature("X-Amz-Date is missing or not YYYYMMDDTHHMMSSZ.") from None
    if abs(now - signed_at) > _SKEW:
        raise refusals.signature_expired(timestamp, now.strftime(_TIMESTAMP))


def _signature(
    request: SignedRequest,
    lower: dict[str, str],
    signed: str,
    timestamp: str,
    key: tuple[str, str],
    region: str,
    service: str,
    host: str | None,
) -> str:
    names = signed.split(";")
    headers = {name: lower.get(name, "") for name in names}
    if host is not None and "host" in headers:
        headers["host"] = host
    query = f"?{request.query}" if request.query else ""
    aws = AWSRequest(
        method=request.method,
        url=f"http://{host or 'localhost'}{request.raw_path}{query}",
        headers=headers,
        data=request.body,
    )
    aws.context["timestamp"] = timestamp
    signer_class = S3SigV4Auth if service == "s3" else SigV4Auth
    signer = signer_class(Credentials(*key), service, region)
    canonical = signer.canonical_request(aws)
    return str(signer.signature(signer.string_to_sign(aws, canonical), aws))


def _check_payload(lower: dict[str, str], body: bytes) -> None:
    """A hex ``X-Amz-Content-SHA256`` must be the body's hash (the signature covers the header)."""
    claimed = lower.get("x-amz-content-sha256", "")
    if re.fullmatch(r"[0-9a-f]{64}", claimed) and sha256(body).hexdigest() != claimed:
        raise refusals.invalid_signature("X-Amz-Content-SHA256 is not the body's SHA-256.")
