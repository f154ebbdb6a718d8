"""What the side-service snapshots count as a write, and what their pickler rebuilds."""

from __future__ import annotations

import datetime
import threading
from collections import defaultdict

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from appmesh_api.sidestate import dumps, is_write, loads


@pytest.mark.parametrize(
    ("method", "operation", "write"),
    [
        ("POST", "PutParameter", True),
        ("POST", "GetParameter", False),
        ("POST", "DescribeParameters", False),
        ("POST", "ListNamespaces", False),
        ("POST", "DiscoverInstances", False),
        ("POST", "IssueCertificate", True),
        ("POST", "PutMetricData", True),
        ("POST", "SomethingNew", True),  # unknown: saved, to be safe
        ("GET", "GET /bucket/key", False),
        ("HEAD", "HEAD /bucket", False),
        ("PUT", "PUT /bucket/key", True),
        ("DELETE", "DELETE /bucket/key", True),
    ],
)
def test_what_counts_as_a_write(method, operation, write):
    assert is_write(method, operation) is write


def _certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pickled")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    return builder.sign(key, hashes.SHA256())


class Holder:
    """Shaped like moto's models: locks, keys and lambda-made defaultdicts in attributes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rlock = threading.RLock()
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec_public = ec.generate_private_key(ec.SECP256R1()).public_key()
        self.certificate = _certificate(self.key)
        self.tags = defaultdict(lambda: defaultdict(dict))
        self.tags["arn"]["k"] = {"v": 1}


def test_locks_keys_certificates_and_lambda_defaultdicts_come_back():
    original = Holder()
    original.lock.acquire()
    copy = loads(dumps(original))
    assert copy.lock.acquire(blocking=False)  # a new lock, unlocked
    assert copy.rlock.acquire(blocking=False)
    assert copy.key.private_numbers() == original.key.private_numbers()
    assert copy.ec_public.public_numbers() == original.ec_public.public_numbers()
    assert copy.certificate == original.certificate
    assert copy.tags["arn"]["k"] == {"v": 1}
    assert copy.tags["new"]["x"] == {}  # the factory still makes nested defaultdicts
