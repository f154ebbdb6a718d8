"""An ACM Private CA and private ACM certificates in the embedded side services.

The steps are the ones App Mesh's walkthroughs (tls-with-acm,
howto-mutual-tls-file-provided-by-acm) run with the aws CLI: create a root CA, sign its
CSR with the RootCACertificate template, import that certificate (the CA becomes
ACTIVE), then request private certificates from ACM naming the CA.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

ROOT_TEMPLATE = "arn:aws:acm-pca:::template/RootCACertificate/V1"
PASSPHRASE = b"appmesh-local-tests"


def create_root_ca(pca: Any, name: str) -> str:
    """An ACTIVE root CA named ``name``; returns its ARN."""
    subject = {"CommonName": name, "Organization": "appmesh-local tests"}
    arn = pca.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "RSA_2048",
            "SigningAlgorithm": "SHA256WITHRSA",
            "Subject": subject,
        },
        CertificateAuthorityType="ROOT",
    )["CertificateAuthorityArn"]
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    issued = pca.issue_certificate(
        CertificateAuthorityArn=arn,
        Csr=csr.encode(),
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn=ROOT_TEMPLATE,
        Validity={"Value": 10, "Type": "YEARS"},
    )["CertificateArn"]
    certificate = pca.get_certificate(CertificateAuthorityArn=arn, CertificateArn=issued)
    pca.import_certificate_authority_certificate(
        CertificateAuthorityArn=arn, Certificate=certificate["Certificate"].encode()
    )
    return arn


def ca_pem(pca: Any, arn: str) -> str:
    return str(
        pca.get_certificate_authority_certificate(CertificateAuthorityArn=arn)["Certificate"]
    )


def request_private(acm: Any, ca_arn: str, domain: str) -> str:
    """A private certificate for ``domain`` issued by the CA; returns its ARN."""
    return str(
        acm.request_certificate(DomainName=domain, CertificateAuthorityArn=ca_arn)["CertificateArn"]
    )


def export_files(acm: Any, arn: str, folder: Path, name: str) -> dict[str, str]:
    """Export a private certificate to ``<name>.crt`` (with its chain) and ``<name>.key``
    (decrypted), as the mutual-TLS walkthrough does; returns an App Mesh ``file``
    certificate pointing at them."""
    exported = acm.export_certificate(CertificateArn=arn, Passphrase=PASSPHRASE)
    key = serialization.load_pem_private_key(exported["PrivateKey"].encode(), PASSPHRASE)
    plain = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    chain, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    chain.write_text(exported["Certificate"] + "\n" + exported.get("CertificateChain", ""))
    key_path.write_bytes(plain)
    return {"certificateChain": str(chain), "privateKey": str(key_path)}


def client_context(ca: str, certificate: dict[str, str] | None = None) -> ssl.SSLContext:
    """A Python ``ssl`` client trusting the CA PEM ``ca`` (hostnames are not checked:
    the tests read the SAN themselves), with an optional client certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=ca)
    if certificate:
        context.load_cert_chain(certificate["certificateChain"], certificate["privateKey"])
    return context
