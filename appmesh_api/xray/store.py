"""Segment documents in memory, per account and region, bounded in count, bytes and age.

X-Ray keeps traces for 30 days; a local emulator keeps what a developer looks at: by
default the last 100,000 documents of an account and region, at most 256 MiB of documents
over all accounts together (any 12-digit key is an account, so a per-account bound alone
would not bound memory), and nothing older than 24 hours (counted from when a trace last
received a document, so hand-made documents with old timestamps stay visible). The oldest
traces go first.

Each trace keeps its latest document per entity id: a complete segment replaces the
in-progress placeholder sent with the same id (never the other way round). The assembled
trace and its analysis are cached until the trace changes.

With a data directory, ``XRayState`` keeps a ``journal.Journal``: each store notes which
documents it took and which traces it dropped, and the state commits them after every
write operation, before the answer.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from appmesh_api.xray.analysis import Analysis, analyze
from appmesh_api.xray.documents import Document, assemble
from appmesh_api.xray.groups import Groups
from appmesh_api.xray.journal import DocumentRow, Journal
from appmesh_api.xray.sampling import SamplingRules

DEFAULT_MAX_DOCUMENTS = 100_000
DEFAULT_MAX_AGE = 24 * 3600.0
#: Documents' JSON size over every account and region (``serve --xray-max-bytes``).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


def document_size(document: Document) -> int:
    return len(json.dumps(document, separators=(",", ":")))


class Budget:
    """The bytes every TraceStore of one server may hold together."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.stores: list[TraceStore] = []

    def reclaim(self) -> None:
        """Drop the least recently written trace of any store until within the budget."""
        while self.used > self.max_bytes:
            live = [store for store in self.stores if store.oldest_update() is not None]
            if not live:
                return
            min(live, key=lambda store: store.oldest_update() or 0.0).drop_oldest()


@dataclass
class TraceRecord:
    """The documents of one trace, with when it was first and last written."""

    trace_id: str
    received: float
    updated: float
    documents: dict[str, Document] = field(default_factory=dict)
    revision: int = 0
    size: int = 0  # the documents' JSON bytes
    _analysis: Analysis | None = None

    def put(self, document: Document, now: float) -> tuple[int, int]:
        """Store a document; returns (documents gained (0 or 1), bytes gained)."""
        entity_id = document["id"]
        old = self.documents.get(entity_id)
        if old is not None and old.get("end_time") is not None and document.get("in_progress"):
            return 0, 0  # a late in-progress placeholder never hides the finished segment
        self.documents[entity_id] = document
        self.updated, self.revision, self._analysis = now, self.revision + 1, None
        grown = document_size(document) - (0 if old is None else document_size(old))
        self.size += grown
        return (0 if old is not None else 1), grown

    @property
    def analysis(self) -> Analysis:
        if self._analysis is None:
            self._analysis = analyze(self.trace_id, assemble(self.documents.values()))
        return self._analysis


class TraceStore:
    """The traces of one account and region, least recently written first."""

    def __init__(
        self,
        max_documents: int = DEFAULT_MAX_DOCUMENTS,
        max_age: float = DEFAULT_MAX_AGE,
        budget: Budget | None = None,
    ) -> None:
        self.max_documents = max_documents
        self.max_age = max_age
        self.budget = budget or Budget()
        self.budget.stores.append(self)
        self._traces: OrderedDict[str, TraceRecord] = OrderedDict()
        self._count = 0
        self.tracking = False  # note changes for a journal
        self.changed: dict[str, set[str]] = {}  # trace id -> entity ids stored since a commit
        self.dropped: set[str] = set()  # traces dropped since a commit

    def put(self, documents: list[Document], now: float | None = None) -> None:
        """Store checked documents (see ``documents.parse_document``)."""
        now = time.time() if now is None else now
        for document in documents:
            trace_id = document["trace_id"]
            record = self._traces.get(trace_id)
            if record is None:
                record = self._traces[trace_id] = TraceRecord(trace_id, now, now)
            gained, grown = record.put(document, now)
            if self.tracking and record.documents.get(document["id"]) is document:
                self.changed.setdefault(trace_id, set()).add(document["id"])
            self._count += gained
            self.budget.used += grown
            self._traces.move_to_end(trace_id)
        self._expire(now)
        self.budget.reclaim()

    def oldest_update(self) -> float | None:
        return next(iter(self._traces.values())).updated if self._traces else None

    def drop_oldest(self) -> None:
        _, oldest = self._traces.popitem(last=False)
        self._count -= len(oldest.documents)
        self.budget.used -= oldest.size
        if self.tracking:
            self.dropped.add(oldest.trace_id)
            self.changed.pop(oldest.trace_id, None)

    def restore(self, record: TraceRecord) -> None:
        """Take back a trace from the journal (oldest first), within the bounds."""
        self._traces[record.trace_id] = record
        self._count += len(record.documents)
        self.budget.used += record.size
        self._expire(time.time())

    def take_changes(self) -> tuple[set[str], dict[str, set[str]]]:
        """What changed since the last commit (and forget it: it is being committed)."""
        dropped, changed = self.dropped, self.changed
        self.dropped, self.changed = set(), {}
        return dropped, changed

    def get(self, trace_id: str) -> TraceRecord | None:
        self._expire(time.time())
        return self._traces.get(trace_id)

    def records(self) -> Iterator[TraceRecord]:
        """Every live trace, least recently written first."""
        self._expire(time.time())
        return iter(list(self._traces.values()))

    def __len__(self) -> int:
        return self._count

    def _expire(self, now: float) -> None:
        while self._traces:
            oldest = next(iter(self._traces.values()))
            if self._count <= self.max_documents and now - oldest.updated <= self.max_age:
                return
            self.drop_oldest()


@dataclass
class Partition:
    """Everything X-Ray holds for one account in one region."""

    account: str
    region: str
    traces: TraceStore
    sampling: SamplingRules
    groups: Groups
    encryption: dict[str, str] = field(default_factory=lambda: {"Type": "NONE"})


#: Operations after which the journal commits (the others only read).
TRACE_WRITES = frozenset(["PutTraceSegments"])
SETTINGS_WRITES = frozenset(
    ["CreateSamplingRule", "UpdateSamplingRule", "DeleteSamplingRule", "CreateGroup",
     "UpdateGroup", "DeleteGroup", "PutEncryptionConfig"]
)  # fmt: skip


class XRayState:
    """All partitions, created on first use (any account and region is accepted).

    With a ``journal``, what the last run kept comes back now, and ``saved`` commits each
    write operation's changes.
    """

    def __init__(
        self,
        max_documents: int = DEFAULT_MAX_DOCUMENTS,
        max_age: float = DEFAULT_MAX_AGE,
        max_bytes: int = DEFAULT_MAX_BYTES,
        journal: Journal | None = None,
    ) -> None:
        self.max_documents = max_documents
        self.max_age = max_age
        self.budget = Budget(max_bytes)
        self._partitions: dict[tuple[str, str], Partition] = {}
        self.journal = journal
        if journal is not None:
            self._restore(journal)

    def saved(self, partition: Partition, operation: str) -> None:
        """Commit what ``operation`` changed (nothing for a read, or without a journal)."""
        if self.journal is None:
            return
        if operation in TRACE_WRITES:
            self._save_traces(self.journal)
        elif operation in SETTINGS_WRITES:
            body = {
                "sampling": partition.sampling.saved(),
                "groups": partition.groups.saved(),
                "encryption": partition.encryption,
            }
            self.journal.write_settings(partition.account, partition.region, body)

    def _save_traces(self, journal: Journal) -> None:
        """Every partition: the budget may have dropped another account's oldest trace."""
        dropped: list[tuple[str, str, str]] = []
        written: list[DocumentRow] = []
        for partition in self._partitions.values():
            account, region = partition.account, partition.region
            gone, changed = partition.traces.take_changes()
            dropped += [(account, region, trace_id) for trace_id in sorted(gone)]
            for trace_id, entity_ids in changed.items():
                record = partition.traces._traces.get(trace_id)
                if record is None:
                    continue
                for entity_id in sorted(entity_ids):
                    body = json.dumps(record.documents[entity_id], separators=(",", ":"))
                    row = (account, region, trace_id, entity_id, body)
                    written.append((*row, record.received, record.updated))
        journal.write_traces(dropped, written)

    def _restore(self, journal: Journal) -> None:
        for account, region, body in journal.settings():
            partition = self.partition(account, region)
            partition.sampling.restore(body.get("sampling") or [])
            partition.groups.restore(body.get("groups") or [])
            partition.encryption = body.get("encryption") or partition.encryption
        records: dict[tuple[str, str, str], TraceRecord] = {}
        for account, region, trace_id, entity_id, text, received, updated in journal.documents():
            key = (account, region, trace_id)
            record = records.get(key)
            if record is None:
                record = records[key] = TraceRecord(trace_id, received, updated)
            record.received = min(record.received, received)
            record.updated = max(record.updated, updated)
            document = json.loads(text)
            record.documents[entity_id] = document
            record.size += document_size(document)
        for (account, region, _trace_id), record in sorted(
            records.items(), key=lambda item: item[1].updated
        ):
            self.partition(account, region).traces.restore(record)
        self.budget.reclaim()
        self._save_traces(journal)  # what the bounds dropped on the way back

    def trace_count(self) -> int:
        return sum(len(partition.traces._traces) for partition in self._partitions.values())

    def partitions(self) -> list[Partition]:
        """The partitions that exist (each was written or read at least once)."""
        return list(self._partitions.values())

    def partition(self, account: str, region: str) -> Partition:
        key = (account, region)
        if key not in self._partitions:
            traces = TraceStore(self.max_documents, self.max_age, self.budget)
            traces.tracking = self.journal is not None
            self._partitions[key] = Partition(
                account, region, traces, SamplingRules(account, region), Groups(account, region)
            )
        return self._partitions[key]
