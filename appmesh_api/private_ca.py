"""The embedded ACM's private certificates, issued by the embedded ACM PCA (moto fixes).

App Mesh's ``acm`` listener certificates had to be private certificates: requested from
ACM with a ``CertificateAuthorityArn`` and signed by that ACM Private CA, so the clients
could trust the CA. moto 5.2 gets two things wrong, and ``install`` corrects both in the
embedded moto (nothing here runs with ``--aws-endpoint``):

- ``RequestCertificate`` with ``CertificateAuthorityArn`` returns a *self-signed*
  certificate whose chain is moto's made-up Amazon root, so nothing issued that way
  verifies against the CA's certificate. Here the certificate is issued by the named CA
  of the same account and region (through moto's own ACM PCA ``IssueCertificate``, with
  the EndEntityCertificate template: server and client authentication) and its chain is
  the CA's certificate. A CA that is missing or not ``ACTIVE`` leaves the certificate
  ``FAILED`` with ACM's ``FailureReason`` (``PCA_RESOURCE_NOT_FOUND`` or
  ``PCA_INVALID_STATE``), as ACM reports a failed private issuance.
- ``RenewCertificate`` is missing. ACM renews a private certificate in place: same ARN,
  new certificate from the same CA. UNCONFIRMED: ACM's renewal also generates a new key
  pair (we do: a renewed certificate here has a new key).

And ACM PCA's ``CreatePermission``, ``ListPermissions`` and ``DeletePermission`` (the
grant that lets ACM renew a CA's certificates, a step of App Mesh's tls-with-acm
walkthrough) answer 500 in moto; here they keep each CA's permissions.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

END_ENTITY_TEMPLATE = "arn:aws:acm-pca:::template/EndEntityCertificate/V1"
_lock = threading.Lock()
_installed = False


def install() -> None:
    """Patch moto's ACM backend and responses (idempotent, process-wide like moto)."""
    global _installed
    with _lock:
        if _installed:
            return
        from moto.acm.models import AWSCertificateManagerBackend
        from moto.acm.responses import AWSCertificateManagerResponse

        original = AWSCertificateManagerBackend.request_certificate

        def request_certificate(self: Any, *args: Any, **kwargs: Any) -> str:
            arn = original(self, *args, **kwargs)
            bundle = self._certificates[arn]
            if bundle.cert_authority_arn and not getattr(bundle, "issued_by_ca", False):
                _issue_from_ca(self, bundle)
            return arn

        export = AWSCertificateManagerBackend.export_certificate

        def export_certificate(self: Any, certificate_arn: str, passphrase: str) -> Any:
            bundle = self.get_certificate(certificate_arn)
            if bundle.status != "ISSUED":
                from moto.acm.exceptions import AWSValidationException

                # UNCONFIRMED: ACM's message for exporting a certificate it did not issue.
                raise AWSValidationException(
                    f"Certificate ARN: {certificate_arn} is {bundle.status}, not ISSUED"
                )
            return export(self, certificate_arn, passphrase)

        AWSCertificateManagerBackend.request_certificate = request_certificate  # type: ignore[method-assign]
        AWSCertificateManagerBackend.export_certificate = export_certificate  # type: ignore[method-assign]
        AWSCertificateManagerBackend.renew_certificate = _renew  # type: ignore[attr-defined]
        AWSCertificateManagerResponse.renew_certificate = _renew_response  # type: ignore[attr-defined]
        _patch_describe()
        _patch_permissions()
        _installed = True


def _issue_from_ca(backend: Any, bundle: Any) -> None:
    """Replace a private certificate's self-signed material with one the CA signs."""
    from moto.acmpca.models import acmpca_backends

    pca = acmpca_backends[backend.account_id][backend.region_name]
    ca = pca.certificate_authorities.get(bundle.cert_authority_arn)
    if ca is None:
        _fail(bundle, "PCA_RESOURCE_NOT_FOUND")
        return
    if ca.status != "ACTIVE":
        _fail(bundle, "PCA_INVALID_STATE")
        return
    names = _subject_names(bundle)
    key, certificate, chain = _issue(pca, bundle.cert_authority_arn, names)
    bundle.key, bundle.cert = key, certificate
    bundle._key = bundle.validate_pk()
    bundle._cert = bundle.validate_certificate()
    bundle.chain = chain
    bundle.status, bundle.failure_reason, bundle.issued_by_ca = "ISSUED", None, True


def _fail(bundle: Any, reason: str) -> None:
    bundle.status, bundle.failure_reason, bundle.issued_by_ca = "FAILED", reason, True


def _subject_names(bundle: Any) -> list[str]:
    """The certificate's domain name first, then its other SANs (as requested)."""
    from cryptography import x509

    try:
        extension = bundle._cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = [str(name) for name in extension.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        sans = []
    first = str(bundle.common_name)
    return [first, *(name for name in sans if name != first)]


def _issue(pca: Any, ca_arn: str, names: list[str]) -> tuple[bytes, bytes, bytes]:
    """(private key, certificate, chain) PEM for ``names``, signed by the CA through
    moto's ACM PCA IssueCertificate, so the certificate is what ACM PCA would issue."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    issued = _issue_from_csr(pca, ca_arn, csr.public_bytes(serialization.Encoding.PEM))
    certificate, _ = pca.get_certificate(ca_arn, issued)
    ca_certificate, ca_chain = pca.get_certificate_authority_certificate(ca_arn)
    chain = ca_certificate + (b"\n" + ca_chain if ca_chain else b"")
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return pem_key, certificate, chain


def _renew(self: Any, arn: str) -> None:
    """ACM's RenewCertificate: a private certificate is issued again by its CA."""
    from moto.acm.exceptions import AWSValidationException

    bundle = self.get_certificate(arn)  # ResourceNotFoundException as ACM gives it
    if bundle.type != "PRIVATE" or not bundle.cert_authority_arn:
        # UNCONFIRMED: ACM's message for a certificate that is not eligible for renewal.
        raise AWSValidationException(
            f"Certificate ARN: {arn} is not a private certificate and cannot be renewed"
        )
    bundle.issued_by_ca = False
    _issue_from_ca(self, bundle)


def _renew_response(self: Any) -> str:
    self.acm_backend.renew_certificate(self._get_param("CertificateArn"))
    return ""


def _patch_describe() -> None:
    """DescribeCertificate reports ``FailureReason`` for a failed private issuance."""
    from moto.acm.models import CertBundle

    original = CertBundle.describe

    def describe(self: Any) -> dict[str, Any]:
        result = original(self)
        reason = getattr(self, "failure_reason", None)
        if reason:
            result["Certificate"]["FailureReason"] = reason
        return result

    CertBundle.describe = describe  # type: ignore[method-assign]


# ACM PCA's permission actions (botocore's ``ActionType``) and list page bounds.
_PERMISSION_ACTIONS = frozenset({"IssueCertificate", "GetCertificate", "ListPermissions"})
_MAX_RESULTS = 1000


def _patch_permissions() -> None:
    """ACM PCA's permissions on a CA (who may issue and get its certificates)."""
    from moto.acmpca.responses import ACMPCAResponse

    ACMPCAResponse.create_permission = _create_permission  # type: ignore[attr-defined]
    ACMPCAResponse.list_permissions = _list_permissions  # type: ignore[attr-defined]
    ACMPCAResponse.delete_permission = _delete_permission  # type: ignore[attr-defined]


def _permission_error(code: str, message: str) -> Exception:
    from moto.core.exceptions import JsonRESTError

    error = JsonRESTError(code, message)
    error.code = 400
    return error


def _permissions_of(response: Any, params: dict[str, Any]) -> tuple[Any, dict]:
    """The CA a permission call names (ResourceNotFoundException as ACM PCA gives it)
    and its permissions by (principal, source account)."""
    arn = str(params.get("CertificateAuthorityArn", ""))
    ca = response.acmpca_backend.describe_certificate_authority(arn)
    if ca.status == "DELETED":
        # UNCONFIRMED: ACM PCA's message for a permission call on a deleted CA.
        raise _permission_error(
            "InvalidStateException", f"The certificate authority {arn} is DELETED."
        )
    permissions = ca.__dict__.setdefault("appmesh_permissions", {})
    return ca, permissions


def _create_permission(self: Any) -> str:
    params = json.loads(self.body or "{}")
    ca, permissions = _permissions_of(self, params)
    actions = list(params.get("Actions") or ())
    unknown = sorted(set(actions) - _PERMISSION_ACTIONS)
    if not actions or unknown:
        raise _permission_error(
            "ValidationException",
            f"1 validation error detected: Value '{actions}' at 'actions' failed to satisfy "
            f"constraint: Member must satisfy constraint: [Member must satisfy enum value set: "
            f"{sorted(_PERMISSION_ACTIONS)}]",
        )
    principal = str(params.get("Principal", ""))
    # UNCONFIRMED: without SourceAccount, ACM PCA lists the CA owner's account.
    source = str(params.get("SourceAccount") or ca.account_id)
    key = (principal, str(params.get("SourceAccount") or ""))
    if key in permissions:
        raise _permission_error(
            "PermissionAlreadyExistsException",
            "The designated permission has already been given to the user.",
        )
    permissions[key] = {
        "CertificateAuthorityArn": ca.arn,
        "CreatedAt": time.time(),
        "Principal": principal,
        "SourceAccount": source,
        "Actions": sorted(set(actions)),
    }
    return "{}"


def _list_permissions(self: Any) -> str:
    params = json.loads(self.body or "{}")
    _, permissions = _permissions_of(self, params)
    size = int(params.get("MaxResults") or _MAX_RESULTS)
    start = 0
    if params.get("NextToken"):
        try:
            start = int(str(params["NextToken"]))
        except ValueError:
            raise _permission_error(
                "InvalidNextTokenException",
                "The token specified in the NextToken argument is not valid.",
            ) from None
    listed = sorted(permissions.values(), key=lambda p: (p["CreatedAt"], p["Principal"]))
    page: dict[str, Any] = {"Permissions": listed[start : start + size]}
    if start + size < len(listed):
        page["NextToken"] = str(start + size)
    return json.dumps(page)


def _delete_permission(self: Any) -> str:
    params = json.loads(self.body or "{}")
    ca, permissions = _permissions_of(self, params)
    key = (str(params.get("Principal", "")), str(params.get("SourceAccount") or ""))
    if permissions.pop(key, None) is None:
        # UNCONFIRMED: ACM PCA's answer for a permission that was never given.
        raise _permission_error(
            "ResourceNotFoundException",
            f"Permission for principal {key[0]} on {ca.arn} not found",
        )
    return "{}"


def _issue_from_csr(pca: Any, ca_arn: str, csr_pem: bytes) -> str:
    """moto's ``IssueCertificate`` backend took the CSR base64-encoded up to 5.2.5 and takes
    the PEM itself from 5.2.6 (both within the ``moto>=5.2,<5.3`` pin): the PEM first, and
    the old form only when moto could not read it as a PEM."""
    try:
        return str(pca.issue_certificate(ca_arn, csr_pem, END_ENTITY_TEMPLATE))
    except ValueError:
        csr_b64 = base64.b64encode(csr_pem)
        return str(pca.issue_certificate(ca_arn, csr_b64, END_ENTITY_TEMPLATE))
