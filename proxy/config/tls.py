"""TLS transport sockets compiled into Python ``ssl`` contexts, once per config version.

A filter chain's ``DownstreamTlsContext`` becomes a ``ServerTls`` and a cluster's
``UpstreamTlsContext`` a ``ClientTls``: an ``ssl.SSLContext`` with the certificate and
trust loaded, plus what Envoy checks that OpenSSL's own verification does not (the
subject alternative name matchers, whether a client certificate is required, the SNI).

Certificates come inline in the context (``tls_certificates`` with ``filename`` or
``inline_string``) or by name from SDS secrets (``tls_certificate_sds_secret_configs``,
``validation_context_sds_secret_config``, ``combined_validation_context``): delivered on
the xDS stream (``sds_config: ads``, ACM material) or by the local SDS agent (an
``api_config_source`` naming the bootstrap's Unix-socket cluster: SPIRE's agent). Envoy
keeps the two apart, and so does ``Secrets``. A secret the xDS server has not sent is a
broken config (NACK); one the local agent has not sent yet is ``SecretNotReady``, which
makes the listener or cluster warm (``proxy.config.compile``) rather than fail. Files are
read when a version is compiled, as Envoy reads them when it loads a listener or cluster,
so a rotated file applies to connections made after the next config update; a changed
SDS secret is a new version by itself. Connections already open keep the context they
were made with. What each context holds is kept beside it for the admin ``/certs``
(``Certificates``: serial, SANs, validity, read by ``proxy.config.x509_facts`` when the
context is compiled, so nothing is parsed when ``/certs`` is asked; no key is kept).

What OpenSSL is not told, this module checks after the handshake, as Envoy's
``DefaultCertValidator`` does after chain verification: ``match_typed_subject_alt_names``
(and the older ``match_subject_alt_names``), DNS SANs matched with a certificate's
``*.`` wildcard covering one label. Anything in a context this proxy does not act on
(cipher lists, SPKI pins, CRLs) is refused by ``proxy.config.unsupported``
before it gets here.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from proxy.config.matchers import compile_string_matcher
from proxy.config.protojson import ConfigError, objects_in
from proxy.config.unsupported import sds_agent_cluster
from proxy.config.x509_facts import CertificateFacts, first_certificate

SecretMap = Mapping[str, Mapping[str, Any]]
_EMPTY: SecretMap = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Secrets:
    """The secrets a version is compiled with, by where they come from: ``ads`` (sent by
    the control plane with the version) and ``local`` (the local SDS agent's, last good).
    ``agent_cluster`` is the bootstrap's cluster to that agent (``""``: none)."""

    ads: SecretMap = field(default_factory=lambda: _EMPTY)
    local: SecretMap = field(default_factory=lambda: _EMPTY)
    agent_cluster: str = ""


NO_SECRETS = Secrets()


class SecretNotReady(Exception):
    """A TLS context names a local SDS agent's secret that has not arrived (yet): the
    listener or cluster warms, as Envoy's does, instead of being served without it."""

    def __init__(self, name: str) -> None:
        super().__init__(f"waiting for SDS secret {name!r} from the local SDS agent")
        self.name = name


# Envoy's SAN types and the names Python's ``getpeercert()`` gives them.
_SAN_TYPES = {"DNS": "DNS", "URI": "URI", "EMAIL": "email", "IP_ADDRESS": "IP Address"}
_TLS_VERSIONS = {
    "TLSv1_0": ssl.TLSVersion.TLSv1,
    "TLSv1_1": ssl.TLSVersion.TLSv1_1,
    "TLSv1_2": ssl.TLSVersion.TLSv1_2,
    "TLSv1_3": ssl.TLSVersion.TLSv1_3,
}
# ALPN offers only what the codecs speak (proxy.codec.http1 hands ``h2`` to http2).
_SPOKEN_ALPN = ("h2", "http/1.1")


@dataclass(frozen=True, slots=True)
class SanMatcher:
    """One SAN matcher: the SAN type it looks at (``None``: every type) and a predicate."""

    san_type: str | None
    matches: Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Certificates:
    """What a context holds, as the admin ``/certs`` lists it (``proxy.config.x509_facts``):
    its trust anchor and its certificates, read when the context is compiled."""

    ca_cert: CertificateFacts | None = None
    cert_chain: tuple[CertificateFacts, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerTls:
    """A compiled ``DownstreamTlsContext``."""

    context: ssl.SSLContext
    require_client_certificate: bool
    validates: bool  # a validation context: ask for (and verify) a client certificate
    sans: tuple[SanMatcher, ...]
    certificates: Certificates = Certificates()


@dataclass(frozen=True, slots=True)
class ClientTls:
    """A compiled ``UpstreamTlsContext``."""

    context: ssl.SSLContext
    sni: str
    validates: bool
    sans: tuple[SanMatcher, ...]
    certificates: Certificates = Certificates()


def compile_server(socket: Mapping[str, Any], secrets: Secrets) -> ServerTls:
    """A filter chain's TLS transport socket as a server-side context."""
    spec = dict(socket.get("typed_config") or {})
    common = spec.get("common_tls_context") or {}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _configure(context, common)
    pairs = _certificates(common, secrets)
    if not pairs:
        raise ConfigError("DownstreamTlsContext without a certificate")
    for pair in pairs:
        _load_pair(context, pair.chain, pair.key)
    validation, sans = _validation(common, secrets)
    required = bool(spec.get("require_client_certificate", False))
    trust = None
    if validation is not None:
        trust = _load_trust(context, validation)
        context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    elif required:
        raise ConfigError("require_client_certificate needs a validation context")
    held = _held(pairs, validation, trust)
    return ServerTls(context, required, validation is not None, sans, held)


def compile_client(socket: Mapping[str, Any], secrets: Secrets) -> ClientTls:
    """A cluster's TLS transport socket as a client-side context."""
    spec = dict(socket.get("typed_config") or {})
    common = spec.get("common_tls_context") or {}
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # Envoy checks SANs against its matchers, not the SNI
    _configure(context, common)
    pairs = _certificates(common, secrets)
    for pair in pairs:
        _load_pair(context, pair.chain, pair.key)
    validation, sans = _validation(common, secrets)
    trust = None
    if validation is not None:
        trust = _load_trust(context, validation)
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE  # Envoy without a validation context: no checks
    held = _held(pairs, validation, trust)
    return ClientTls(context, str(spec.get("sni") or ""), validation is not None, sans, held)


def _held(
    pairs: list[_Pair], validation: Mapping[str, Any] | None, trust: bytes | None
) -> Certificates:
    """The facts ``/certs`` lists, read now so that the admin reads no file later."""
    chain = (first_certificate(p.chain, p.path) for p in pairs)
    anchor = None
    if validation is not None and trust is not None:
        anchor = first_certificate(trust, _path(validation.get("trusted_ca")))
    return Certificates(anchor, tuple(c for c in chain if c is not None))


def san_mismatch(matchers: tuple[SanMatcher, ...], peercert: Mapping[str, Any]) -> bool:
    """True when matchers are configured and no SAN of the certificate satisfies one."""
    if not matchers:
        return False
    names = tuple(peercert.get("subjectAltName") or ())
    for matcher in matchers:
        for kind, value in names:
            if matcher.san_type is not None and kind != matcher.san_type:
                continue
            if matcher.matches(value):
                return False
    return True


def _configure(context: ssl.SSLContext, common: Mapping[str, Any]) -> None:
    params = common.get("tls_params") or {}
    context.minimum_version = _TLS_VERSIONS.get(
        str(params.get("tls_minimum_protocol_version", "TLSv1_2")), ssl.TLSVersion.TLSv1_2
    )
    context.maximum_version = _TLS_VERSIONS.get(
        str(params.get("tls_maximum_protocol_version", "TLSv1_3")), ssl.TLSVersion.TLSv1_3
    )
    alpn = [p for p in common.get("alpn_protocols") or () if p in _SPOKEN_ALPN]
    if alpn:
        context.set_alpn_protocols(alpn)


@dataclass(frozen=True, slots=True)
class _Pair:
    """A certificate chain and its private key (PEM), and where the chain came from."""

    chain: bytes
    key: bytes
    path: str


def _certificates(common: Mapping[str, Any], secrets: Secrets) -> list[_Pair]:
    """The certificate and key pairs, inline or from named secrets."""
    specs = list(common.get("tls_certificates") or ())
    for ref in common.get("tls_certificate_sds_secret_configs") or ():
        specs.append(_secret(secrets, ref, "tls_certificate"))
    pairs = []
    for spec in specs:
        source = spec.get("certificate_chain")
        chain = _data(source, "certificate_chain")
        key = _data(spec.get("private_key"), "private_key")
        pairs.append(_Pair(chain, key, _path(source)))
    return pairs


def _path(source: Any) -> str:
    """A DataSource as Envoy's ``/certs`` names it: the file, or ``<inline>``."""
    if isinstance(source, dict) and "filename" in source:
        return str(source["filename"])
    return "<inline>"


def _validation(
    common: Mapping[str, Any], secrets: Secrets
) -> tuple[Mapping[str, Any] | None, tuple[SanMatcher, ...]]:
    """The effective ``CertificateValidationContext`` (trust and SANs), if any."""
    if isinstance(common.get("validation_context"), dict):
        validation = common["validation_context"]
    elif isinstance(common.get("validation_context_sds_secret_config"), dict):
        ref = common["validation_context_sds_secret_config"]
        validation = _secret(secrets, ref, "validation_context")
    elif isinstance(common.get("combined_validation_context"), dict):
        combined = common["combined_validation_context"]
        fetched = _secret(
            secrets, combined["validation_context_sds_secret_config"], "validation_context"
        )
        validation = {**(combined.get("default_validation_context") or {}), **fetched}
    else:
        return None, ()
    if "trusted_ca" not in validation:
        return None, ()  # Envoy: without a trust anchor the certificate is not verified
    return validation, _san_matchers(validation)


def _san_matchers(validation: Mapping[str, Any]) -> tuple[SanMatcher, ...]:
    matchers = []
    for typed in validation.get("match_typed_subject_alt_names") or ():
        san_type = _SAN_TYPES.get(str(typed.get("san_type")))
        if san_type is None:
            raise ConfigError(f"SAN type {typed.get('san_type')!r} is not supported")
        matcher = typed.get("matcher") or {}
        matches = _dns_exact(matcher) if san_type == "DNS" else None
        matchers.append(SanMatcher(san_type, matches or compile_string_matcher(matcher)))
    for matcher in validation.get("match_subject_alt_names") or ():
        matchers.append(SanMatcher(None, compile_string_matcher(matcher)))
    return tuple(matchers)


def _dns_exact(matcher: Mapping[str, Any]) -> Callable[[str], bool] | None:
    """Envoy's DNS SAN exact match: case-insensitive, and a certificate's ``*.example.com``
    covers exactly one label (``a.example.com``, not ``a.b.example.com``)."""
    if set(matcher) - {"exact", "ignore_case"} or "exact" not in matcher:
        return None
    wanted = str(matcher["exact"]).lower()

    def matches(san: str) -> bool:
        san = san.lower()
        if san == wanted:
            return True
        if not san.startswith("*."):
            return False
        first, _, rest = wanted.partition(".")
        return bool(first) and rest == san[2:]

    return matches


def _secret(secrets: Secrets, ref: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    name = str(ref.get("name", ""))
    cluster = sds_agent_cluster(ref)
    if cluster is None:
        secret = secrets.ads.get(name)
        if secret is None:
            raise ConfigError(
                f"SDS secret {name!r} has not been delivered (the xDS server sent no such secret)"
            )
    else:
        if cluster != secrets.agent_cluster:
            raise ConfigError(
                f"SDS secret {name!r}: cluster {cluster!r} is not a static cluster of the "
                "bootstrap (APPMESH_SDS_SOCKET_PATH unset?)"
            )
        secret = secrets.local.get(name)
        if secret is None:
            raise SecretNotReady(name)
    body = secret.get(kind)
    if not isinstance(body, dict):
        raise ConfigError(f"SDS secret {name!r} holds no {kind}")
    return body


def _data(source: Any, what: str) -> bytes:
    """An Envoy ``DataSource``: ``filename``, ``inline_string`` or ``inline_bytes``."""
    if not isinstance(source, dict):
        raise ConfigError(f"TLS {what} missing")
    try:
        if "filename" in source:
            with open(source["filename"], "rb") as file:
                return file.read()
    except OSError as exc:
        raise ConfigError(f"TLS {what}: cannot read {source['filename']}: {exc}") from exc
    if "inline_string" in source:
        return str(source["inline_string"]).encode()
    if "inline_bytes" in source:
        return base64.b64decode(source["inline_bytes"])
    raise ConfigError(f"TLS {what}: unsupported data source {sorted(source)}")


def _load_pair(context: ssl.SSLContext, chain: bytes, key: bytes) -> None:
    """``ssl`` loads certificates only from files: the PEMs go through a private
    temporary file that is removed at once."""
    fd, path = tempfile.mkstemp(prefix="appmesh-proxy-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(chain.rstrip(b"\n") + b"\n" + key)
        context.load_cert_chain(path)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"TLS certificate or private key rejected: {exc}") from exc
    finally:
        os.unlink(path)


def _load_trust(context: ssl.SSLContext, validation: Mapping[str, Any]) -> bytes:
    """Load the trust bundle; returns its PEM."""
    data = _data(validation.get("trusted_ca"), "trusted_ca")
    try:
        context.load_verify_locations(cadata=data.decode(errors="replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"TLS trusted_ca rejected: {exc}") from exc
    return data


def local_secret_names(resources: Any) -> Iterator[str]:
    """The names of every local-agent SDS secret ``resources`` reference."""
    for node in objects_in(resources):
        config = node.get("sds_config")
        if isinstance(config, dict) and "ads" not in config and isinstance(node.get("name"), str):
            yield node["name"]


def check_secret(secret: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` when an SDS secret cannot be used: a certificate and key
    that do not load, or a trust bundle that does not parse (the agent is NACKed)."""
    if isinstance(secret.get("tls_certificate"), dict):
        body = secret["tls_certificate"]
        chain = _data(body.get("certificate_chain"), "certificate_chain")
        _load_pair(
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),
            chain,
            _data(body.get("private_key"), "private_key"),
        )
    elif isinstance(secret.get("validation_context"), dict):
        validation = secret["validation_context"]
        if "trusted_ca" in validation:
            _load_trust(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), validation)
    else:
        raise ConfigError(
            f"SDS secret {secret.get('name')!r} holds no tls_certificate or validation_context"
        )
