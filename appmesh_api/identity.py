"""Who is calling: the account, region and service, read from the SigV4 credential scope.

This is the one reading of the ``Authorization`` header's scope
(``Credential=AKID/DATE/REGION/SERVICE/aws4_request``) for the whole port: the front door
routes by its service, and every service scopes its data by the account and region.
Unless ``serve --verify-signatures`` is on, nothing is verified (as in LocalStack): a
12-digit access key id *is* the account id; other keys map through
``--account KEY=ACCOUNT``; temporary keys from the embedded STS (``ASIA...``, what the CDK
CLI uses after assuming its bootstrap roles) belong to the account they encode, as in AWS;
everything else is the default account.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from appmesh_api.frontdoor.signatures import Secret
from appmesh_api.iamcredentials import user_key
from appmesh_api.settings import DEFAULT_REGION, Settings
from appmesh_api.stscredentials import issued_secret

_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")
_ACCOUNT_ID = re.compile(r"\d{12}")
_TEMPORARY_KEY = re.compile(r"ASIA[A-Z2-7]{16}")
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_KEY_ACCOUNT_OFFSET = 549755813888  # base32 "QAAAAAAA": where AWS's encoding starts


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
    if access_key in settings.accounts:
        return settings.accounts[access_key]
    if access_key not in settings.credentials and (found := user_key(access_key)):
        return found[0]
    return encoded_account(access_key) or settings.default_account


def signing_secret(access_key: str, settings: Settings) -> str | Secret | None:
    """The secret a signature by ``access_key`` is checked with (``--verify-signatures``):
    a configured key's; for an account id the per-process secret the control plane signs
    its own calls with; for a temporary key the embedded STS issued, its secret and session
    token; for an IAM user's key made in the embedded IAM, its secret. The front door and
    gRPC ADS share this one source."""
    known = settings.credentials.get(access_key)
    if known is None and _ACCOUNT_ID.fullmatch(access_key):
        return settings.internal_secret
    if known is None and (account := encoded_account(access_key)) is not None:
        return issued_secret(access_key, account)
    if known is None and (found := user_key(access_key)):
        return found[1]
    return known


def encoded_account(access_key: str) -> str | None:
    """The account an STS temporary key id encodes (AWS's scheme, which moto's STS follows):
    characters 5-12 are base32 of account // 2 plus an offset, the 13th its parity."""
    if not _TEMPORARY_KEY.fullmatch(access_key):
        return None
    try:
        half = int.from_bytes(base64.b32decode(access_key[4:12]), "big") - _KEY_ACCOUNT_OFFSET
    except (binascii.Error, ValueError):
        return None
    account = half * 2 + (1 if _B32.index(access_key[12]) >= 16 else 0)
    return f"{account:012d}" if 0 <= account < 10**12 else None


def caller_of(scope: CredentialScope | None, settings: Settings) -> Caller:
    """The caller a (possibly absent) credential scope stands for."""
    if scope is None:
        return Caller(settings.default_account, DEFAULT_REGION)
    return Caller(account_of(scope.access_key, settings), scope.region)


def identify(authorization: str | None, settings: Settings) -> Caller:
    return caller_of(parse_credential_scope(authorization), settings)
