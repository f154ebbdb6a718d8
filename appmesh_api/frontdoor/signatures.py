"""SigV4 verification, done directly on what arrived: the path, query, headers and body.

The canonical request is built as the SigV4 specification (and botocore, the reference
every AWS SDK agrees with) builds it: the method; the path with dot segments and empty
segments removed and then URI-encoded once more, except for S3, whose path is signed as
sent; the query's ``name=value`` pairs sorted as sent; exactly the headers the caller
listed in ``SignedHeaders``, values trimmed and inner whitespace runs collapsed, repeats
joined with commas; and the payload hash (a signed ``X-Amz-Content-SHA256``, else the
body's SHA-256). ``awssigv4/canonical.py`` builds it, for this verifier and the sidecar's
signer alike. Building it by hand instead of through botocore's ``SigV4Auth`` (an
``AWSRequest``, ``HTTPHeaders``, URL splitting and four key HMACs for every request)
takes a verification from about 130 µs to about 10 µs, which is what lets
``--verify-signatures`` cost little next to a Describe (docs/benchmarks.md). The signing
key is derived once per (secret, date, region, service) and kept; signatures are compared
with ``hmac.compare_digest``. tests/security/test_signature_oracle.py keeps botocore as
the oracle: whatever it signs is accepted here and any one-byte change refused.

Only header signatures are verified; presigned URLs are refused while verification is on
rather than waved through, and S3's per-chunk signatures (``STREAMING-AWS4-HMAC-SHA256-
PAYLOAD``) are not checked beyond the seed signature in the header.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from appmesh_api.frontdoor import refusals
from awssigv4 import canonical

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)
_TIMESTAMP_SHAPE = re.compile(r"\d{8}T\d{6}Z")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_SKEW = timedelta(minutes=15)
_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class SignedRequest:
    """What a signature covers, as it arrived on the wire."""

    method: str
    raw_path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Secret:
    """A key's secret and, for temporary credentials, the session token that must come
    with every request signed by it (``X-Amz-Security-Token``)."""

    secret: str
    session_token: str | None = None


SecretLookup = Callable[[str], "str | Secret | None"]


@dataclass(frozen=True)
class Credential:
    """The parsed ``Authorization`` header: who signed, for what scope, and the signature."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def verify(
    request: SignedRequest,
    secret_for: SecretLookup,
    now: datetime | None = None,
    hosts: Sequence[str] | None = None,
) -> None:
    """Raise a :class:`~appmesh_api.frontdoor.refusals.Refusal` unless the signature holds.

    ``hosts`` are the values the signed ``host`` header may have had, for a request whose
    host is not among its headers (a gRPC call's ``:authority``, which gRPC Python does
    not show a server); the signature must hold for one of them. Without it the request's
    own ``host`` header is used.
    """
    lower = _header_values(request.headers)
    credential = _credential(lower, request.query)
    found = secret_for(credential.access_key)
    if found is None:
        raise refusals.unrecognized_client(credential.access_key)
    secret = found if isinstance(found, Secret) else Secret(found)
    timestamp = _timestamp(lower)
    _check_clock(timestamp, now or datetime.now(UTC))
    key = canonical.signing_key(
        secret.secret, credential.date, credential.region, credential.service
    )
    candidates = (None,) if hosts is None else tuple(hosts)
    if not any(
        hmac.compare_digest(
            canonical.signature(key, _string_to_sign(request, lower, credential, timestamp, host)),
            credential.signature,
        )
        for host in candidates
    ):
        raise refusals.invalid_signature()
    if not timestamp.startswith(credential.date):
        raise refusals.invalid_signature("The credential scope's date is not X-Amz-Date's.")
    _check_payload(lower, request.body)
    _check_session_token(lower, secret)


def _timestamp(lower: dict[str, list[str]]) -> str:
    """The request's time in SigV4's basic form: ``X-Amz-Date``, or else its ``Date``
    header (an HTTP date, which botocore signs with instead when a caller sets one)."""
    amz = _one(lower, "x-amz-date") or ""
    date = _one(lower, "date") or ""
    if amz or not date:
        return amz
    try:
        when = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return ""
    if when.tzinfo is None:  # "-0000", as botocore writes it: UTC
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _check_session_token(lower: dict[str, list[str]], secret: Secret) -> None:
    """Temporary credentials need the token STS issued with them (checked after the
    signature, so only a caller who holds the secret learns the token was wrong)."""
    if secret.session_token is None:
        return
    sent = _one(lower, "x-amz-security-token") or ""
    if not hmac.compare_digest(sent.encode(), secret.session_token.encode()):
        raise refusals.invalid_session_token()


def _credential(lower: dict[str, list[str]], query: str) -> Credential:
    """The ``Authorization`` header's parts, or the refusal AWS gives for its absence."""
    authorization = _one(lower, "authorization", None)
    if authorization is None:
        if "X-Amz-Signature=" in query:
            raise refusals.invalid_signature(
                "appmesh-local does not verify presigned URLs; sign the request's headers."
            )
        raise refusals.missing_authentication()
    parsed = _AUTHORIZATION.match(authorization.strip())
    if parsed is None:
        raise refusals.invalid_signature("The Authorization header is not a SigV4 header.")
    access_key, date, region, service, terminal = (parsed["credential"].split("/") + [""] * 5)[:5]
    if terminal != "aws4_request":
        raise refusals.invalid_signature("The credential scope does not end in aws4_request.")
    signed = tuple(parsed["signed"].split(";"))
    return Credential(access_key, date, region, service, signed, parsed["signature"])


def _header_values(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Every value of each header, by lower-case name, in the order they arrived."""
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(value)
    return values


def _one(lower: dict[str, list[str]], name: str, default: str | None = "") -> str | None:
    found = lower.get(name)
    return found[-1] if found else default


def _check_clock(timestamp: str, now: datetime) -> None:
    if not _TIMESTAMP_SHAPE.fullmatch(timestamp):
        raise refusals.invalid_signature("X-Amz-Date is missing or not YYYYMMDDTHHMMSSZ.")
    try:
        signed_at = _parse_timestamp(timestamp)
    except ValueError:
        raise refusals.invalid_signature("X-Amz-Date is missing or not YYYYMMDDTHHMMSSZ.") from None
    if abs(now - signed_at) > _SKEW:
        raise refusals.signature_expired(timestamp, now.strftime(_TIMESTAMP))


def _parse_timestamp(text: str) -> datetime:
    """``YYYYMMDDTHHMMSSZ`` (shape already checked) without ``strptime``'s 10 µs."""
    return datetime(
        int(text[0:4]),
        int(text[4:6]),
        int(text[6:8]),
        int(text[9:11]),
        int(text[11:13]),
        int(text[13:15]),
        tzinfo=UTC,
    )


def _string_to_sign(
    request: SignedRequest,
    lower: dict[str, list[str]],
    credential: Credential,
    timestamp: str,
    host: str | None = None,
) -> str:
    """The string the caller signed, over exactly the headers it listed (``host``, when
    given, standing in for the request's own)."""
    names = credential.signed_headers
    headers = {
        name: canonical.header_value(
            [host] if name == "host" and host is not None else lower.get(name, [""])
        )
        for name in names
    }
    request_text = canonical.canonical_request(
        request.method.upper(),
        request.raw_path,
        request.query,
        credential.service,
        headers,
        _payload_hash(lower, names, request.body),
    )
    scope = canonical.scope(credential.date, credential.region, credential.service)
    return canonical.string_to_sign(timestamp, scope, request_text)


def _payload_hash(lower: dict[str, list[str]], names: Sequence[str], body: bytes) -> str:
    if "x-amz-content-sha256" in names:
        return _one(lower, "x-amz-content-sha256") or ""
    return hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256


def _check_payload(lower: dict[str, list[str]], body: bytes) -> None:
    """A hex ``X-Amz-Content-SHA256`` must be the body's hash (the signature covers the header)."""
    claimed = _one(lower, "x-amz-content-sha256") or ""
    if _HEX_SHA256.fullmatch(claimed) and hashlib.sha256(body).hexdigest() != claimed:
        raise refusals.invalid_signature("X-Amz-Content-SHA256 is not the body's SHA-256.")
