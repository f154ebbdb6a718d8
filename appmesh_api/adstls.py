"""The certificate gRPC ADS serves over TLS, and the names it answers to.

App Mesh's Envoy image reached its management server with Google gRPC over TLS and
would not send its ``aws_iam`` call credentials otherwise, so a task that keeps the real
Envoy needs an ADS port with a certificate it trusts. Either the operator gives one
(``serve --xds-tls-cert/--xds-tls-key``), or ``serve`` issues one at every start from a
local CA it keeps in the data directory (``ads-tls/ca.pem`` and ``ca-key.pem``), so the
CA a task was told to trust survives restarts while the server certificate always names
this machine's current names. With ``--in-memory`` the CA lives as long as the process.
The CA's PEM is what a task must trust: ``GET /_appmesh/ads-ca.pem`` or
``appmesh-local ads-ca``.

The names matter twice: Envoy checks the certificate against the host of its
``target_uri``, and the SigV4 signature of every ADS call covers that authority as its
``host`` header (see ``adsauth.py``).
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appmesh_api.settings import Settings

CA_FOLDER = "ads-tls"
_CA_YEARS = 10
_LEAF_DAYS = 397  # what public CAs may issue at most; re-issued at every start anyway
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}


@dataclass(frozen=True)
class AdsCertificate:
    """What the TLS port serves: a chain and key, the names they cover, and the local CA
    (None when the operator gave the certificate)."""

    chain_pem: bytes
    key_pem: bytes
    names: tuple[str, ...]
    ca_pem: bytes | None
    ca_path: Path | None


def load_or_issue(settings: Settings) -> AdsCertificate:
    """The operator's certificate when one was given, else one issued by the local CA."""
    if settings.xds_tls_cert:
        return _given(Path(settings.xds_tls_cert), Path(str(settings.xds_tls_key)))
    ca_key, ca_cert, ca_path = _local_ca(settings.data_dir)
    names = local_names(settings.xds_host, settings.xds_tls_names)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _leaf(key, names, ca_key, ca_cert)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca_pem
    return AdsCertificate(chain, _private_pem(key), tuple(names), ca_pem, ca_path)


def local_names(bind_host: str, extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The names a task on this machine (or a container beside it) dials ADS by: loopback,
    this host's names, the bind address when it is a specific one, and ``--xds-tls-name``."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()]
    if bind_host not in _WILDCARD_HOSTS:
        names.append(bind_host)
    names += [_host_part(name) for name in extra]
    return list(dict.fromkeys(name for name in names if name))


def _host_part(name: str) -> str:
    """``name`` without a ``:port`` (an ``--xds-tls-name`` may say the port tasks dial)."""
    if name.startswith("["):
        return name[1:].split("]", 1)[0]
    host, sep, port = name.rpartition(":")
    return host if sep and port.isdigit() and ":" not in host else name


def _given(chain_path: Path, key_path: Path) -> AdsCertificate:
    """Read the operator's PEM files, refusing loudly what the TLS port could not serve."""
    try:
        chain_pem, key_pem = chain_path.read_bytes(), key_path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the ADS TLS certificate or key: {exc}") from None
    try:
        leaf = x509.load_pem_x509_certificates(chain_pem)[0]
        serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise ValueError(f"--xds-tls-cert/--xds-tls-key are not PEM: {exc}") from None
    return AdsCertificate(chain_pem, key_pem, tuple(_names_of(leaf)), None, None)


def _names_of(certificate: x509.Certificate) -> list[str]:
    try:
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names = alternative.value.get_values_for_type(x509.DNSName)
    return names + [str(ip) for ip in alternative.value.get_values_for_type(x509.IPAddress)]


def _local_ca(
    data_dir: Path | None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path | None]:
    """The CA kept in ``data_dir/ads-tls``, created on first use; in memory without one."""
    folder = data_dir / CA_FOLDER if data_dir is not None else None
    if folder is not None and (folder / "ca.pem").exists():
        key = serialization.load_pem_private_key((folder / "ca-key.pem").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{folder / 'ca-key.pem'} is not the EC key appmesh-local wrote")
        certificate = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
        return key, certificate, folder / "ca.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _ca_certificate(key)
    if folder is None:
        return key, certificate, None
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "ca-key.pem"
    key_file.touch(mode=0o600)
    key_file.write_bytes(_private_pem(key))
    (folder / "ca.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key, certificate, folder / "ca.pem"


def _ca_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "appmesh-local ADS CA")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365 * _CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _leaf(
    key: ec.EllipticCurvePrivateKey,
    names: list[str],
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    issuer_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(issuer_key_id, critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _general_names(names: list[str]) -> list[x509.GeneralName]:
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return general


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
