"""What a replica's nudges carry (appmesh_api.peers.PeerSender), to a real HTTP server
on 127.0.0.1 standing in for the peer: the change items handed over, in order; none
(only "read the table") when asked so, or past what a nudge carries."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from appmesh_api.peers import CARRIED_BYTES, CARRIED_CHANGES, NUDGE_PATH, TOKEN_HEADER, PeerSender


class _Peer(http.server.ThreadingHTTPServer):
    """Records each nudge's (token, body); ``hold`` keeps the first one unanswered."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.nudges: list[tuple[str | None, bytes]] = []
        self.arrived = threading.Condition()
        self.hold = threading.Event()
        self.hold.set()

    def wait_for(self, count: int) -> list[tuple[str | None, bytes]]:
        """The nudges once ``count`` have arrived (at most 10 s waited)."""
        return self.wait_until(lambda nudges: len(nudges) >= count)

    def wait_until(self, done: Callable[[list], bool]) -> list[tuple[str | None, bytes]]:
        deadline = time.monotonic() + 10
        with self.arrived:
            while not done(self.nudges):
                left = deadline - time.monotonic()
                assert left > 0, f"arrived: {self.nudges}"
                self.arrived.wait(left)
            return list(self.nudges)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Peer

    def do_POST(self) -> None:
        assert self.path == NUDGE_PATH
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        with self.server.arrived:
            self.server.nudges.append((self.headers.get(TOKEN_HEADER), body))
            self.server.arrived.notify_all()
        self.server.hold.wait(10)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def peer() -> Iterator[_Peer]:
    server = _Peer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.hold.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def sender(peer: _Peer) -> Iterator[PeerSender]:
    sent = PeerSender(f"http://127.0.0.1:{peer.server_address[1]}", "the-token")
    yield sent
    sent.stop()


def _change(sequence: int, size: int = 10) -> dict:
    return {"pk": {"S": "chg"}, "sk": {"S": f"{sequence:020d}"}, "data": {"S": "x" * size}}


def _all_carried(nudges: list[tuple[str | None, bytes]]) -> list[dict]:
    return [change for _, body in nudges if body for change in json.loads(body)["changes"]]


def test_nudges_carry_every_change_handed_over_in_order(peer: _Peer, sender: PeerSender):
    for sequence in (1, 2, 3):
        sender.nudge(_change(sequence))
    # Nudges made while one is under way go out together: 1 to 3 of them.
    nudges = peer.wait_until(lambda nudges: len(_all_carried(nudges)) >= 3)
    assert _all_carried(nudges) == [_change(1), _change(2), _change(3)]
    assert {token for token, _ in peer.nudges} == {"the-token"}


def test_a_nudge_without_a_change_carries_none(peer: _Peer, sender: PeerSender):
    sender.nudge()
    assert peer.wait_for(1)[0] == ("the-token", b"")


def _held_then(peer: _Peer, sender: PeerSender, more: list[dict | None]) -> bytes:
    """The body of the nudge sent after ``more`` were handed over while the first
    nudge was still unanswered."""
    peer.hold.clear()
    sender.nudge(_change(0))
    peer.wait_for(1)
    for change in more:
        sender.nudge(change)
    peer.hold.set()
    return peer.wait_for(2)[1][1]


def test_more_changes_than_a_nudge_carries_make_it_carry_none(peer: _Peer, sender: PeerSender):
    more: list[dict | None] = [_change(sequence) for sequence in range(1, CARRIED_CHANGES + 2)]
    assert _held_then(peer, sender, more) == b""


def test_a_nudge_past_its_bytes_carries_none(peer: _Peer, sender: PeerSender):
    assert _held_then(peer, sender, [_change(1, CARRIED_BYTES)]) == b""


def test_a_bare_nudge_among_changes_makes_the_next_carry_none(peer: _Peer, sender: PeerSender):
    """Someone asked for "read the table": the changes handed over with it are in the
    table too, and the peer reads them there."""
    assert _held_then(peer, sender, [_change(1), None, _change(2)]) == b""


def test_a_nudge_says_when_the_proxy_registrations_changed(peer: _Peer, sender: PeerSender):
    sender.nudge_proxies()
    (token, body), *_ = peer.wait_for(1)
    assert token == "the-token" and json.loads(body) == {"changes": [], "proxies": True}
