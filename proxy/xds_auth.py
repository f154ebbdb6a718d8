"""Signing the proxy's xDS requests with SigV4, as App Mesh's Envoy signed its stream.

App Mesh's Envoy reached its management server with the task's or pod's credentials
and needed ``appmesh:StreamAggregatedResources`` on its own node's ARN; appmesh-local's
control plane likewise serves a node's config only to a request signed by the node's
account. The credentials are ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and
``AWS_SESSION_TOKEN``) when set. Without them the proxy signs as the account its node
belongs to (the ARN's account, else ``APPMESH_MESH_OWNER``, else the local default) with
a placeholder secret, which a control plane without ``--verify-signatures`` accepts, so a
local mesh needs no credentials at all.

The signature is AWS Signature Version 4 computed by ``awssigv4/canonical.py`` (the
canonical form the control plane's verifier builds too), with HMAC-SHA256 on CPython's
built-in SHA-256 (``awssigv4/sha256.py``; ``hashlib`` would cost 0.7 MB more), rather
than botocore's ``SigV4Auth``: importing botocore costs the sidecar about 6 MB of
memory for one POST shape (a JSON body, a path, one query parameter). The output is the
same as botocore's for these requests (tests/proxy/test_proxy_memory.py compares them
signature for signature), and the control plane's verifier accepts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

from awssigv4 import canonical
from awssigv4.sha256 import sha256_hex

DEFAULT_ACCOUNT = "123456789012"
Signer = Callable[[str, bytes], dict[str, str]]
CallSigner = Callable[[str, str], list[tuple[str, str]]]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Credentials(NamedTuple):
    """An access key, its secret, and the session token of temporary credentials."""

    access_key: str
    secret_key: str
    token: str | None = None


def node_account(node_id: str, mesh_owner: str | None) -> str:
    """The account a node id names: an ARN's fifth field, else the mesh owner or default."""
    parts = node_id.split(":")
    if node_id.startswith("arn:") and len(parts) > 4 and parts[4]:
        return parts[4]
    return mesh_owner or DEFAULT_ACCOUNT


def credentials_from(env: Mapping[str, str], account: str) -> Credentials:
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return Credentials(key, secret, env.get("AWS_SESSION_TOKEN") or None)
    return Credentials(account, "appmesh-local")


def xds_signer(
    credentials: Credentials, region: str, clock: Callable[[], float] = time.time
) -> Signer:
    """``sign(url, body)`` -> the headers that SigV4-sign one xDS POST for ``appmesh``."""

    def sign(url: str, body: bytes) -> dict[str, str]:
        return sigv4_headers(credentials, region, "appmesh", url, body, clock())

    return sign


def sigv4_headers(
    credentials: Credentials, region: str, service: str, url: str, body: bytes, now: float
) -> dict[str, str]:
    """The headers of a SigV4-signed JSON ``POST url`` with ``body``, signed at ``now``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    headers = {"content-type": "application/json", "X-Amz-Date": stamp}
    return _signed(credentials, region, service, url, body, headers)


def call_signer(
    credentials: Credentials, region: str, clock: Callable[[], float] = time.time
) -> CallSigner:
    """``sign(authority, path)`` -> the call metadata that signs one gRPC call for
    ``appmesh``, as Envoy's ``envoy.grpc_credentials.aws_iam`` plugin signs an ADS stream:
    a bodiless ``POST`` of the call's path to the channel's authority (without a default
    port), with ``x-amz-content-sha256``, ``x-amz-date`` and, for temporary credentials,
    ``x-amz-security-token`` (``appmesh_api/adsauth.py`` verifies exactly this)."""

    def sign(authority: str, path: str) -> list[tuple[str, str]]:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
        headers = {"x-amz-content-sha256": sha256_hex(b""), "x-amz-date": stamp}
        # Envoy's signer leaves a port 80 or 443 out of ``host``, as _host does for its scheme.
        scheme = "http" if authority.endswith(":80") else "https"
        signed = _signed(
            credentials, region, "appmesh", f"{scheme}://{authority}{path}", b"", headers
        )
        return [(name.lower(), value) for name, value in signed.items()]

    return sign


def _signed(
    credentials: Credentials,
    region: str,
    service: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
) -> dict[str, str]:
    """``headers`` (with a ``X-Amz-Date``, any case) plus the session token and the
    ``Authorization`` of SigV4 over them, ``host``, the path, the query and ``body``."""
    stamp = next(value for name, value in headers.items() if name.lower() == "x-amz-date")
    headers = dict(headers)
    if credentials.token:
        headers["X-Amz-Security-Token"] = credentials.token
    parts = urlsplit(url)
    signed = {name.lower(): canonical.header_value([value]) for name, value in headers.items()}
    signed["host"] = _host(parts.scheme, parts.hostname or "", parts.port)
    date = stamp[:8]
    request_text = canonical.canonical_request(
        "POST", parts.path, parts.query, service, signed, sha256_hex(body)
    )
    scope = canonical.scope(date, region, service)
    to_sign = canonical.string_to_sign(stamp, scope, request_text)
    key = canonical.signing_key(credentials.secret_key, date, region, service)
    signature = canonical.signature(key, to_sign)
    names = ";".join(sorted(signed))
    headers["Authorization"] = (
        f"{canonical.ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={names}, Signature={signature}"
    )
    return headers


def _host(scheme: str, hostname: str, port: int | None) -> str:
    """The Host header a client sends: the port only when it is not the scheme's default."""
    name = f"[{hostname}]" if ":" in hostname else hostname
    return name if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{name}:{port}"
