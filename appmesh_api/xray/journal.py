"""X-Ray's state in the data directory (``<data-dir>/xray.sqlite3``), so it survives a stop.

Two tables: every document the trace stores hold (one row per account, region, trace and
entity id, with when its trace was first and last written), and each partition's
sampling rules, groups and encryption setting (one row, as JSON). A write operation
commits before it is answered: ``PutTraceSegments`` (from the API or the daemon) writes the
documents it stored and deletes the traces the stores dropped since the last commit (for
the byte, count or age bound, so the file holds what memory holds); a sampling rule,
group or encryption change rewrites its partition's row. Reads write nothing. Rules'
request counts and their clients' reservoir shares are not kept: they restart at zero, as
they would after a quota period anyway.

WAL with ``synchronous=NORMAL``, as the App Mesh store: durable against the process
dying, ``kill -9`` included; an OS crash may lose the last commits.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    account TEXT NOT NULL, region TEXT NOT NULL, trace_id TEXT NOT NULL,
    entity_id TEXT NOT NULL, body TEXT NOT NULL, received REAL NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (account, region, trace_id, entity_id)
);
CREATE TABLE IF NOT EXISTS settings (
    account TEXT NOT NULL, region TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (account, region)
);
"""

#: (account, region, trace_id, entity_id, document JSON, received, updated)
DocumentRow = tuple[str, str, str, str, str, float, float]


class Journal:
    """The SQLite file; callers hold the event loop, so one connection serves them all."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.commits = 0
        self.seconds = 0.0

    def documents(self) -> Iterable[DocumentRow]:
        """Every stored document, least recently written trace first."""
        return self._db.execute(
            "SELECT account, region, trace_id, entity_id, body, received, updated "
            "FROM documents ORDER BY updated, trace_id"
        )

    def settings(self) -> Iterable[tuple[str, str, dict[str, Any]]]:
        rows = self._db.execute("SELECT account, region, body FROM settings")
        return [(account, region, json.loads(body)) for account, region, body in rows]

    def write_traces(self, dropped: list[tuple[str, str, str]], written: list[DocumentRow]) -> None:
        """One transaction: forget dropped traces, then store (or replace) documents."""
        if not dropped and not written:
            return
        started = time.perf_counter()
        with self._transaction():
            self._db.executemany(
                "DELETE FROM documents WHERE account = ? AND region = ? AND trace_id = ?",
                dropped,
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)", written
            )
        self._count(started)

    def write_settings(self, account: str, region: str, body: dict[str, Any]) -> None:
        started = time.perf_counter()
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO settings VALUES (?, ?, ?)",
                (account, region, json.dumps(body, separators=(",", ":"))),
            )
        self._count(started)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """COMMIT on success, ROLLBACK on an exception (the connection is autocommit)."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _count(self, started: float) -> None:
        self.commits += 1
        self.seconds += time.perf_counter() - started

    def size(self) -> int:
        return sum(
            path.stat().st_size
            for path in (self.path, self.path.with_name(self.path.name + "-wal"))
            if path.exists()
        )

    def close(self) -> None:
        self._db.close()
