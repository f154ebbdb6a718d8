"""TLS origination toward a cluster's hosts, and the TLS failure vocabulary both sides use.

``connect`` opens a TLS connection with the cluster's context (trust, client
certificate, SNI), then checks what Envoy checks beyond OpenSSL's chain verification,
the subject alternative names, before the pool or the TCP proxy gets the connection.
A failure raises ``ssl.SSLError``; ``failure_stat`` names the Envoy ``ssl.*`` counter it
counts under and ``failure_detail`` the access log's transport failure reason (the
request itself fails with UF, as a refused TCP connection does).

Envoy's counters: ``handshake`` (a connection that passed every check),
``connection_error`` (a failed handshake that is not a certificate verdict),
``fail_verify_error`` (the chain did not verify), ``fail_verify_san`` (no SAN matched),
``fail_verify_no_cert`` (a required client certificate was not sent) and
``no_certificate`` (a server-side handshake without one), plus ``ssl.versions.<v>`` and
``ssl.ciphers.<cipher>``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proxy.config.tls import ClientTls, san_mismatch

if TYPE_CHECKING:
    from proxy.observe.stats import StatsScope

_NO_CERT_REASONS = ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED")


class SanMismatch(ssl.SSLError):
    """The peer's chain verified but none of its SANs is one the context asks for.
    Envoy fails such a handshake with CERTIFICATE_VERIFY_FAILED; so does this proxy."""

    reason = "CERTIFICATE_VERIFY_FAILED"

    def __str__(self) -> str:
        return "CERTIFICATE_VERIFY_FAILED: no subject alternative name matched"


def failure_stat(exc: BaseException) -> str:
    """The ``ssl.*`` counter a failed handshake counts under."""
    if isinstance(exc, SanMismatch):
        return "ssl.fail_verify_san"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "ssl.fail_verify_error"
    if isinstance(exc, ssl.SSLError) and getattr(exc, "reason", None) in _NO_CERT_REASONS:
        return "ssl.fail_verify_no_cert"
    return "ssl.connection_error"


def failure_detail(exc: BaseException) -> str:
    """Envoy's ``transport failure reason`` wording for a TLS failure."""
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return f"TLS error: {reason}" if not isinstance(exc, SanMismatch) else f"TLS error: {exc}"


def count_session(stats: StatsScope, transport: asyncio.BaseTransport) -> None:
    """Envoy's ``ssl.versions.<version>`` and ``ssl.ciphers.<cipher>`` counters."""
    cipher = transport.get_extra_info("cipher")
    if cipher:
        stats.inc(f"ssl.ciphers.{cipher[0]}")
        stats.inc(f"ssl.versions.{cipher[1]}")


class _Held(asyncio.Protocol):
    """Holds what a fresh TLS connection delivers until the SAN check hands it on."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.eof = False
        self.lost: tuple[Exception | None] | None = None

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = (exc,)

    def hand_over(self, transport: asyncio.BaseTransport, protocol: asyncio.Protocol) -> None:
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        for chunk in self.data:
            protocol.data_received(chunk)
        if self.eof:
            protocol.eof_received()
        if self.lost is not None:
            protocol.connection_lost(self.lost[0])


async def connect(
    factory: Callable[[], Any],
    host: str,
    port: int,
    tls: ClientTls,
    stats: StatsScope,
) -> tuple[asyncio.Transport, Any]:
    """A verified TLS connection to ``host:port`` carrying ``factory()``'s protocol.
    Raises ``ssl.SSLError`` (counted) when the handshake or a check fails, ``OSError``
    when the TCP connection does."""
    loop = asyncio.get_running_loop()
    held = _Held()
    try:
        transport, _ = await loop.create_connection(
            lambda: held, host, port, ssl=tls.context, server_hostname=tls.sni or None
        )
    except ssl.SSLError as exc:
        stats.inc(failure_stat(exc))
        raise
    if tls.validates and san_mismatch(tls.sans, transport.get_extra_info("peercert") or {}):
        stats.inc("ssl.fail_verify_san")
        transport.abort()
        raise SanMismatch()
    stats.inc("ssl.handshake")
    count_session(stats, transport)
    protocol = factory()
    held.hand_over(transport, protocol)
    return transport, protocol
