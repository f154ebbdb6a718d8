"""``proxy.config.x509_facts`` against ``cryptography``'s reading of the same certificates.

The sidecar reads the few fields ``/certs`` shows from DER itself (``cryptography``
would cost it 11 MB); each case here is a certificate ``cryptography`` builds, read both
ways: long and short serials (a high bit gets DER's leading zero), UTCTime and
GeneralizedTime (after 2049), DNS, URI and IP SANs in order, a critical SAN extension,
none at all, and a bundle of which only the first certificate counts.
"""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proxy.config.x509_facts import CertificateFacts, first_certificate

KEY = ec.generate_private_key(ec.SECP256R1())
START = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
LATE = datetime.datetime(2051, 6, 1, tzinfo=datetime.UTC)  # GeneralizedTime in DER


def certificate(
    serial: int,
    names: list[x509.GeneralName] | None,
    until: datetime.datetime,
    critical: bool = False,
) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "facts")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(KEY.public_key())
        .serial_number(serial)
        .not_valid_before(START)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=critical)
    cert = builder.sign(KEY, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def expected(pem: bytes, path: str) -> CertificateFacts:
    cert = x509.load_pem_x509_certificate(pem)
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        kinds = {x509.DNSName: "dns", x509.UniformResourceIdentifier: "uri",
                 x509.IPAddress: "ip_address"}  # fmt: skip
        names = tuple((kinds[type(n)], str(n.value)) for n in extension.value)
    except x509.ExtensionNotFound:
        names = ()
    digits = f"{cert.serial_number:x}"
    serial = digits.zfill(len(digits) + len(digits) % 2)  # OpenSSL's two digits a byte
    return CertificateFacts(path, serial, names, cert.not_valid_before_utc,
                            cert.not_valid_after_utc)  # fmt: skip


MIXED = [
    x509.DNSName("a.example.com"),
    x509.UniformResourceIdentifier("spiffe://example.org/front"),
    x509.IPAddress(ipaddress.ip_address("10.0.0.7")),
    x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
    x509.DNSName("*.example.com"),
]
CASES = {
    "mixed SANs": (x509.random_serial_number(), MIXED, START + datetime.timedelta(days=90)),
    "high-bit serial": (0x80FF, [x509.DNSName("x.local")], START + datetime.timedelta(days=1)),
    "one-byte serial": (5, [x509.DNSName("x.local")], START + datetime.timedelta(days=1)),
    "after 2049": (7, [x509.DNSName("x.local")], LATE),
    "no SANs": (9, None, START + datetime.timedelta(days=1)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_facts_are_cryptographys(case: str) -> None:
    pem = certificate(*CASES[case])
    assert first_certificate(pem, "/certs/x.pem") == expected(pem, "/certs/x.pem")


def test_a_critical_san_extension_is_read_too() -> None:
    pem = certificate(11, MIXED, START + datetime.timedelta(days=1), critical=True)
    assert first_certificate(pem, "<inline>") == expected(pem, "<inline>")


def test_only_the_first_certificate_of_a_bundle_counts() -> None:
    first = certificate(21, [x509.DNSName("first.local")], START + datetime.timedelta(days=1))
    second = certificate(22, [x509.DNSName("second.local")], START + datetime.timedelta(days=1))
    facts = first_certificate(first + second, "bundle.pem")
    assert facts is not None and facts.subject_alt_names == (("dns", "first.local"),)


def test_what_is_not_a_certificate_is_left_out() -> None:
    assert first_certificate(b"no PEM here", "x") is None
    broken = b"-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAK\n-----END CERTIFICATE-----\n"
    assert first_certificate(broken, "x") is None


def test_days_until_expiration_count_whole_days_and_stop_at_zero() -> None:
    facts = first_certificate(certificate(31, None, START + datetime.timedelta(days=3)), "x")
    assert facts is not None
    assert facts.days_until_expiration(START + datetime.timedelta(hours=1)) == 2
    assert facts.days_until_expiration(START + datetime.timedelta(days=4)) == 0
