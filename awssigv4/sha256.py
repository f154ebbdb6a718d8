"""SHA-256 and HMAC-SHA256 on CPython's built-in SHA-256, without importing ``hashlib``.

``hashlib`` (and ``hmac``, which imports it) set up OpenSSL's digests when imported: 0.7 MB
of a sidecar's resident memory, for the one digest SigV4 signs with. CPython ships its own
SHA-256 as the module ``hashlib`` falls back to (``_sha256``, named ``_sha2`` since 3.12);
HMAC over it is RFC 2104 in four lines, as the ``hmac`` module computes it. Where neither
module exists (a build without them), ``hashlib``'s own constructor is used: the same bytes.
tests/proxy/test_proxy_memory.py checks both against ``hmac`` and botocore's signer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_BLOCK = 64  # SHA-256's block size in bytes: HMAC pads or hashes the key to it
_INNER = bytes(x ^ 0x36 for x in range(256))
_OUTER = bytes(x ^ 0x5C for x in range(256))


def _constructor() -> Callable[..., Any]:
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]  # CPython 3.12 and later
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found]  # CPython 3.11
        except ImportError:
            from hashlib import sha256
    return sha256


sha256 = _constructor()


def sha256_hex(data: bytes) -> str:
    """The lower-case hex SHA-256 of ``data`` (SigV4's payload and request hashes)."""
    return str(sha256(data).hexdigest())


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104): the digest ``hmac.new(key, message, "sha256")`` gives."""
    if len(key) > _BLOCK:
        key = sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = sha256(key.translate(_INNER))
    inner.update(message)
    return bytes(sha256(key.translate(_OUTER) + inner.digest()).digest())
