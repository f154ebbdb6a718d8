"""Who is calling: the account, region and service, read from the SigV4 credential scope.

This is the one reading of the ``Authorization`` header's scope
(``Credential=AKID/DATE/REGION/SERVICE/aws4_request``) for the whole port: the front door
routes by its service, and every service scopes its data by the account and region.
Unless ``serve --verify-signatures`` is on, nothing is verified (as in LocalStack): a
12-digit access key id *is* the account id; other keys map through
``--account KEY=ACCOUNT``; everything else is the default account.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appmesh_api.settings import DEFAULT_REGION, Settings

_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")
_ACCOUNT_ID = re.compile(r"\d{12}")


@dataclass(frozen=True)
class CredentialScope:
    """The parts of a SigV4 credential scope that decide where a request goes."""

    access_key: str
    region: str
    service: str


@dataclass(frozen=True)
class Caller:
    account: str
    region: str


def parse_credential_scope(authorization: str | None) -> CredentialScope | None:
    """Return the SigV4 scope of an ``Authorization`` header, or None if not SigV4."""
    match = _SCOPE.search(authorization or "")
    return CredentialScope(*match.groups()) if match else None


def account_of(access_key: str, settings: Settings) -> str:
    """The account an access key id belongs to (LocalStack's 12-digit convention first)."""
    if _ACCOUNT_ID.fullmatch(access_key):
        return access_key
    return settings.accounts.get(access_key, settings.default_account)


def caller_of(scope: CredentialScope | None, settings: Settings) -> Caller:
    """The caller a (possibly absent) credential scope stands for."""
    if scope is None:
        return Caller(settings.default_account, DEFAULT_REGION)
    return Caller(account_of(scope.access_key, settings), scope.region)


def identify(authorization: str | None, settings: Settings) -> Caller:
    return caller_of(parse_credential_scope(authorization), settings)
