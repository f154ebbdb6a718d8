"""Replicas nudge each other: "read the change items now", after every write.

Without it a replica learns of another replica's write by its next poll of the table
(every second: polls are the fallback, see ``dynamo.POLL_INTERVAL``), which would be
most of the delay between a write on one replica and a push from another. With it,
the replica that committed a write sends each peer an empty
``POST /_appmesh/replicas/nudge`` and the peer polls at once; polling stays as the
fallback, so a nudge that is lost (a peer address that is wrong or unreachable, a
peer that is restarting) costs only the delay it would have saved.

Peers find each other in the shared table: each replica writes an item with its URL
and a random token (refreshed every ``REGISTRATION_REFRESH`` s, expiring after
``REGISTRATION_TTL`` s), and reads the others' items. A nudge must carry the token
of the replica it is sent to: only someone who can read the table can nudge, and a
nudge carries no data (the peer reads the table, which is authoritative), so even a
valid one can only make a replica poll sooner.
"""

from __future__ import annotations

import http.client
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


class PeerSender:
    """Nudges one peer from a thread of its own: a write never waits for a peer, a slow
    or dead peer delays no other, and nudges made while one is under way make one more."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.failures = 0
        self._wake = threading.Event()
        self._stopped = False
        self._connection: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name=f"nudge {url}", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        self._wake.set()

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
            try:
                self._send()
                self.failures = 0
            except (OSError, http.client.HTTPException) as error:
                self.failures += 1
                self._close()
                if self.failures in (1, 10, 100):  # a wrong address: say so, then rarely
                    log.warning("could not nudge replica %s (%s); it polls", self.url, error)

    def _send(self) -> None:
        """One POST; a kept-alive connection the peer closed meanwhile is retried fresh."""
        for attempt in (1, 2):
            reused = self._connection is not None
            connection = self._connection or self._connect()
            self._connection = connection
            try:
                connection.request("POST", NUDGE_PATH, b"", {TOKEN_HEADER: self.token})
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

    def nudge_all(self) -> None:
        with self._lock:
            senders = list(self._senders.values())
        for sender in senders:
            sender.nudge()

    def known(self) -> dict[str, str]:
        """Replica id -> URL, for logs and tests."""
        with self._lock:
            return {replica: sender.url for replica, sender in self._senders.items()}

    def close(self) -> None:
        self.update({})
