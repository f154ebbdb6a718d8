"""STS temporary key ids name their account, as AWS encodes it (and the embedded STS)."""

from __future__ import annotations

import pytest
from moto.iam.utils import generate_access_key_id_from_account_id

from appmesh_api.identity import account_of, encoded_account
from appmesh_api.settings import Settings


@pytest.mark.parametrize(
    "account", ["123456789012", "976015621188", "000000000001", "999999999999"]
)
def test_a_temporary_key_id_decodes_to_its_account(account: str) -> None:
    key = generate_access_key_id_from_account_id(account, prefix="ASIA")
    assert encoded_account(key) == account
    assert account_of(key, Settings(default_account="111111111111")) == account


def test_other_keys_keep_the_configured_rules() -> None:
    settings = Settings(default_account="111111111111", accounts={"ASIAMAPPEDKEY0000000": "2" * 12})
    assert account_of("ASIAMAPPEDKEY0000000", settings) == "2" * 12
    assert account_of("AKIAIOSFODNN7EXAMPLE", settings) == "111111111111"
    assert account_of("ASIAIOSFODNN7EXAMPLE", settings) == "111111111111"
    assert encoded_account("test") is None
