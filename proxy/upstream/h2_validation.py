"""h2's inbound header validation (RFC 9113 8.2 and 8.3) in one pass, for header blocks
that pass it; h2's own pipeline still judges every block that does not.

h2 validates a received block through seven chained generators, testing each byte of
each name and value in Python: about a fifth of the proxy's h2 time per request.
``acceptable`` applies the same rules in one loop, with regular expressions for the
characters. It only ever accepts: a block it finds fault with (or one it does not handle,
with cookies to recombine) goes through h2's ``validate_headers`` unchanged, which raises
h2's own error (the one ``http2_guards.protocol_error_stat`` names) or, were this module
stricter than h2, passes the block as h2 would. A differential test holds the two to the
same verdicts (tests/proxy/test_proxy_h2_lean.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from h2.exceptions import ProtocolError
from h2.utilities import (
    _ALLOWED_PSEUDO_HEADER_FIELDS,
    CONNECTION_HEADERS,
    _check_pseudo_header_field_acceptability,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from h2.utilities import HeaderValidationFlags

# A name: a leading colon at most, then no 0x00-0x20, no A-Z, no 0x7f-0xff, no colon.
_NAME = re.compile(rb":?[\x21-\x39\x3b-\x40\x5b-\x7e]*")
# A value: no NUL, LF or CR anywhere, no space or tab first or last.
_BAD_VALUE = re.compile(rb"[\x00\n\r]|\A[ \t]|[ \t]\Z")


# Regular fields (not pseudo-headers, not ``host``) that passed the per-field checks,
# shared by every connection: most fields repeat (``content-type``, ``server``...), and a
# field's verdict depends on nothing else. Cleared when full, so values that never repeat
# (request ids) cost a set insert and no memory beyond the bound.
_PLAIN: set[tuple[bytes, bytes]] = set()
_PLAIN_LIMIT = 2048


def acceptable(headers: Sequence[tuple[bytes, bytes]], flags: HeaderValidationFlags) -> bool:
    """Whether h2's ``normalize_inbound_headers`` and ``validate_headers`` would pass
    ``headers`` unchanged; False also for blocks with a cookie (h2 recombines them)."""
    request = not (flags.is_response_header or flags.is_trailer)
    pseudo: set[bytes] = set()
    regular = False
    method = authority = host = None
    plain = _PLAIN
    for header in headers:
        if header in plain:
            regular = True  # a field passed before: the checks below depend on it alone
            continue
        name, value = header
        if not name or _NAME.fullmatch(name) is None:
            return False
        if value and _BAD_VALUE.search(value) is not None:
            return False
        if name[0] == 0x3A:  # a pseudo-header: once each, known, before any field
            if regular or name in pseudo or name not in _ALLOWED_PSEUDO_HEADER_FIELDS:
                return False
            pseudo.add(name)
            if name == b":method":
                method = value
            elif name == b":authority":
                authority = value
            elif name == b":path" and request and not value:
                return False
            continue
        regular = True
        if name in CONNECTION_HEADERS or name == b"cookie":
            return False
        if name == b"te" and value.lower() != b"trailers":
            return False
        if name == b"host":
            if request:
                if host is not None:
                    return False
                host = value
            continue
        if len(plain) >= _PLAIN_LIMIT:
            plain.clear()
        plain.add(header)
    if request and (host is None and authority is None):
        return False  # a request needs :authority or Host
    if request and host is not None and authority is not None and host != authority:
        return False  # and they must agree
    try:
        _check_pseudo_header_field_acceptability(pseudo, method, flags)
    except ProtocolError:
        return False
    return True
