"""Replicas nudge each other: "read the change items now", after every write.

Without it a replica learns of another replica's write by its next poll of the table
(every second: polls are the fallback, see ``dynamo.POLL_INTERVAL``), which would be
most of the delay between a write on one replica and a push from another. With it,
the replica that committed a write sends each peer ``POST /_appmesh/replicas/nudge``
carrying the change items it committed since its last nudge to that peer (the same
items its transaction put in the table). The peer applies them at once when they
follow its cursor without a gap, and reads the table (one ``Query``) when they do
not, or when the nudge carries none (too many, or a sender from before nudges
carried them). Polling stays as the fallback, so a nudge that is lost (a peer
address that is wrong or unreachable, a peer that is restarting) costs only the
delay it would have saved.

Peers find each other in the shared table: each replica writes an item with its URL
and a random token (refreshed every ``REGISTRATION_REFRESH`` s, expiring after
``REGISTRATION_TTL`` s), and reads the others' items. A nudge must carry the token
of the replica it is sent to: only someone who can read the table can nudge. What a
nudge carries is trusted as the table's own items would be (it is what the sender
committed there); a token holder who could write the table could write the same.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
from urllib.parse import urlsplit

log = logging.getLogger("appmesh_local.peers")

NUDGE_PATH = "/_appmesh/replicas/nudge"
TOKEN_HEADER = "x-appmesh-replica-token"
NUDGE_TIMEOUT = 0.5  # seconds a peer has to answer a nudge; a silent one costs its thread
REGISTRATION_REFRESH = 10.0  # a replica rewrites its own item this often
REGISTRATION_TTL = 30.0  # an item not rewritten for this long is no peer
PEERS_REFRESH = 2.0  # the other replicas' items are read this often
# A nudge carries at most this many change items (and this many bytes of them); past
# either, it carries none and the peer reads the table, which always has them.
CARRIED_CHANGES = 64
CARRIED_BYTES = 256 * 1024


class PeerSender:
    """Nudges one peer from a thread of its own: a write never waits for a peer, a slow
    or dead peer delays no other, and nudges made while one is under way make one more,
    carrying every change item handed over since the last one was sent."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.failures = 0
        self._wake = threading.Event()
        self._stopped = False
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._carried: list[dict] = []  # change items for the next nudge
        self._too_many = False  # more than a nudge carries: send none, the peer reads
        self._proxies = False  # this replica's proxy registrations changed
        self._thread = threading.Thread(target=self._run, name=f"nudge {url}", daemon=True)
        self._thread.start()

    def nudge(self, change: dict | None = None) -> None:
        """Nudge soon, carrying ``change`` (a change item as the table holds it; None:
        only "read the table")."""
        with self._lock:
            if change is None or len(self._carried) >= CARRIED_CHANGES:
                self._too_many = True
                self._carried.clear()
            elif not self._too_many:
                self._carried.append(change)
        self._wake.set()

    def nudge_proxies(self) -> None:
        """Nudge soon: this replica's proxy registrations changed (a new one or one gone)."""
        with self._lock:
            self._proxies = True
        self._wake.set()

    def _body(self) -> bytes | None:
        """The next nudge's body: the change items handed over and whether the proxy
        registrations changed; empty: read everything from the table; None: nothing
        is left to say (an earlier nudge carried it)."""
        with self._lock:
            carried, too_many, proxies = self._carried, self._too_many, self._proxies
            self._carried, self._too_many, self._proxies = [], False, False
        if too_many:
            return b""
        if not carried and not proxies:
            return None
        message: dict = {"changes": carried, **({"proxies": True} if proxies else {})}
        body = json.dumps(message, separators=(",", ":")).encode()
        return body if len(body) <= CARRIED_BYTES else b""

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopped:
                self._close()
                return
            body = self._body()
            if body is None:
                continue
            try:
                self._send(body)
                self.failures = 0
            except (OSError, http.client.HTTPException) as error:
                self.failures += 1
                self._close()
                if self.failures in (1, 10, 100):  # a wrong address: say so, then rarely
                    log.warning("could not nudge replica %s (%s); it polls", self.url, error)

    def _send(self, body: bytes) -> None:
        """One POST; a kept-alive connection the peer closed meanwhile is retried fresh.
        A nudge that fails loses what it carried: the peer's poll reads it."""
        for attempt in (1, 2):
            reused = self._connection is not None
            connection = self._connection or self._connect()
            self._connection = connection
            try:
                headers = {TOKEN_HEADER: self.token, "content-type": "application/json"}
                connection.request("POST", NUDGE_PATH, body, headers)
                answer = connection.getresponse()
                answer.read()
            except (OSError, http.client.HTTPException):
                self._close()
                if reused and attempt == 1:
                    continue
                raise
            if answer.status != 204:
                raise http.client.HTTPException(f"answered {answer.status}")
            return

    def _connect(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        host, port = parts.hostname or "127.0.0.1", parts.port
        if parts.scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=NUDGE_TIMEOUT)
        return http.client.HTTPConnection(host, port, timeout=NUDGE_TIMEOUT)

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class Peers:
    """The other replicas as the table lists them (replica id -> URL and token)."""

    def __init__(self) -> None:
        self._senders: dict[str, PeerSender] = {}
        self._lock = threading.Lock()

    def update(self, listed: dict[str, tuple[str, str]]) -> None:
        """Follow the table: new peers get a sender, gone or changed ones lose theirs."""
        with self._lock:
            for replica, sender in list(self._senders.items()):
                if listed.get(replica) != (sender.url, sender.token):
                    sender.stop()
                    del self._senders[replica]
            for replica, (url, token) in listed.items():
                if replica not in self._senders:
                    self._senders[replica] = PeerSender(url, token)

    def nudge_all(self, change: dict | None = None) -> None:
        """Nudge every peer, carrying ``change`` (a committed change item) if given."""
        for sender in self._senders_now():
            sender.nudge(change)

    def nudge_proxies(self) -> None:
        """Nudge every peer: this replica's proxy registrations changed."""
        for sender in self._senders_now():
            sender.nudge_proxies()

    def _senders_now(self) -> list[PeerSender]:
        """The peers' senders, copied under the lock (the refresh thread replaces them)."""
        with self._lock:
            return list(self._senders.values())

    def known(self) -> dict[str, str]:
        """Replica id -> URL, for logs and tests."""
        with self._lock:
            return {replica: sender.url for replica, sender in self._senders.items()}

    def close(self) -> None:
        self.update({})
