"""ACM material for the proxies' TLS, exported by the control plane as App Mesh did.

A listener whose TLS certificate is ``acm`` names a private certificate (issued from an
ACM Private CA), and a client policy whose trust is ``acm`` names certificate
authorities. App Mesh's control plane fetched that material and sent it to Envoy over
ADS as SDS secrets; the proxy never called ACM. So do we, against the side services
(the embedded moto, or ``--aws-endpoint``):

- a certificate: ACM ``ExportCertificate`` (certificate, chain, private key; the key is
  exported encrypted under a one-time passphrase and decrypted here);
- a certificate authority: ACM PCA ``GetCertificateAuthorityCertificate``.

Calls are made as the account that owns the node or gateway naming the ARN, in the
ARN's region. App Mesh allowed no cross-account ACM references, so an ARN of another
account is refused without a call. Every wanted ARN is checked again each ``interval``
seconds (UNCONFIRMED: App Mesh documents no cadence; 5 s by default): a certificate with
``DescribeCertificate`` (exported again only when its serial, status or validity
changed), a CA by fetching its certificate. A renewed certificate is new material, which
moves its meshes' versions, so proxies get the new secret and use it for new connections
(rotation).

A failure (not found, not exportable, another account's) means no secret: the proxy
NACKs the listener or cluster that needs it, and the control plane logs one line naming
the ARN and the reason (again only when the reason changes). An unreachable side
service keeps the last material delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from appmesh_api.sidepoller import NoSideServiceEndpoint, SideServicePoller
from appmesh_api.store import MeshKey

log = logging.getLogger("appmesh_local.acm")

Material = Mapping[str, str]


class AcmRefused(Exception):
    """ACM or ACM PCA said no (or the ARN may not be used): no secret for it."""


@dataclass(frozen=True)
class CertificateRef:
    """An ARN a node's TLS names, and the account that owns that node."""

    owner: str
    arn: str


def references(spec: Mapping[str, Any]) -> Iterator[str]:
    """Every ACM certificate and ACM PCA ARN a node's or gateway's spec names: listener
    certificates, and the ``acm`` trust of client policies (per backend and in
    ``backendDefaults``). The places are looked up, not searched for: this runs over
    every node of a mesh at each new version."""
    for listener in spec.get("listeners") or ():
        tls = listener.get("tls") or {}
        arn = ((tls.get("certificate") or {}).get("acm") or {}).get("certificateArn")
        if isinstance(arn, str):
            yield arn
    policies = [(spec.get("backendDefaults") or {}).get("clientPolicy")]
    for backend in spec.get("backends") or ():
        policies.append((backend.get("virtualService") or {}).get("clientPolicy"))
    for policy in policies:
        validation = ((policy or {}).get("tls") or {}).get("validation") or {}
        trust = (validation.get("trust") or {}).get("acm") or {}
        yield from (a for a in trust.get("certificateAuthorityArns") or () if isinstance(a, str))


def check_reference(ref: CertificateRef) -> tuple[str, str, str]:
    """(service, region, resource) of a usable ARN, else AcmRefused with the reason."""
    parts = ref.arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise AcmRefused("not an ARN")
    _, _, service, region, account, resource = parts
    if account != ref.owner:
        raise AcmRefused(
            f"it belongs to account {account}, not to {ref.owner}, which owns the resource "
            "naming it (App Mesh allows no cross-account ACM references)"
        )
    certificate = service == "acm" and resource.startswith("certificate/")
    authority = (
        service == "acm-pca"
        and resource.startswith("certificate-authority/")
        and "/certificate/" not in resource
    )
    if not (certificate or authority):
        raise AcmRefused("not an ACM certificate or ACM PCA certificate authority ARN")
    return service, region, resource


class CertificateExporter(SideServicePoller):
    """Cached ACM material per reference, fetched off the event loop and refreshed."""

    def __init__(
        self,
        endpoint: Callable[[], str | None],
        secret: str = "appmesh-local",
        interval: float = 5.0,
    ) -> None:
        super().__init__(endpoint, secret, interval)
        self._results: dict[CertificateRef, Material] = {}
        self._refused: dict[CertificateRef, str] = {}
        self._stamps: dict[CertificateRef, str] = {}  # the issuance last exported
        self._by_mesh: dict[MeshKey, set[CertificateRef]] = {}
        self._answered = asyncio.Event()

    def track(self, mesh: MeshKey, refs: set[CertificateRef]) -> dict[str, Material]:
        """Make ``refs`` what ``mesh`` wants (new ones are fetched at once, ones no mesh
        wants any more are forgotten) and return the material fetched so far, by ARN."""
        before = self._by_mesh.get(mesh, set())
        self._by_mesh[mesh] = set(refs)
        if refs - before:
            self.wake()
        for ref in before - refs:
            if not any(ref in wanted for wanted in self._by_mesh.values()):
                self._results.pop(ref, None)
                self._refused.pop(ref, None)
                self._stamps.pop(ref, None)
        return {ref.arn: self._results[ref] for ref in refs if ref in self._results}

    async def settled(self, mesh: MeshKey, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until every reference ``mesh`` asked for has
        been answered once, so a proxy's first config carries its secrets."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._unanswered(mesh):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), remaining)

    def _unanswered(self, mesh: MeshKey) -> bool:
        return any(self._new(ref) for ref in self._by_mesh.get(mesh, ()))

    def _new(self, ref: CertificateRef) -> bool:
        return ref not in self._results and ref not in self._refused

    def _meshes_of(self, ref: CertificateRef) -> list[MeshKey]:
        return [mesh for mesh, refs in self._by_mesh.items() if ref in refs]

    async def run(self, publish: Callable[[MeshKey], object]) -> None:
        """Fetch new references at once and every reference each ``interval`` seconds."""
        refreshed = 0.0
        async for _ in self.rounds():
            now = time.monotonic()
            every = now - refreshed >= self.interval
            refreshed = now if every else refreshed
            wanted = {ref for refs in list(self._by_mesh.values()) for ref in refs}
            for ref in sorted(wanted, key=lambda r: (r.owner, r.arn)):
                if every or self._new(ref):
                    await self._refresh(ref, publish)

    async def _refresh(self, ref: CertificateRef, publish: Callable[[MeshKey], object]) -> None:
        try:
            found: Material | None = await asyncio.to_thread(self._fetch, ref)
            reason = None
        except AcmRefused as refusal:
            found, reason = None, str(refusal)
        except (BotoCoreError, OSError) as exc:  # side service unreachable: keep the last
            log.warning("ACM %s: fetch failed, keeping what was delivered: %s", ref.arn, exc)
            return
        finally:
            self._answered.set()
            self._answered = asyncio.Event()
        if reason is not None and self._refused.get(ref) != reason:
            log.warning("ACM %s: not delivered to the proxies: %s", ref.arn, reason)
        changed = self._results.get(ref) != found
        self._set(ref, found, reason)
        if changed:
            if found is not None:
                log.info("ACM %s: material delivered (%s)", ref.arn, _serial(found))
            for mesh in self._meshes_of(ref):
                publish(mesh)

    def _set(self, ref: CertificateRef, found: Material | None, reason: str | None) -> None:
        if found is None:
            self._results.pop(ref, None)
        else:
            self._results[ref] = found
        if reason is None:
            self._refused.pop(ref, None)
        else:
            self._refused[ref] = reason

    def _fetch(self, ref: CertificateRef) -> Material:
        service, region, _ = check_reference(ref)
        try:
            client = self.client("acm" if service == "acm" else "acm-pca", region, ref.owner)
        except NoSideServiceEndpoint as missing:
            raise AcmRefused(str(missing)) from missing
        try:
            if service == "acm":
                return self._certificate(client, ref)
            answer = client.get_certificate_authority_certificate(CertificateAuthorityArn=ref.arn)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise AcmRefused(f"{error.get('Code')}: {error.get('Message')}") from exc
        material = {"certificate": answer["Certificate"]}
        if answer.get("CertificateChain"):
            material["certificateChain"] = answer["CertificateChain"]
        return material

    def _certificate(self, client: Any, ref: CertificateRef) -> Material:
        """The last export while DescribeCertificate shows the same issuance (serial,
        status, validity), else a new export: decrypting an exported key costs ~0.1 s of
        CPU, and a refresh must not cost that per certificate every few seconds."""
        described = client.describe_certificate(CertificateArn=ref.arn)["Certificate"]
        stamp = "/".join(
            str(described.get(k, "")) for k in ("Serial", "Status", "NotBefore", "NotAfter")
        )
        known = self._results.get(ref)
        if known is not None and self._stamps.get(ref) == stamp:
            return known
        material = _export(client, ref.arn)
        self._stamps[ref] = stamp
        return material


def _export(client: Any, arn: str) -> dict[str, str]:
    """ExportCertificate under a one-time passphrase, the key decrypted to PKCS#8 PEM."""
    from cryptography.hazmat.primitives import serialization

    passphrase = secrets.token_urlsafe(24).encode()
    answer = client.export_certificate(CertificateArn=arn, Passphrase=passphrase)
    key = serialization.load_pem_private_key(answer["PrivateKey"].encode(), password=passphrase)
    plain = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    material = {"certificate": answer["Certificate"], "privateKey": plain}
    if answer.get("CertificateChain"):
        material["certificateChain"] = answer["CertificateChain"]
    return material


def _serial(material: Material) -> str:
    """The certificate's serial number, for the log line (never the key)."""
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(material["certificate"].encode())
    except ValueError:
        return "unreadable certificate"
    return f"serial {certificate.serial_number:x}"
