"""Faster HPACK for both sides' h2 connections (RFC 7541): hpack's classes, same interface.

hpack's ``Encoder`` searches the dynamic table linearly for every header it sends, and
adds every header it did not find, a value never seen again included: each request's
``x-request-id`` pushed the repeated headers (``user-agent``, ``server``) out of the
4 KiB table, so they were sent again as Huffman-coded literals, and the table churned
on every request. Encoding a request head cost about 45 µs, twice per proxied request.

``FastEncoder`` keeps the table's entries in a deque as hpack does and, beside it, dicts
from each (name, value) and each name to its newest entry, so a search is two dict
lookups; the index follows from the entry's insertion number. It does not index what
would only churn the table (nghttp2's rule, which Envoy's codec follows: ``:path``,
``content-length``, ``set-cookie`` and the like, plus the per-request ids a mesh adds,
and any entry bigger than three quarters of the table): those go out as literals
without indexing, their values not Huffman-coded (they are sent every time, so the
coding would be paid every time for a few bytes). What it indexes it Huffman-codes, as
hpack does. Credentials marked ``NeverIndexedHeaderTuple`` stay never-indexed literals.

``FastDecoder`` decodes a block in one loop over the bytes where hpack copied the rest
of the block for every literal, and remembers the last Huffman-coded strings it decoded
(peers such as nginx send their response headers as Huffman literals without indexing,
the same bytes every time). Every check of hpack's stays: truncated strings and
integers, invalid indices and Huffman codes, table size updates only first and within
the acknowledged size, and the decompressed size against ``max_header_list_size``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import hpack
from hpack.exceptions import HPACKDecodingError, InvalidTableSizeError, OversizedHeaderListError
from hpack.huffman_table import decode_huffman
from hpack.struct import HeaderTuple, NeverIndexedHeaderTuple
from hpack.table import HeaderTable

if TYPE_CHECKING:
    from collections.abc import Iterable

_STATIC_LENGTH = HeaderTable.STATIC_TABLE_LENGTH  # 61: dynamic entries start at 62
_STATIC_NAMES: dict[bytes, int] = {
    name: first for name, (first, _) in HeaderTable.STATIC_TABLE_MAPPING.items()
}
_STATIC_PAIRS: dict[tuple[bytes, bytes], bytes] = {
    (name, value): bytes([0x80 | index])  # every static index is below 127: one byte
    for name, (_, values) in HeaderTable.STATIC_TABLE_MAPPING.items()
    for value, index in values.items()
}
# Headers whose values rarely repeat (nghttp2's list, lib/nghttp2_hd.c, and the ids
# this proxy and App Mesh's tracing add to each request).
NOT_INDEXED = frozenset(
    (b":path", b"age", b"content-length", b"etag", b"if-modified-since", b"if-none-match",
     b"location", b"set-cookie", b"x-request-id", b"x-amzn-trace-id", b"traceparent",
     b"x-b3-traceid", b"x-b3-spanid", b"x-envoy-attempt-count")
)  # fmt: skip


def encode_integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 5.1: ``value`` in an N-bit prefix, ``first`` holding the byte's flags."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes, huffman: bool) -> bytes:
    """A string literal (5.2), Huffman-coded when asked and not longer for it."""
    if huffman and data:
        coded = _HUFFMAN.encode(data)
        if len(coded) < len(data):
            return encode_integer(len(coded), 7, 0x80) + coded
    return encode_integer(len(data), 7, 0) + data


_HUFFMAN = hpack.Encoder().huffman_coder


class FastHeaderTable(HeaderTable):
    """hpack's table with dicts beside the deque: (name, value) and name to the
    insertion number of their newest entry, kept in step on add, eviction and resize."""

    def __init__(self) -> None:
        super().__init__()
        self.inserted = 0  # entries ever added; the newest has number inserted - 1
        self.pairs: dict[tuple[bytes, bytes], int] = {}
        self.names: dict[bytes, int] = {}

    def index_of(self, number: int) -> int:
        """The HPACK index of the entry with insertion number ``number``."""
        return _STATIC_LENGTH + self.inserted - number

    def add(self, name: bytes, value: bytes) -> None:
        size = 32 + len(name) + len(value)
        if size > self._maxsize:
            self._clear()
            return
        self.dynamic_entries.appendleft((name, value))
        self.pairs[(name, value)] = self.names[name] = self.inserted
        self.inserted += 1
        self._current_size += size
        self._shrink()

    def search(self, name: bytes, value: bytes) -> tuple[int, bytes, bytes | None] | None:
        """hpack's answer (static exact, dynamic exact, static name, dynamic name)."""
        static = HeaderTable.STATIC_TABLE_MAPPING.get(name)
        if static is not None and value in static[1]:
            return static[1][value], name, value
        number = self.pairs.get((name, value))
        if number is not None:
            return self.index_of(number), name, value
        if static is not None:
            return static[0], name, None
        number = self.names.get(name)
        return None if number is None else (self.index_of(number), name, None)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        newmax = int(newmax)
        oldmax, self._maxsize = self._maxsize, newmax
        self.resized = newmax != oldmax
        if newmax <= 0:
            self._clear()
        elif oldmax > newmax:
            self._shrink()

    def _shrink(self) -> None:
        entries, size = self.dynamic_entries, self._current_size
        while size > self._maxsize:
            number = self.inserted - len(entries)  # the oldest entry's
            name, value = entries.pop()
            size -= 32 + len(name) + len(value)
            if self.pairs.get((name, value)) == number:
                del self.pairs[(name, value)]
            if self.names.get(name) == number:
                del self.names[name]
        self._current_size = size

    def _clear(self) -> None:
        self.dynamic_entries = deque()
        self._current_size = 0
        self.pairs.clear()
        self.names.clear()


class FastEncoder(hpack.Encoder):
    """hpack's ``Encoder`` with ``FastHeaderTable`` and the indexing rule above; h2
    uses it through ``encode`` and ``header_table_size``, which keep their meaning."""

    def __init__(self) -> None:
        super().__init__()
        self.header_table: FastHeaderTable = FastHeaderTable()

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:  # type: ignore[override]
        """One header block; ``headers`` are byte pairs, as h2 hands them over."""
        table = self.header_table
        block: list[bytes] = []
        if table.resized:
            block.append(self._encode_table_size_change())
            table.resized = False
        for header in headers:
            static = _STATIC_PAIRS.get(header)
            if static is not None:
                block.append(static)
                continue
            name, value = header[0], header[1]
            number = table.pairs.get((name, value))
            if number is not None:
                block.append(encode_integer(table.index_of(number), 7, 0x80))
                continue
            block.append(self._literal(table, name, value, getattr(header, "indexable", True),
                                       huffman))  # fmt: skip
        return b"".join(block)

    def _literal(
        self, table: FastHeaderTable, name: bytes, value: bytes, indexable: bool, huffman: bool
    ) -> bytes:
        """A literal field: with incremental indexing (6.2.1, added to the table), without
        indexing (6.2.2) or never indexed (6.2.3), its name indexed when the tables have it."""
        index = _STATIC_NAMES.get(name)
        if index is None:
            number = table.names.get(name)
            index = 0 if number is None else table.index_of(number)
        if not indexable:
            prefix, first, coded = 4, 0x10, huffman
        elif name in NOT_INDEXED or 32 + len(name) + len(value) > table.maxsize * 3 // 4:
            prefix, first, coded = 4, 0x00, False
        else:
            prefix, first, coded = 6, 0x40, huffman
            table.add(name, value)
        if index:
            return encode_integer(index, prefix, first) + _string(value, coded)
        return bytes((first,)) + _string(name, coded) + _string(value, coded)


_HUFFMAN_MEMORY = 128  # decoded strings remembered per connection, each of at most
_HUFFMAN_REMEMBERED = 128  # this many coded bytes (a few KiB per connection)


def decode_integer(data: bytes, offset: int, prefix_bits: int) -> tuple[int, int]:
    """RFC 7541 5.1 from ``data[offset]``: the value and the offset after it (at most
    five bytes after the prefix, as hpack allows)."""
    limit = (1 << prefix_bits) - 1
    try:
        value = data[offset] & limit
        offset += 1
        if value < limit:
            return value, offset
        shift = 0
        for _ in range(5):
            byte = data[offset]
            offset += 1
            value += (byte & 127) << shift
            if byte < 128:
                return value, offset
            shift += 7
    except IndexError as err:
        raise HPACKDecodingError("Truncated HPACK integer") from err
    raise HPACKDecodingError("Variable integer representation is too long")


# The static table as the ``HeaderTuple``s a decoded block holds, by HPACK index: an
# indexed field is then one list lookup, not hpack's ``get_by_index`` and a new tuple.
_STATIC_TUPLES: list[HeaderTuple] = [HeaderTuple(b"", b"")] + [
    HeaderTuple(name, value) for name, value in HeaderTable.STATIC_TABLE
]


def _add_entry(table: HeaderTable, header: HeaderTuple) -> None:
    """hpack's ``HeaderTable.add``, keeping the decoded ``HeaderTuple`` itself as the
    entry (a later indexed reference returns it as it is: it is immutable)."""
    size = 32 + len(header[0]) + len(header[1])
    if size > table._maxsize:
        table.dynamic_entries.clear()
        table._current_size = 0
    else:
        table.dynamic_entries.appendleft(header)
        table._current_size += size
        table._shrink()


class FastDecoder(hpack.Decoder):
    """hpack's ``Decoder`` with a one-pass ``decode`` for h2's ``raw=True`` calls."""

    def __init__(self) -> None:
        super().__init__()
        self._huffman: dict[bytes, bytes] = {}

    def decode(self, data: bytes, raw: bool = False) -> list[HeaderTuple]:
        if not raw:
            return list(super().decode(data, raw))
        data = bytes(data)
        table = self.header_table
        headers: list[HeaderTuple] = []
        inflated, offset, end = 0, 0, len(data)
        while offset < end:
            first = data[offset]
            if first & 0x80:  # indexed field (6.1)
                index = first & 0x7F
                if index < 0x7F:
                    offset += 1
                else:
                    index, offset = decode_integer(data, offset, 7)
                if 0 < index <= _STATIC_LENGTH:
                    header = _STATIC_TUPLES[index]
                else:
                    entry = table.get_by_index(index)  # hpack's refusal of a bad index
                    header = entry if type(entry) is HeaderTuple else HeaderTuple(*entry)
            elif first & 0x40:  # literal with incremental indexing (6.2.1)
                header, offset = self._literal(data, offset, 6, False)
                _add_entry(table, header)
            elif first & 0x20:  # dynamic table size update (6.3), only before fields
                if headers:
                    raise HPACKDecodingError("Table size update not at the start of the block")
                size, offset = decode_integer(data, offset, 5)
                if size > self.max_allowed_table_size:
                    raise InvalidTableSizeError("Encoder exceeded max allowable table size")
                self.header_table_size = size
                continue
            else:  # literal without indexing (6.2.2) or never indexed (6.2.3)
                header, offset = self._literal(data, offset, 4, bool(first & 0x10))
            headers.append(header)
            inflated += 32 + len(header[0]) + len(header[1])
            if inflated > self.max_header_list_size:
                raise OversizedHeaderListError(
                    f"A header list larger than {self.max_header_list_size} has been received"
                )
        self._assert_valid_table_size()
        return headers

    def _literal(
        self, data: bytes, offset: int, prefix_bits: int, never: bool
    ) -> tuple[HeaderTuple, int]:
        if data[offset] & ((1 << prefix_bits) - 1):
            index, offset = decode_integer(data, offset, prefix_bits)
            name = self.header_table.get_by_index(index)[0]
        else:
            name, offset = self._string(data, offset + 1)
        value, offset = self._string(data, offset)
        if never:
            return NeverIndexedHeaderTuple(name, value), offset
        return HeaderTuple(name, value), offset

    def _string(self, data: bytes, offset: int) -> tuple[bytes, int]:
        """A string literal (5.2) at ``offset``: its bytes and the offset after it."""
        if offset >= len(data):
            raise HPACKDecodingError("Truncated header block")
        huffman = data[offset] & 0x80
        length, offset = decode_integer(data, offset, 7)
        stop = offset + length
        if stop > len(data):
            raise HPACKDecodingError("Truncated header block")
        text = data[offset:stop]
        if not huffman:
            return text, stop
        known = self._huffman.get(text)
        if known is None:
            known = decode_huffman(text)
            if len(text) <= _HUFFMAN_REMEMBERED:
                if len(self._huffman) >= _HUFFMAN_MEMORY:
                    self._huffman.clear()
                self._huffman[text] = known
        return known, stop
