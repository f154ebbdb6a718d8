"""Opaque, stable pagination over name-sorted listings.

A ``nextToken`` is base64url JSON naming the listing it belongs to and the last
name served, so a page boundary survives inserts and deletes between calls and a
token from one listing cannot be replayed against another. ``limit`` is checked
against the model's bounds in ``protocol.py``; here only the token is judged.
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_right
from collections.abc import Sequence

from appmesh_api.errors import BadRequestException

DEFAULT_PAGE_SIZE = 100


def encode_token(scope: str, last: str) -> str:
    raw = json.dumps({"s": scope, "a": last}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, scope: str) -> str:
    """The last name served before ``token``; BadRequest when it is not one of ours."""
    try:
        padded = token + "=" * (-len(token) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if decoded["s"] == scope and isinstance(decoded["a"], str):
            return decoded["a"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        pass
    raise BadRequestException(
        "The nextToken is invalid. Pass the nextToken exactly as a previous call of the same "
        "List operation returned it, or omit it to start from the first page."
    )


def paginate(
    sorted_names: Sequence[str], limit: int | None, token: str | None, scope: str
) -> tuple[list[str], str | None]:
    """One page of ``sorted_names`` and the token for the next (None on the last page)."""
    start = 0
    if token:
        start = bisect_right(sorted_names, decode_token(token, scope))
    size = limit or DEFAULT_PAGE_SIZE
    page = list(sorted_names[start : start + size])
    more = start + size < len(sorted_names)
    return page, (encode_token(scope, page[-1]) if more and page else None)
