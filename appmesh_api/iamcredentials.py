"""Access keys of IAM users in the embedded IAM, for ``--verify-signatures``.

``CreateAccessKey`` gives an IAM user an ``AKIA...`` key id and a secret, which moto's
IAM keeps with the user in the backend of the user's account. A request signed with
such a key is verified with that secret and acts as that account, as in AWS; an
inactive or deleted key is unknown.
"""

from __future__ import annotations

import re

from moto.iam.models import iam_backends

_USER_KEY = re.compile(r"AKIA[A-Z0-9]{16}")


def user_key(access_key: str) -> tuple[str, str] | None:
    """The account and secret of an active IAM user key ``access_key``, or None."""
    if not _USER_KEY.fullmatch(access_key):
        return None
    for account, partitions in list(iam_backends.items()):
        for backend in list(partitions.values()):
            for user in list(backend.users.values()):
                for key in list(user.access_keys):
                    if key.access_key_id == access_key and key.status == "Active":
                        return account, key.secret_access_key
    return None
