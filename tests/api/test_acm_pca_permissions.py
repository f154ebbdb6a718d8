"""ACM PCA permissions in the embedded side services (moto answers 500 for them).

App Mesh's tls-with-acm walkthrough grants ACM the right to renew a private CA's
certificates (``aws acm-pca create-permission --principal acm.amazonaws.com``); the
three permission calls keep each CA's grants with ACM PCA's errors.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_client, new_account

CONFIGURATION = {
    "KeyAlgorithm": "RSA_2048",
    "SigningAlgorithm": "SHA256WITHRSA",
    "Subject": {"CommonName": "permissions.example"},
}
ACTIONS = ["IssueCertificate", "GetCertificate", "ListPermissions"]


@pytest.fixture
def pca(server):
    return make_client(server.endpoint, "acm-pca", new_account())


@pytest.fixture
def ca(pca) -> str:
    created = pca.create_certificate_authority(
        CertificateAuthorityConfiguration=CONFIGURATION, CertificateAuthorityType="ROOT"
    )
    return created["CertificateAuthorityArn"]


def code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return error.value.response["Error"]["Code"]


def test_a_permission_is_created_listed_and_deleted(pca, ca: str) -> None:
    pca.create_permission(
        CertificateAuthorityArn=ca, Principal="acm.amazonaws.com", Actions=ACTIONS
    )
    listed = pca.list_permissions(CertificateAuthorityArn=ca)["Permissions"]
    assert [
        (p["Principal"], sorted(p["Actions"]), p["CertificateAuthorityArn"]) for p in listed
    ] == [("acm.amazonaws.com", sorted(ACTIONS), ca)]
    assert listed[0]["SourceAccount"] == ca.split(":")[4]
    pca.delete_permission(CertificateAuthorityArn=ca, Principal="acm.amazonaws.com")
    assert pca.list_permissions(CertificateAuthorityArn=ca)["Permissions"] == []


def test_a_second_grant_to_one_principal_is_refused(pca, ca: str) -> None:
    pca.create_permission(
        CertificateAuthorityArn=ca, Principal="acm.amazonaws.com", Actions=ACTIONS
    )
    with pytest.raises(ClientError) as again:
        pca.create_permission(
            CertificateAuthorityArn=ca, Principal="acm.amazonaws.com", Actions=["GetCertificate"]
        )
    assert code(again) == "PermissionAlreadyExistsException"


def test_permissions_on_a_missing_ca_or_a_missing_grant_are_not_found(pca, ca: str) -> None:
    missing = ca[:-6] + "000000"
    with pytest.raises(ClientError) as no_ca:
        pca.list_permissions(CertificateAuthorityArn=missing)
    assert code(no_ca) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as no_grant:
        pca.delete_permission(CertificateAuthorityArn=ca, Principal="acm.amazonaws.com")
    assert code(no_grant) == "ResourceNotFoundException"


def test_permissions_page_with_a_next_token(pca, ca: str) -> None:
    for account in ("111111111111", "222222222222", "333333333333"):
        pca.create_permission(
            CertificateAuthorityArn=ca,
            Principal="acm.amazonaws.com",
            SourceAccount=account,
            Actions=["IssueCertificate"],
        )
    first = pca.list_permissions(CertificateAuthorityArn=ca, MaxResults=2)
    second = pca.list_permissions(CertificateAuthorityArn=ca, NextToken=first["NextToken"])
    accounts = [p["SourceAccount"] for p in first["Permissions"] + second["Permissions"]]
    assert len(first["Permissions"]) == 2 and "NextToken" not in second
    assert sorted(accounts) == ["111111111111", "222222222222", "333333333333"]
