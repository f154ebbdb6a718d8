"""Walkthroughs whose ECS services cannot run here, as processes on this host.

The TLS walkthroughs' ECS services run custom Envoy images that fetch certificates
from Secrets Manager into ``/keys``; here the certificates are made with
``cryptography`` as their ``certs.sh`` made them with OpenSSL (same file names, same
CAs and SANs) into a temporary ``keys`` folder, and every ``/keys/`` path of their
specs names that folder instead. Each app listens on the walkthrough's own port on
a loopback address of its own (the sidecar's ``APPMESH_APP_HOST``), and a gateway
listens on its listener's port on another.
"""

from __future__ import annotations

import datetime
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import Server, new_account
from tests.mesh.harness import Mesh, Proxy

COLOR_APP = str(Path(__file__).with_name("color_app.py"))
_used: set[str] = set()


def loopback() -> str:
    """A loopback address no other test of this run uses (127.0.0.0/8 is all local)."""
    while True:
        address = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
        if address not in _used:
            _used.add(address)
            return address


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


class Keys:
    """``certs.sh``: RSA 2048 CAs, leaves they sign, chains and bundles, in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.cas: dict[str, tuple[rsa.RSAPrivateKey, x509.Certificate]] = {}

    def ca(self, name: str) -> None:
        """``generate_ca NAME``: ``NAME_key.pem``, ``NAME_cert.pem`` (self-signed)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            self._builder(subject, subject, key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.cas[name] = (key, cert)
        self._write(name, key, cert)

    def leaf(self, name: str, dns: str, ca: str) -> None:
        """``generate_x509_cert NAME CA`` and ``generate_cert_chain NAME CA``."""
        ca_key, ca_cert = self.cas[ca]
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)])
        usage = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
        cert = (
            self._builder(subject, ca_cert.subject, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self._write(name, key, cert)
        (self.folder / f"{name}_cert_chain.pem").write_bytes(pem(cert) + pem(ca_cert))

    def bundle(self, first: str, second: str) -> None:
        """``generate_cert_bundle A B``: ``A_B_bundle.pem``."""
        both = pem(self.cas[first][1]) + pem(self.cas[second][1])
        (self.folder / f"{first}_{second}_bundle.pem").write_bytes(both)

    @staticmethod
    def _builder(subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey):
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
        )

    def _write(self, name: str, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> None:
        (self.folder / f"{name}_cert.pem").write_bytes(pem(cert))
        (self.folder / f"{name}_key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )


def color_app(tmp: Path, name: str, address: str, port: int, processes: list) -> None:
    """``color_app.py NAME PORT 0 ADDRESS``: answers NAME on every path."""
    log = (tmp / f"app-{name}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, COLOR_APP, name, str(port), "0", address],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    processes.append(process)
    wait_listening(address, port, process, name)


def wait_listening(address: str, port: int, process: subprocess.Popen, name: str) -> None:
    """Until ``process`` accepts on ``address:port`` (20 s; it must not exit meanwhile)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, f"{name} never listened"
            time.sleep(0.05)


class LocalWorld:
    """One walkthrough run here: its own account, the mesh's processes and sidecars, and
    the loopback address its gateway listens on. Each walkthrough adds how it deploys."""

    def __init__(self, server: Server, tmp: Path, mesh: str) -> None:
        self.server, self.tmp, self.account = server, tmp, new_account()
        self.mesh = Mesh(server.endpoint, self.account, mesh, tmp)
        self.proxies: dict[str, Proxy] = {}
        self.gateway_address = loopback()

    def start_app(self, colour: str, port: int, node: str) -> Proxy:
        """``color_app.py`` answering ``colour`` on ``port`` of a loopback address of its
        own, and ``node``'s sidecar in front of it (``APPMESH_APP_HOST``)."""
        address = loopback()
        color_app(self.tmp, colour, address, port, self.mesh.processes)
        return self.mesh.proxy(node, env={"APPMESH_APP_HOST": address})

    def start_gateway(self, gateway: str) -> Proxy:
        """The virtual gateway's proxy, listening on the gateway address."""
        env = {"APPMESH_LISTEN_ADDRESS": self.gateway_address}
        return self.mesh.proxy(gateway, kind="virtualGateway", env=env)
