"""Certificates made on the fly for TLS tests: a CA, and leaf certificates it signs.

Each leaf is written as PEM files (chain, key) so the same material serves a file-based
App Mesh listener, an SDS secret (read back inline) and Python ``ssl`` clients.
"""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pem:
    """A certificate (with its chain) and private key on disk."""

    chain: Path
    key: Path

    def chain_text(self) -> str:
        return self.chain.read_text()

    def key_text(self) -> str:
        return self.key.read_text()

    def file_certificate(self) -> dict:
        """App Mesh's ``file`` certificate naming these files (a listener's ``tls.certificate``
        or a client policy's ``tls.certificate``)."""
        return {"file": {"certificateChain": str(self.chain), "privateKey": str(self.key)}}


class Authority:
    """A self-signed CA that issues server and client certificates into ``folder``."""

    def __init__(self, folder: Path, name: str = "Test CA") -> None:
        self.folder = folder
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        safe = name.replace(" ", "_")
        self.pem = folder / f"{safe}.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, sans: list[str]) -> Pem:
        """A leaf for ``sans`` (DNS names, or URIs such as SPIFFE IDs), usable as server
        and client certificate, written as ``<name>.crt`` / ``<name>.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        names: list[x509.GeneralName] = [
            x509.UniformResourceIdentifier(s) if "://" in s else x509.DNSName(s) for s in sans
        ]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        chain, key_path = self.folder / f"{name}.crt", self.folder / f"{name}.key"
        chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return Pem(chain, key_path)

    def client_context(self, certificate: Pem | None = None) -> ssl.SSLContext:
        """A Python ``ssl`` client that trusts this CA (names are checked by the test)."""
        context = ssl.create_default_context(cafile=str(self.pem))
        context.check_hostname = False
        if certificate is not None:
            context.load_cert_chain(str(certificate.chain), str(certificate.key))
        return context
