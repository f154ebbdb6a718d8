"""Temporary credentials the embedded STS issued, for ``--verify-signatures``.

``AssumeRole`` (what the CDK CLI does with its bootstrap roles) hands out an ``ASIA...``
key id, a secret and a session token, which moto's STS keeps with the role it assumed,
in the backend of the account the key encodes. A request signed with such a key is
verified with that secret, and must carry that session token, as AWS checks both;
without this every temporary key was refused unless listed in ``--credentials``.

moto's ``GetSessionToken`` issues no credentials of its own: it answers every caller
with the same documented example key (``AKIAIOSFODNN7EXAMPLE``), secret and token, and
keeps nothing. Accepting those would let anyone in who has read moto's source, so they
stay refused unless given with ``--credentials``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from moto.sts.models import sts_backends

from appmesh_api.frontdoor.signatures import Secret


def issued_secret(access_key: str, account: str) -> Secret | None:
    """The secret and session token STS issued with ``access_key`` in ``account``, or None
    (unknown, or expired)."""
    if account not in sts_backends:  # looking a key up creates no account's backend
        return None
    for backend in sts_backends[account].values():
        role = backend.get_assumed_role_from_access_key(access_key)
        if role is not None and _unexpired(role.expiration):
            return Secret(role.secret_access_key, role.session_token)
    return None


def _unexpired(expiration: datetime) -> bool:
    aware = expiration if expiration.tzinfo else expiration.replace(tzinfo=UTC)
    return aware > datetime.now(UTC)
