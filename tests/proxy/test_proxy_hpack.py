"""``FastEncoder`` (proxy.upstream.hpack_fast.py) against hpack's own decoder: every
block it writes must decode to the headers it was given, in order, with the decoder's
dynamic table in step with the encoder's after each block (a wrong index or a missed
eviction shows up as a wrong header or a diverging table)."""

from __future__ import annotations

import random

import hpack
import pytest
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hpack.table import HeaderTable

from proxy.upstream.hpack_fast import NOT_INDEXED, FastDecoder, FastEncoder, FastHeaderTable

Pair = tuple[bytes, bytes]


def random_block(rng: random.Random, serial: int) -> list[Pair]:
    """A request or response head as a mesh sees them: repeated pseudo-headers and
    fields, a unique id per request, now and then a new value, a big one or a credential."""
    block: list[Pair] = [(b":method", rng.choice([b"GET", b"POST", b"PUT"])),
                         (b":scheme", b"http"), (b":path", b"/p%d" % rng.randrange(50)),
                         (b":authority", rng.choice([b"a.local", b"b.local:8080"]))]  # fmt: skip
    block += [(b"user-agent", b"grpc-python/1.%d" % rng.randrange(3)),
              (b"x-request-id", b"%032x" % serial),
              (b"x-custom-%d" % rng.randrange(40), b"v%d" % rng.randrange(200))]  # fmt: skip
    if rng.random() < 0.1:
        block.append((b"x-big", b"z" * rng.randrange(1000, 5000)))  # over 3/4 of the table
    if rng.random() < 0.2:
        block.append(hpack.NeverIndexedHeaderTuple(b"authorization", b"Bearer %d" % serial))
    if rng.random() < 0.1:
        block.append((b"content-length", str(rng.randrange(10**6)).encode()))
    rng.shuffle(block[4:])
    return block


def test_blocks_decode_to_what_was_encoded_with_the_tables_in_step() -> None:
    rng = random.Random(7)
    encoder, decoder = FastEncoder(), hpack.Decoder()
    for serial in range(3000):
        if serial in (1000, 2000):  # the peer's SETTINGS_HEADER_TABLE_SIZE moves
            encoder.header_table_size = 256 if serial == 1000 else 4096
        block = random_block(rng, serial)
        decoded = decoder.decode(encoder.encode(block), raw=True)
        assert decoded == block
        assert [h.indexable for h in decoded] == [getattr(h, "indexable", True) for h in block]
        table = encoder.header_table
        assert list(decoder.header_table.dynamic_entries) == list(table.dynamic_entries)
        names = {name for name, _ in table.dynamic_entries}
        assert not names & NOT_INDEXED and b"authorization" not in names
        assert sum(32 + len(n) + len(v) for n, v in table.dynamic_entries) <= table.maxsize


def test_a_repeated_head_is_sent_as_indices_and_the_unique_id_as_a_plain_literal() -> None:
    encoder = FastEncoder()
    head: list[Pair] = [(b":status", b"200"), (b"server", b"envoy"),
                        (b"content-type", b"application/grpc")]  # fmt: skip
    first = encoder.encode([*head, (b"x-request-id", b"1" * 36)])
    again = encoder.encode([*head, (b"x-request-id", b"2" * 36)])
    assert len(first) > len(again)
    # :status 200 static (0x88), then the two dynamic entries newest first, then the id
    # as a literal without indexing with a literal name, its value not Huffman-coded.
    literal = b"\x00\x0cx-request-id\x24" + b"2" * 36
    assert again == bytes([0x88, 0x80 | 63, 0x80 | 62]) + literal
    assert len(encoder.header_table.dynamic_entries) == 2


def test_the_search_answers_as_hpacks_linear_search_does() -> None:
    rng = random.Random(3)
    fast, slow = FastHeaderTable(), HeaderTable()
    pool = [(b"n%d" % rng.randrange(8), b"v%d" % rng.randrange(8)) for _ in range(30)]
    pool += [(b"accept", b"text/html"), (b"accept", b"*/*"), (b":status", b"200")]
    for step in range(4000):
        if step % 700 == 699:
            fast.maxsize = slow.maxsize = rng.choice([0, 100, 4096])
        name, value = rng.choice(pool)
        assert fast.search(name, value) == slow.search(name, value)
        fast.add(name, value)
        slow.add(name, value)


def decode_both(fast: FastDecoder, slow: hpack.Decoder, block: bytes) -> object:
    """What each decoder makes of ``block``: the headers (never-indexed flags included) or
    the fact that it refused it; and whether their tables still agree."""
    answers = []
    for decoder in (fast, slow):
        try:
            headers = decoder.decode(block, raw=True)
            answers.append([(tuple(h), h.indexable) for h in headers])
        except HPACKError:
            answers.append("refused")
    assert answers[0] == answers[1], block
    assert list(fast.header_table.dynamic_entries) == list(slow.header_table.dynamic_entries)
    return answers[0]


def test_the_decoder_answers_as_hpacks_for_good_and_broken_blocks() -> None:
    rng = random.Random(11)
    encoder = hpack.Encoder()
    fast, slow = FastDecoder(), hpack.Decoder()
    refused = 0
    for serial in range(3000):
        if serial % 500 == 499:
            encoder.header_table_size = rng.choice([0, 300, 4096])
        block = encoder.encode(random_block(rng, serial), huffman=rng.random() < 0.7)
        if serial % 3 == 0:  # a copy, cut or with one byte flipped, to fresh decoders
            broken = bytearray(block)
            if rng.random() < 0.5:
                del broken[rng.randrange(1, len(broken)) :]
            else:
                broken[rng.randrange(len(broken))] ^= 1 << rng.randrange(8)
            refused += decode_both(FastDecoder(), hpack.Decoder(), bytes(broken)) == "refused"
        assert decode_both(fast, slow, block) != "refused"
    assert refused > 100  # the broken copies did exercise the errors


def test_the_decoder_bounds_the_decompressed_size() -> None:
    decoder = FastDecoder()
    decoder.max_header_list_size = 1000
    block = hpack.Encoder().encode([(b"x-a", b"a" * 500), (b"x-b", b"b" * 500)])
    with pytest.raises(OversizedHeaderListError):
        decoder.decode(block, raw=True)
