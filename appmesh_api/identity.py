"""Who is calling: the account and region, read from the SigV4 credential scope.

Any credentials are accepted (nothing is verified, as in LocalStack). The account
is what makes shared meshes work: a 12-digit access key id *is* the account id;
other keys map through ``--account KEY=ACCOUNT``; everything else is the default
account.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appmesh_api.settings import DEFAULT_REGION, Settings

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
_ACCOUNT_ID = re.compile(r"\d{12}")


@dataclass(frozen=True)
class Caller:
    account: str
    region: str


def credential_scope(authorization: str | None) -> tuple[str, str, str] | None:
    """``(access_key_id, region, service)`` from a SigV4 Authorization header."""
    if not authorization:
        return None
    found = _CREDENTIAL.search(authorization)
    return None if found is None else (found.group(1), found.group(2), found.group(3))


def identify(authorization: str | None, settings: Settings) -> Caller:
    scope = credential_scope(authorization)
    if scope is None:
        return Caller(settings.default_account, DEFAULT_REGION)
    access_key, region, _service = scope
    if _ACCOUNT_ID.fullmatch(access_key):
        account = access_key
    else:
        account = settings.accounts.get(access_key, settings.default_account)
    return Caller(account, region)
