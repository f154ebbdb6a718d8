"""Where resources live: the ``Store`` interface and its SQLite implementation.

``Store`` is what the service, the change feed, discovery, the console and the kube
controller use; ``SqliteStore`` (the default) and ``appmesh_api.dynamo.DynamoStore``
(``--store dynamodb://TABLE``, replicas sharing one table) implement it.

SQLite: an in-memory index backed by one file. Reads come from memory (a Describe
is a dict lookup); every write is one SQLite transaction committed *before* memory
changes, so what a client was told exists survives a restart or a ``kill -9``. WAL
mode with ``synchronous=NORMAL`` is durable against process death (only an OS crash
could lose the last commits).

The store knows nothing of App Mesh's rules: ``service.py`` decides, the store keeps.
Writes are made from one thread (the event loop), which is what makes a
read-check-write in the service atomic without locks.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    region TEXT NOT NULL, mesh_owner TEXT NOT NULL, mesh TEXT NOT NULL,
    kind TEXT NOT NULL, parent TEXT NOT NULL, name TEXT NOT NULL,
    data TEXT NOT NULL, tags TEXT NOT NULL,
    PRIMARY KEY (region, mesh_owner, mesh, kind, parent, name)
);
CREATE TABLE IF NOT EXISTS client_tokens (
    account TEXT NOT NULL, region TEXT NOT NULL, operation TEXT NOT NULL, token TEXT NOT NULL,
    fingerprint TEXT NOT NULL, response TEXT NOT NULL,
    PRIMARY KEY (account, region, operation, token)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS proxies (
    node_id TEXT NOT NULL, address TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (node_id, address)
);
CREATE TABLE IF NOT EXISTS kube_objects (
    account TEXT NOT NULL, region TEXT NOT NULL, kind TEXT NOT NULL,
    namespace TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (account, region, kind, namespace, name)
);
"""


class Key(NamedTuple):
    """Identifies one resource. Meshes use ``mesh=name, parent=''``; routes use the router."""

    region: str
    mesh_owner: str
    mesh: str
    kind: str
    parent: str
    name: str

    @property
    def mesh_key(self) -> MeshKey:
        return MeshKey(self.region, self.mesh_owner, self.mesh)


class MeshKey(NamedTuple):
    region: str
    mesh_owner: str
    mesh: str


@dataclass
class Record:
    """A stored resource: its API data (as Describe returns it) and its tags."""

    key: Key
    data: dict[str, Any]
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return self.data["metadata"]["arn"]


class Tally(NamedTuple):
    """How many resources of one kind one container holds: an account's meshes in a
    region (``mesh=''``), a mesh's nodes, routers, services or gateways (``parent=''``),
    a router's routes, a gateway's gateway routes."""

    region: str
    mesh_owner: str
    mesh: str
    kind: str
    parent: str

    @classmethod
    def of(cls, key: Key) -> Tally:
        """The tally ``key`` counts in (a mesh counts in its account's)."""
        if key.kind == "mesh":
            return cls(key.region, key.mesh_owner, "", "mesh", "")
        return cls(key.region, key.mesh_owner, key.mesh, key.kind, key.parent)


@dataclass(frozen=True)
class Guard:
    """What else must hold when a write commits, as the service states it.

    A store shared by replicas (``DynamoStore``) checks these in the write's own
    transaction, because its index may lag the other replicas' writes. ``SqliteStore``
    has one writer whose checks against its own index are already exact; it ignores them.
    """

    counted: Tally | None = None  # a create: one more in this tally, refused at ``limit``
    limit: int = 0
    uncounted: Tally | None = None  # a delete: one fewer
    container: Key | None = None  # must still exist (a create's mesh, router or gateway)
    empty: tuple[Tally, ...] = ()  # must hold nothing (a container being deleted)
    referenced: tuple[Key, ...] = ()  # must exist; recorded as referred to by this resource
    released: tuple[Key, ...] = ()  # no longer referred to by this resource
    unreferenced: bool = False  # the deleted resource must be referred to by nothing


class QuotaReached(Exception):
    """A create would exceed ``tally``'s limit as counted across every replica."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(f"the quota of {tally} is reached")
        self.tally = tally


class StoreConflict(Exception):
    """A write lost a race with another replica's write; the store has refreshed what it
    knows of the items, so the operation can be decided again on the fresh state."""


class Store(Protocol):
    """What every store offers. Reads are synchronous and cheap (an in-memory index);
    ``write`` returns only once the change is durable, and returns the new change sequence."""

    sequence: int

    def get(self, key: Key) -> Record | None: ...
    def get_by_arn(self, arn: str) -> Record | None: ...
    def children(self, mesh: MeshKey, kind: str, parent: str = "") -> dict[str, Record]: ...
    def meshes_owned_by(self, region: str, account: str) -> dict[str, Record]: ...
    def all_meshes(self) -> list[Record]: ...
    def mesh_owners(self, region: str, mesh: str) -> list[str]: ...
    def count_meshes(self, region: str, account: str) -> int: ...
    def client_token(
        self, account: str, region: str, operation: str, token: str
    ) -> tuple[str, str] | None: ...
    def write(
        self,
        put: Record | None = None,
        delete: Key | None = None,
        token: tuple[tuple[str, str, str, str], str, str] | None = None,
        guard: Guard | None = None,
    ) -> int: ...
    def save_proxies(self, rows: list[tuple[str, str, str]]) -> None: ...
    def load_proxies(self) -> list[tuple[str, str, str]]: ...
    def kube_objects(self, account: str, region: str) -> list[str]: ...
    def put_kube_object(
        self, account: str, region: str, key: tuple[str, str, str], body: str
    ) -> None: ...
    def delete_kube_object(self, account: str, region: str, key: tuple[str, str, str]) -> None: ...
    def close(self) -> None: ...


class SqliteStore:
    """Resources of every kind, indexed for lookups by key, by ARN and by container."""

    def __init__(self, path: Path | None) -> None:
        """``path=None`` keeps everything in memory (``--in-memory``)."""
        target = ":memory:" if path is None else str(path)
        self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._records: dict[Key, Record] = {}
        self._by_arn: dict[str, Key] = {}
        self._children: dict[tuple[str, str, str, str, str], dict[str, Record]] = {}
        # Mesh records alone, so listing and counting meshes never walks every resource.
        self._meshes: dict[Key, Record] = {}
        self._tokens: dict[tuple[str, str, str, str], tuple[str, str]] = {}
        self.sequence = 0
        self._load()

    # -- loading -----------------------------------------------------------------
    def _load(self) -> None:
        rows = self._db.execute(
            "SELECT region, mesh_owner, mesh, kind, parent, name, data, tags FROM resources"
        )
        for *key_parts, data, tags in rows:
            self._index(Record(Key(*key_parts), json.loads(data), json.loads(tags)))
        for account, region, operation, token, fingerprint, response in self._db.execute(
            "SELECT account, region, operation, token, fingerprint, response FROM client_tokens"
        ):
            self._tokens[(account, region, operation, token)] = (fingerprint, response)
        row = self._db.execute("SELECT value FROM counters WHERE name='sequence'").fetchone()
        self.sequence = row[0] if row else 0

    def _index(self, record: Record) -> None:
        key = record.key
        self._records[key] = record
        self._by_arn[record.arn] = key
        container = (key.region, key.mesh_owner, key.mesh, key.kind, key.parent)
        self._children.setdefault(container, {})[key.name] = record
        if key.kind == "mesh":
            self._meshes[key] = record

    def _unindex(self, key: Key) -> None:
        record = self._records.pop(key, None)
        if record is None:
            return
        self._by_arn.pop(record.arn, None)
        container = (key.region, key.mesh_owner, key.mesh, key.kind, key.parent)
        self._meshes.pop(key, None)
        siblings = self._children.get(container, {})
        siblings.pop(key.name, None)
        if not siblings:
            self._children.pop(container, None)

    # -- reads -------------------------------------------------------------------
    def get(self, key: Key) -> Record | None:
        return self._records.get(key)

    def get_by_arn(self, arn: str) -> Record | None:
        key = self._by_arn.get(arn)
        return None if key is None else self._records.get(key)

    def children(self, mesh: MeshKey, kind: str, parent: str = "") -> dict[str, Record]:
        """Resources of ``kind`` in a mesh (under ``parent`` for routes and gateway routes)."""
        return self._children.get((mesh.region, mesh.mesh_owner, mesh.mesh, kind, parent), {})

    def meshes_owned_by(self, region: str, account: str) -> dict[str, Record]:
        return {
            key.name: record
            for key, record in self._meshes.items()
            if key.region == region and key.mesh_owner == account
        }

    def all_meshes(self) -> list[Record]:
        """Every mesh of every account and region (the console's account picker)."""
        return list(self._meshes.values())

    def mesh_owners(self, region: str, mesh: str) -> list[str]:
        """Accounts that own a mesh of this name in ``region`` (for name-only node ids)."""
        return sorted(
            key.mesh_owner for key in self._meshes if key.region == region and key.name == mesh
        )

    def count_meshes(self, region: str, account: str) -> int:
        return len(self.meshes_owned_by(region, account))

    def client_token(
        self, account: str, region: str, operation: str, token: str
    ) -> tuple[str, str] | None:
        """The (fingerprint, response) recorded for a clientToken, or None."""
        return self._tokens.get((account, region, operation, token))

    # -- writes ------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def write(
        self,
        put: Record | None = None,
        delete: Key | None = None,
        token: tuple[tuple[str, str, str, str], str, str] | None = None,
        guard: Guard | None = None,
    ) -> int:
        """Apply one change atomically (a put or a delete, plus its clientToken record).

        Returns the new global change sequence, which the change feed hands out as
        the mesh's version. ``guard`` is not needed here (see ``Guard``).
        """
        sequence = self.sequence + 1
        with self._transaction() as db:
            if put is not None:
                db.execute(
                    "INSERT OR REPLACE INTO resources VALUES (?,?,?,?,?,?,?,?)",
                    (*put.key, json.dumps(put.data), json.dumps(put.tags)),
                )
            if delete is not None:
                db.execute(
                    "DELETE FROM resources WHERE region=? AND mesh_owner=? AND mesh=? "
                    "AND kind=? AND parent=? AND name=?",
                    tuple(delete),
                )
            if token is not None:
                token_key, fingerprint, response = token
                db.execute(
                    "INSERT OR REPLACE INTO client_tokens VALUES (?,?,?,?,?,?)",
                    (*token_key, fingerprint, response),
                )
            db.execute("INSERT OR REPLACE INTO counters VALUES ('sequence', ?)", (sequence,))
        if delete is not None:
            self._unindex(delete)
        if put is not None:
            self._unindex(put.key)
            self._index(put)
        if token is not None:
            self._tokens[token[0]] = (token[1], token[2])
        self.sequence = sequence
        return sequence

    # -- connected proxies (so a restart does not make every node's endpoints vanish) --------
    def save_proxies(self, rows: list[tuple[str, str, str]]) -> None:
        """Replace the saved proxy registrations with ``(node_id, address, state JSON)`` rows."""
        with self._transaction() as db:
            db.execute("DELETE FROM proxies")
            db.executemany("INSERT INTO proxies VALUES (?,?,?)", rows)

    def load_proxies(self) -> list[tuple[str, str, str]]:
        return list(self._db.execute("SELECT node_id, address, state FROM proxies"))

    # -- App Mesh controller objects (``appmesh-local kube``), one set per account+region ------
    def kube_objects(self, account: str, region: str) -> list[str]:
        """The stored manifests (JSON) of one account and region."""
        rows = self._db.execute(
            "SELECT body FROM kube_objects WHERE account=? AND region=? "
            "ORDER BY kind, namespace, name",
            (account, region),
        )
        return [body for (body,) in rows]

    def put_kube_object(
        self, account: str, region: str, key: tuple[str, str, str], body: str
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO kube_objects VALUES (?,?,?,?,?,?)",
                (account, region, *key, body),
            )

    def delete_kube_object(self, account: str, region: str, key: tuple[str, str, str]) -> None:
        with self._transaction() as db:
            db.execute(
                "DELETE FROM kube_objects WHERE account=? AND region=? AND kind=? "
                "AND namespace=? AND name=?",
                (account, region, *key),
            )

    def close(self) -> None:
        self._db.close()
