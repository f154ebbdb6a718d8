"""Which ACM ARNs a spec names, and which of them the control plane may export."""

from __future__ import annotations

import pytest

from appmesh_api.acm import AcmRefused, CertificateRef, check_reference, references

OWNER = "111122223333"
CERT = f"arn:aws:acm:us-east-1:{OWNER}:certificate/abc"
CA = f"arn:aws:acm-pca:eu-west-1:{OWNER}:certificate-authority/ca1"


def test_references_finds_listener_certificates_and_acm_trust_everywhere():
    trust = {"trust": {"acm": {"certificateAuthorityArns": [CA]}}}
    spec = {
        "listeners": [
            {"tls": {"mode": "STRICT", "certificate": {"acm": {"certificateArn": CERT}}}}
        ],
        "backends": [{"virtualService": {"clientPolicy": {"tls": {"validation": trust}}}}],
        "backendDefaults": {"clientPolicy": {"tls": {"validation": trust}}},
    }
    assert sorted(set(references(spec))) == sorted({CERT, CA})
    assert list(references({"listeners": [{"tls": {"certificate": {"file": {}}}}]})) == []


def test_a_certificate_and_an_authority_of_the_owner_are_usable_in_their_region():
    assert check_reference(CertificateRef(OWNER, CERT))[:2] == ("acm", "us-east-1")
    assert check_reference(CertificateRef(OWNER, CA))[:2] == ("acm-pca", "eu-west-1")


@pytest.mark.parametrize(
    ("arn", "reason"),
    [
        (CERT.replace(OWNER, "444455556666"), "no cross-account ACM references"),
        (f"{CA}/certificate/1234", "not an ACM certificate or ACM PCA certificate authority"),
        (f"arn:aws:s3:us-east-1:{OWNER}:certificate/abc", "not an ACM certificate"),
        ("certificate/abc", "not an ARN"),
    ],
)
def test_other_arns_are_refused_with_the_reason(arn: str, reason: str):
    with pytest.raises(AcmRefused, match=reason):
        check_reference(CertificateRef(OWNER, arn))
