"""Verifying the SigV4 signature Envoy's ``envoy.grpc_credentials.aws_iam`` plugin sends.

What the plugin signs (Envoy's ``source/extensions/grpc_credentials/aws_iam`` and its AWS
signer; gRPC core's call-credentials context): for each call, a bodiless HTTP request
``POST`` to the call's ``:path``
(``/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources``)
whose ``host`` is the channel's ``:authority`` without a ``:443`` (or ``:80``) port. It
adds ``x-amz-content-sha256`` (the SHA-256 of an empty body), ``x-amz-date`` and, with
temporary credentials, ``x-amz-security-token``, signs those three or four headers with
``host``, and sends them with ``authorization`` as call metadata. That is exactly the
canonical request botocore's ``SigV4Auth`` builds for the same request, so the front
door's verifier checks it.

gRPC Python does not show a server the call's ``:authority``, so the ``host`` the
signature covers is looked for among the authorities this server answers to: its names
(``adstls.local_names``, the certificate's names, ``--xds-tls-name``) at its ADS ports,
and bare (a task dialing port 443 through a mapping). A signature made for any other
host is refused, as AWS refuses a request signed for another endpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from appmesh_api.frontdoor import refusals
from appmesh_api.frontdoor.signatures import SecretLookup, SignedRequest, verify

ADS_PATH = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA_ADS_PATH = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
_DEFAULT_PORTS = ("80", "443")


def signed_host(authority: str) -> str:
    """The ``host`` Envoy's signer canonicalizes an authority to: without port 80 or 443."""
    parts = [part for part in authority.split(":") if part]
    if len(parts) > 1 and parts[1] in _DEFAULT_PORTS:
        return parts[0]
    return authority


def authorities(names: Iterable[str], ports: Iterable[int]) -> tuple[str, ...]:
    """Every ``host`` a task reaching this server by one of ``names`` signs: each name at
    each port, and each name alone. A name that already says its port is kept as is."""
    found: list[str] = []
    for name in names:
        if _has_port(name):
            found.append(signed_host(name))
            continue
        host = f"[{name}]" if ":" in name else name
        found += [signed_host(f"{host}:{port}") for port in ports if port]
        found.append(host)
    return tuple(dict.fromkeys(found))


def _has_port(name: str) -> bool:
    if name.startswith("["):
        return "]:" in name
    host, sep, port = name.rpartition(":")
    return bool(sep) and port.isdigit() and ":" not in host


def verify_call(
    metadata: Mapping[str, str],
    hosts: Sequence[str],
    secret_for: SecretLookup,
    now: datetime | None = None,
    path: str = ADS_PATH,
) -> None:
    """Raise a :class:`~appmesh_api.frontdoor.refusals.Refusal` unless the ADS call's
    metadata carries a valid signature of the call (the method at ``path``: SotW or
    Delta ADS, each signed for its own path) for one of ``hosts``."""
    headers = [(name, value) for name, value in metadata.items() if not name.endswith("-bin")]
    request = SignedRequest("POST", path, "", headers, b"")
    try:
        verify(request, secret_for, now, hosts=hosts)
    except refusals.Refusal as refusal:
        if refusal == refusals.invalid_signature():  # the mismatch, not a malformed one
            tried = ", ".join(hosts)
            raise refusals.invalid_signature(
                f"(appmesh-local checked the signature of {path} for the hosts {tried}; "
                "add the name tasks dial with --xds-tls-name)"
            ) from None
        raise
