"""SigV4's canonical request, string to sign and derived key, as botocore computes them.

Only the algorithm lives here: which headers are signed, where the payload hash comes from
and what a mismatch means are the signer's and the verifier's to decide. Values arrive as
the wire has them (the path and query already URI-encoded by the client); nothing here
parses an ``Authorization`` header or reads a clock.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from urllib.parse import quote

from awssigv4.sha256 import hmac_sha256, sha256_hex

ALGORITHM = "AWS4-HMAC-SHA256"


def canonical_request(
    method: str,
    raw_path: str,
    query: str,
    service: str,
    headers: Mapping[str, str],
    payload_hash: str,
) -> str:
    """The canonical request over ``headers`` (signed name -> :func:`header_value`)."""
    names = sorted(headers)
    lines = [method, canonical_path(raw_path, service), canonical_query(query)]
    lines.extend(f"{name}:{headers[name]}" for name in names)
    lines.append("")
    lines.append(";".join(names))
    lines.append(payload_hash)
    return "\n".join(lines)


def header_value(values: Iterable[str]) -> str:
    """One header's canonical value: each value trimmed, inner whitespace runs collapsed to
    one space, repeats joined with commas in the order they were sent."""
    return ",".join(" ".join(value.split()) for value in values)


def canonical_path(raw_path: str, service: str) -> str:
    """The path as signed: S3's as sent; every other service's normalized and encoded again."""
    if service == "s3":
        return raw_path or "/"
    return quote(_remove_dot_segments(raw_path), safe="/~")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 dot-segment removal, also dropping empty segments as AWS's signers do."""
    if not path:
        return "/"
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and kept else ""
    return first + "/".join(kept) + last


def canonical_query(query: str) -> str:
    """The query's ``name=value`` pairs (already URI-encoded by the client) sorted."""
    if not query:
        return ""
    pairs = [pair.partition("=") for pair in query.split("&")]
    return "&".join(f"{name}={value}" for name, value in sorted((n, v) for n, _, v in pairs))


def scope(date: str, region: str, service: str) -> str:
    """The credential scope: ``YYYYMMDD/region/service/aws4_request``."""
    return f"{date}/{region}/{service}/aws4_request"


def string_to_sign(timestamp: str, credential_scope: str, canonical: str) -> str:
    """SigV4's string to sign: algorithm, time, scope and the canonical request's hash."""
    digest = sha256_hex(canonical.encode("utf-8"))
    return f"{ALGORITHM}\n{timestamp}\n{credential_scope}\n{digest}"


@functools.lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """SigV4's derived key, the same for every request of one scope, so it is kept."""
    key = _hmac(f"AWS4{secret}".encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def signature(key: bytes, to_sign: str) -> str:
    """The hex HMAC-SHA256 of the string to sign under the derived key."""
    return hmac_sha256(key, to_sign.encode("utf-8")).hex()


def _hmac(key: bytes, message: str) -> bytes:
    return hmac_sha256(key, message.encode("utf-8"))
