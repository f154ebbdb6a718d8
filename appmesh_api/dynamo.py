"""The store on DynamoDB: several ``serve`` replicas share one table.

Each replica keeps the same in-memory index as ``SqliteStore`` (a Describe is a dict
lookup) and writes through to DynamoDB before its index changes. Replicas stay one
control plane by three rules:

- **Optimistic concurrency.** Every resource item carries ``rev``, the change sequence
  of the write that made it. A write is one ``TransactWriteItems`` whose put/delete is
  conditioned on the ``rev`` this replica last saw (``attribute_not_exists`` for a
  create); a clientToken is conditioned on not existing. A failed condition refreshes
  the items from the table and raises ``StoreConflict``, and the service re-runs the
  operation on the fresh state (so a racing create sees "already exists", a racing
  update applies on top of the other), never losing an update.
- **One change sequence.** ``UpdateItem ADD`` on a counter item hands out sequence
  numbers to every replica; each write also puts a change item (``pk=chg``,
  ``sk=<sequence>``) in the same transaction.
- **Checks on other items in the same transaction.** What the service states in a
  ``Guard`` (a quota's tally, the container that must exist, the contents that must
  be empty, the resources referred to) becomes condition checks and updates on those
  items (``_guard_ops``), so rules that read other resources are exact too.
- **Catch-up by polling, sooner when nudged.** Each replica polls the change items
  after its cursor (strongly consistent ``Query``; every ``poll_interval``), re-reads
  the changed resources and publishes their meshes on its change feed, so its proxies
  get the new config. The replica that committed a write also nudges its peers
  (``appmesh_api.peers``) with the change items it committed: a peer applies them at
  once if they follow its cursor without a gap, else polls at once; a lost nudge
  waits for the next poll, which comes every ``poll_interval`` however often nudged.
  DynamoDB Streams would not save the delay: a Streams reader polls ``GetRecords``
  too, and not every DynamoDB-compatible endpoint offers it.
  (UNCONFIRMED: App Mesh documents no read-after-write guarantee across endpoints.)
- **Retention.** Change items older than ``retention`` seconds (10 minutes) are
  deleted by whichever replica finds them (every minute), after it raised the
  ``pruned`` watermark over them. A replica whose cursor is below the watermark has
  missed changes it can no longer read, and reloads the whole table instead.

A sequence number whose transaction failed (or whose writer died in between) leaves
a gap; the poller waits ``GAP_GRACE`` seconds for it before moving past.

Key design (one table, ``pk``/``sk`` strings, created by ``--create-table``)::

    resource      pk=res|<region>|<owner>|<mesh>   sk=JSON [kind, parent, name]
    counter       pk=seq                            sk=seq   (value: N)
    change        pk=chg                            sk=<20-digit sequence>
    watermark     pk=chg                            sk=~pruned  (value: N, changes <= N may be gone)
    replica       pk=replica                        sk=<replica id>  (url, token, expires)
    clientToken   pk=tok|JSON [account, region, operation, token]   sk=tok
    tally         pk=cnt|JSON [region, owner, mesh]   sk=JSON [kind, parent]   (n: N)
    proxy         pk=proxy                          sk=JSON [node_id, address]  (seen, by)
    kube object   pk=kube|<account>|<region>        sk=JSON [kind, namespace, name]
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from appmesh_api import kinds
from appmesh_api.dependencies import referenced_keys
from appmesh_api.peers import PEERS_REFRESH, REGISTRATION_REFRESH, REGISTRATION_TTL, Peers
from appmesh_api.store import (
    Guard,
    Key,
    MeshKey,
    QuotaReached,
    Record,
    SqliteStore,
    StoreConflict,
    Tally,
)

log = logging.getLogger("appmesh_local.dynamo")

GAP_GRACE = 5.0  # seconds a missing sequence number is waited for
PROXY_TTL = 300.0  # a row no replica refreshed for this long is deleted by whoever sees it
PROXY_REFRESH = 5.0  # a saved registration is written again at most this often
# Seconds between reads of the other replicas' proxy registrations when no nudge says
# they changed (a new or gone registration nudges; heartbeats only refresh last_seen,
# which counts in tens of seconds). At 1 s, three replicas made 3 Queries a second,
# on the cores and the one-request moto a push needs. At least ``poll=``.
PROXY_POLL = 5.0
# Seconds between polls of the change items (``poll=``). Nudges deliver a peer's write
# within a poll's round trip; this is the fallback for a lost nudge. At 50 ms, three
# idle replicas and moto spent a quarter of a core on polls (255 CPU ms/s), on cores
# their pushes share; at 1 s, 50 ms/s, most of it other periodic reads.
POLL_INTERVAL = 1.0
CHANGE_RETENTION = 600.0  # seconds a change item is kept (``retention=``)
PRUNE_EVERY = 60.0  # how often a replica looks for change items past retention
NUDGE_GAP = 0.005  # the least time between two polls, however often nudged
WATERMARK_SK = "~pruned"  # sorts after every 20-digit sequence: each poll reads it too
Token = tuple[tuple[str, str, str, str], str, str]
UNREAD: dict = {}  # a change item that carries no content: the resource must be read


class Change(NamedTuple):
    """One change item as a poll reads it: the resource's item as of that change (None:
    deleted), or ``UNREAD`` when the writer's change items carry no content."""

    sequence: int
    key: Key
    item: dict | None


def _change_of(item: dict) -> Change:
    """A change item read from the table; the resource item it carries is rebuilt in the
    table's own shape (``rev`` is the change's sequence, as the write set it)."""
    sequence, key = int(item["sk"]["S"]), Key(*json.loads(item["key"]["S"]))
    if "gone" in item:
        return Change(sequence, key, None)
    if "data" not in item:
        return Change(sequence, key, UNREAD)
    resource = {
        "pk": _s(_resource_pk(key)),
        "sk": _s(_resource_sk(key)),
        "data": item["data"],
        "tags": item["tags"],
        "rev": _n(sequence),
    }
    return Change(sequence, key, resource)


def read_nudge(body: bytes) -> tuple[list[Change] | None, bool]:
    """(the change items a nudge's body carries, whether the sender's proxy
    registrations changed). The body is ``{"changes": [item, ...], "proxies": true}``,
    each item as the table holds it, with content. An empty body (or one this cannot
    use) says neither: (None, True), read both from the table."""
    if not body:
        return None, True
    try:
        message = json.loads(body)
        listed, proxies = message["changes"], message.get("proxies") is True
        changes = [_change_of(item) for item in listed if item["pk"] == _s("chg")]
        for change in changes:  # what apply() will parse must parse: it runs unguarded
            if change.item:
                json.loads(change.item["tags"]["S"])
                if not isinstance(json.loads(change.item["data"]["S"]), dict):
                    raise TypeError("a resource's data is an object")
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        log.warning("a nudge carried change items this replica cannot read (%r)", error)
        return None, True
    if len(changes) != len(listed) or any(change.item is UNREAD for change in changes):
        return None, proxies
    return changes, proxies


def carried_items(changes: list[Change]) -> dict[Key, dict | None]:
    """Each key's item as of its latest change that carries one (the changes sorted by
    sequence, as a Query of the change items returns them)."""
    return {change.key: change.item for change in changes if change.item is not UNREAD}


def local_dynamodb_command(port: int) -> list[str]:
    """The command that runs a DynamoDB stand-in (moto, one request at a time, see
    ``appmesh_api.localdynamo``) on 127.0.0.1:``port``."""
    return [sys.executable, "-m", "appmesh_api.localdynamo", str(port)]


def _store_query(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    if parts.scheme != "dynamodb" or not parts.netloc:
        raise ValueError(
            f"--store must look like dynamodb://TABLE[?endpoint=URL&region=R], got {url!r}"
        )
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    unknown = set(query) - {"endpoint", "region", "poll", "retention"}
    if unknown:
        raise ValueError(f"--store: unknown parameter(s) {', '.join(sorted(unknown))}")
    return parts.netloc, query


def parse_store_url(url: str) -> tuple[str, str | None, str | None]:
    """``dynamodb://TABLE?endpoint=URL&region=R`` -> (table, endpoint, region)."""
    table, query = _store_query(url)
    return table, query.get("endpoint"), query.get("region")


def store_timings(url: str) -> tuple[float, float]:
    """(poll interval, change retention) in seconds: ``poll=`` and ``retention=``."""
    _, query = _store_query(url)
    numbers = []
    for name, default in (("poll", POLL_INTERVAL), ("retention", CHANGE_RETENTION)):
        try:
            value = float(query.get(name, default))
        except ValueError:
            value = -1.0
        if not value > 0:
            raise ValueError(f"--store: {name} must be a positive number of seconds")
        numbers.append(value)
    return numbers[0], numbers[1]


def _carried(put: Record | None) -> dict[str, dict]:
    """What a change item carries of the resource it changed: its data and tags as the
    same transaction writes them, or that it is gone. A peer then applies the change
    from the item its poll already read, without one more read of the resource."""
    if put is None:
        return {"gone": {"BOOL": True}}
    return {"data": _s(json.dumps(put.data)), "tags": _s(json.dumps(put.tags))}


def _resource_pk(key: Key | MeshKey) -> str:
    return f"res|{key.region}|{key.mesh_owner}|{key.mesh}"


def _resource_sk(key: Key) -> str:
    return json.dumps([key.kind, key.parent, key.name])


def _tally_key(tally: Tally) -> dict[str, dict[str, str]]:
    return {
        "pk": _s("cnt|" + json.dumps(list(tally[:3]))),
        "sk": _s(json.dumps(list(tally[3:]))),
    }


_EXISTS = "attribute_exists(pk)"
_REFS = {"#refs": "refs"}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


class DynamoStore(SqliteStore):
    """``Store`` on a DynamoDB table. The in-memory index and its reads are SqliteStore's
    (on a throw-away in-memory SQLite that is never read back); writes go to DynamoDB."""

    def __init__(self, url: str, create_table: bool = False) -> None:
        table, endpoint, region = parse_store_url(url)
        self.table = table
        self.poll_interval, self.retention = store_timings(url)
        self.replica = uuid.uuid4().hex[:12]
        self.token = secrets.token_hex(16)  # what a nudge to this replica must carry
        self.peers = Peers()
        self._nudge: asyncio.Event | None = None
        self._nudged: list[Change] = []  # what nudges carried since the follower looked
        self._must_poll = False  # a nudge carried nothing usable: read the table
        self._proxies_nudged = asyncio.Event()  # a peer's proxy registrations changed
        self._pruned = 0  # the watermark: change items up to it may be deleted
        self._registry: threading.Thread | None = None
        self._client = self._connect(endpoint, region)
        self._revs: dict[Key, int] = {}
        self._applied: set[int] = set()
        self._gaps: dict[int, float] = {}
        self._proxy_rows: dict[str, float] = {}  # sk -> when this replica last wrote it
        self._proxy_pending: list[tuple[str, str, str]] | None = None  # newest unsaved rows
        self._proxy_lock = threading.Lock()
        self._proxy_wake = threading.Event()
        self._proxy_writer: threading.Thread | None = None
        self._closing = False
        self._ensure_table(create_table)
        super().__init__(None)

    # -- connecting ----------------------------------------------------------------
    @staticmethod
    def _connect(endpoint: str | None, region: str | None):
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        extra: dict[str, Any] = {}
        if endpoint and boto3.session.Session().get_credentials() is None:
            # A local endpoint (moto, DynamoDB Local) accepts any key; real DynamoDB never
            # sees these, because a real endpoint needs real credentials to be useful.
            extra = {"aws_access_key_id": "appmesh-local", "aws_secret_access_key": "local"}
        return boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name=region or "us-east-1",
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
            **extra,
        )

    def _ensure_table(self, create: bool) -> None:
        try:
            self._client.describe_table(TableName=self.table)
            return
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
        if not create:
            raise ValueError(
                f"DynamoDB table {self.table} does not exist; create it (key design in "
                "docs/scale-out.md) or pass --create-table"
            )
        try:
            self._client.create_table(
                TableName=self.table,
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as error:  # another replica created it first
            if error.response["Error"]["Code"] != "ResourceInUseException":
                raise
        self._client.get_waiter("table_exists").wait(TableName=self.table)

    # -- loading -------------------------------------------------------------------
    def _load(self) -> None:
        """Read the counter first, then every item: a change made in between is seen
        again by the poller (applying a change twice is harmless)."""
        self.sequence = self._counter()
        self._cursor = self.sequence
        pages = self._client.get_paginator("scan").paginate(
            TableName=self.table, ConsistentRead=True
        )
        tallies: set[tuple[str, str]] = set()
        refs: dict[Key, set[str]] = {}
        for page in pages:
            for item in page["Items"]:
                self._load_item(item)
                if item["pk"]["S"].startswith("cnt|"):
                    tallies.add((item["pk"]["S"], item["sk"]["S"]))
                elif item["pk"]["S"].startswith("res|"):
                    refs[self._key_of(item)] = set(item.get("refs", {}).get("SS", ()))
        self._backfill_tallies(tallies)
        self._backfill_refs(refs)

    def _load_item(self, item: dict) -> None:
        pk = item["pk"]["S"]
        if pk.startswith("res|"):
            self._index_item(item)
        elif pk.startswith("tok|"):
            token_key = tuple(json.loads(pk[4:]))
            self._tokens[token_key] = (item["fingerprint"]["S"], item["response"]["S"])

    def _backfill_tallies(self, present: set[tuple[str, str]]) -> None:
        """Write the tally items a table from before them lacks, from the loaded index.

        Until its tally exists a container's delete passes the "contents are empty"
        check and a create seeds the count from one replica's view, so a table written by
        an older version gets them once, at load. Each put is conditioned on the item not
        existing: a replica that wrote it meanwhile (a create or a delete, which seed it
        themselves) wins, and the backfill moves on.
        """
        counts = collections.Counter(Tally.of(key) for key in self._records)
        written = 0
        for tally, count in counts.items():
            key = _tally_key(tally)
            if (key["pk"]["S"], key["sk"]["S"]) in present:
                continue
            written += self._conditional(
                "put_item",
                Item={**key, "n": _n(count)},
                ConditionExpression="attribute_not_exists(pk)",
            )
        if written:
            log.info(
                "dynamodb: wrote %d quota tallies the table lacked (it predates them)", written
            )

    def _backfill_refs(self, refs: dict[Key, set[str]]) -> None:
        """Add the references a table from before ``refs`` sets lacks, from the index.

        Each is one transaction: the referrer's ``rev`` must still be the one loaded (a
        referrer changed meanwhile wrote its own references) and the target must exist,
        so a reference is never added after its referrer dropped it.
        """
        added = 0
        for key, record in list(self._records.items()):
            kind = kinds.BY_KEY.get(key.kind)
            spec = record.data.get("spec") or {}
            if kind is None or key not in self._revs:
                continue
            me = _resource_sk(key)
            for target in referenced_keys(key.mesh_key, kind, spec):
                if target not in refs or me in refs[target]:
                    continue  # gone (nothing to protect), or already recorded
                added += self._add_reference(key, target)
        if added:
            log.info("dynamodb: recorded %d references the table lacked (it predates them)", added)

    def _add_reference(self, referrer: Key, target: Key) -> bool:
        unchanged = {
            "TableName": self.table,
            "Key": self._item_key(referrer),
            "ConditionExpression": "#rev = :rev",
            "ExpressionAttributeNames": {"#rev": "rev"},
            "ExpressionAttributeValues": {":rev": _n(self._revs[referrer])},
        }
        update = {
            "TableName": self.table,
            "Key": self._item_key(target),
            "UpdateExpression": "ADD #refs :me",
            "ConditionExpression": _EXISTS,
            "ExpressionAttributeNames": _REFS,
            "ExpressionAttributeValues": {":me": {"SS": [_resource_sk(referrer)]}},
        }
        try:
            self._client.transact_write_items(
                TransactItems=[{"ConditionCheck": unchanged}, {"Update": update}]
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            return False
        return True

    def _counter(self) -> int:
        found = self._client.get_item(
            TableName=self.table, Key={"pk": _s("seq"), "sk": _s("seq")}, ConsistentRead=True
        ).get("Item")
        return int(found["value"]["N"]) if found else 0

    @staticmethod
    def _key_of(item: dict) -> Key:
        region, owner, mesh = item["pk"]["S"][4:].split("|", 2)
        kind, parent, name = json.loads(item["sk"]["S"])
        return Key(region, owner, mesh, kind, parent, name)

    def _index_item(self, item: dict) -> None:
        key = self._key_of(item)
        self._unindex(key)
        self._index(Record(key, json.loads(item["data"]["S"]), json.loads(item["tags"]["S"])))
        self._revs[key] = int(item["rev"]["N"])

    def _refresh(self, key: Key) -> None:
        """Replace the cached copy of ``key`` with the table's (or forget it)."""
        item = self._client.get_item(
            TableName=self.table,
            Key={"pk": _s(_resource_pk(key)), "sk": _s(_resource_sk(key))},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            self._unindex(key)
            self._revs.pop(key, None)
        else:
            self._index_item(item)

    # -- reads that must see other replicas ----------------------------------------------
    def client_token(
        self, account: str, region: str, operation: str, token: str
    ) -> tuple[str, str] | None:
        """A token another replica recorded counts too, so this reads the table."""
        token_key = (account, region, operation, token)
        if token_key not in self._tokens:
            item = self._client.get_item(
                TableName=self.table,
                Key={"pk": _s("tok|" + json.dumps(list(token_key))), "sk": _s("tok")},
                ConsistentRead=True,
            ).get("Item")
            if item is not None:
                self._tokens[token_key] = (item["fingerprint"]["S"], item["response"]["S"])
        return self._tokens.get(token_key)

    # -- writes ----------------------------------------------------------------------
    def _next_sequence(self) -> int:
        answer = self._client.update_item(
            TableName=self.table,
            Key={"pk": _s("seq"), "sk": _s("seq")},
            UpdateExpression="ADD #v :one",
            ExpressionAttributeNames={"#v": "value"},
            ExpressionAttributeValues={":one": _n(1)},
            ReturnValues="UPDATED_NEW",
        )
        return int(answer["Attributes"]["value"]["N"])

    def _guard(self, key: Key) -> dict[str, Any]:
        """The condition that the item is as this replica last saw it."""
        rev = self._revs.get(key)
        if rev is None:
            return {"ConditionExpression": "attribute_not_exists(pk)"}
        return {
            "ConditionExpression": "#rev = :rev",
            "ExpressionAttributeNames": {"#rev": "rev"},
            "ExpressionAttributeValues": {":rev": _n(rev)},
        }

    def _operations(
        self,
        sequence: int,
        put: Record | None,
        delete: Key | None,
        token: Token | None,
        guard: Guard,
    ) -> list[dict]:
        changed = put.key if put is not None else delete
        assert changed is not None
        ops: list[dict] = []
        if delete is not None and (put is None or put.key != delete):
            ops.append({"Delete": self._delete_op(delete, guard.unreferenced)})
        if put is not None:
            ops.append({"Update": self._put_op(put, sequence)})
        ops += self._guard_ops(changed, guard)
        if token is not None:
            ops.append({"Put": self._token_op(token)})
        change = {
            "pk": _s("chg"),
            "sk": _s(f"{sequence:020d}"),
            "key": _s(json.dumps(list(changed))),
            "at": _n(round(time.time(), 3)),
            "by": _s(self.replica),
            **_carried(put),
        }
        ops.append({"Put": {"TableName": self.table, "Item": change}})  # last: write() sends it
        return ops

    def _delete_op(self, key: Key, unreferenced: bool) -> dict:
        op = {"TableName": self.table, "Key": self._item_key(key), **self._guard(key)}
        if unreferenced:  # nothing recorded itself as referring to it (see _guard_ops)
            op["ConditionExpression"] += " AND attribute_not_exists(#refs)"
            op["ExpressionAttributeNames"] = {**op.get("ExpressionAttributeNames", {}), **_REFS}
        return op

    def _put_op(self, put: Record, sequence: int) -> dict:
        """An update, not a put: the item's ``refs`` (written by its referrers) stays."""
        guard = self._guard(put.key)
        return {
            "TableName": self.table,
            "Key": self._item_key(put.key),
            "UpdateExpression": "SET #data = :data, #tags = :tags, #rev = :new",
            "ConditionExpression": guard["ConditionExpression"],
            "ExpressionAttributeNames": {"#data": "data", "#tags": "tags", "#rev": "rev"},
            "ExpressionAttributeValues": {
                **guard.get("ExpressionAttributeValues", {}),
                ":data": _s(json.dumps(put.data)),
                ":tags": _s(json.dumps(put.tags)),
                ":new": _n(sequence),
            },
        }

    def _token_op(self, token: Token) -> dict:
        token_key, fingerprint, response = token
        item = {
            "pk": _s("tok|" + json.dumps(list(token_key))),
            "sk": _s("tok"),
            "fingerprint": _s(fingerprint),
            "response": _s(response),
        }
        return {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(pk)",
        }

    def _guard_ops(self, changed: Key, guard: Guard) -> list[dict]:
        """The checks a shared table needs beyond the item itself, in the same transaction.

        - a create adds one to its tally item, on condition it is below the limit, and
          checks its container still exists; a delete takes one off;
        - a container's delete checks its contents' tallies are zero;
        - a resource that refers to others adds itself to their ``refs`` set (on
          condition they exist) and removes itself when it stops; a referable
          resource's delete requires an empty ``refs``.
        So whichever of two racing writes commits second sees the first one.
        """
        table = self.table
        ops: list[dict] = []
        if guard.counted is not None:
            ops.append({"Update": self._count_op(guard.counted, +1, guard.limit)})
        if guard.uncounted is not None:
            ops.append({"Update": self._count_op(guard.uncounted, -1, 0)})
        if guard.container is not None:
            check = {"Key": self._item_key(guard.container), "ConditionExpression": _EXISTS}
            ops.append({"ConditionCheck": {"TableName": table, **check}})
        for tally in guard.empty:
            check = {
                "Key": _tally_key(tally),
                "ConditionExpression": "attribute_not_exists(#n) OR #n = :zero",
                "ExpressionAttributeNames": {"#n": "n"},
                "ExpressionAttributeValues": {":zero": _n(0)},
            }
            ops.append({"ConditionCheck": {"TableName": table, **check}})
        me = {":me": {"SS": [_resource_sk(changed)]}}
        for verb, keys in (("ADD", guard.referenced), ("DELETE", guard.released)):
            for key in keys:
                update = {
                    "Key": self._item_key(key),
                    "UpdateExpression": f"{verb} #refs :me",
                    "ConditionExpression": _EXISTS,
                    "ExpressionAttributeNames": _REFS,
                    "ExpressionAttributeValues": me,
                }
                ops.append({"Update": {"TableName": table, **update}})
        return ops

    def _count_op(self, tally: Tally, step: int, limit: int) -> dict:
        """One more (below ``limit``) or one fewer in ``tally``'s item. An item not yet
        written (a table from before tallies) starts from this replica's own count."""
        sign = "+" if step > 0 else "-"
        op: dict[str, Any] = {
            "TableName": self.table,
            "Key": _tally_key(tally),
            "UpdateExpression": f"SET #n = if_not_exists(#n, :seed) {sign} :one",
            "ExpressionAttributeNames": {"#n": "n"},
            "ExpressionAttributeValues": {":seed": _n(self._local_count(tally)), ":one": _n(1)},
        }
        if step > 0:
            op["ConditionExpression"] = "attribute_not_exists(#n) OR #n < :limit"
            op["ExpressionAttributeValues"][":limit"] = _n(limit)
        return op

    def _local_count(self, tally: Tally) -> int:
        if tally.kind == "mesh":
            return self.count_meshes(tally.region, tally.mesh_owner)
        return len(self.children(MeshKey(*tally[:3]), tally.kind, tally.parent))

    def _tally(self, tally: Tally) -> int:
        item = self._client.get_item(
            TableName=self.table, Key=_tally_key(tally), ConsistentRead=True
        ).get("Item")
        return int(item["n"]["N"]) if item else 0

    @staticmethod
    def _item_key(key: Key) -> dict[str, dict[str, str]]:
        return {"pk": _s(_resource_pk(key)), "sk": _s(_resource_sk(key))}

    def write(
        self,
        put: Record | None = None,
        delete: Key | None = None,
        token: Token | None = None,
        guard: Guard | None = None,
    ) -> int:
        """One transaction (resource, guard checks, clientToken, change item); memory
        changes after it."""
        guard = guard or Guard()
        sequence = self._next_sequence()
        operations = self._operations(sequence, put, delete, token, guard)
        try:
            self._client.transact_write_items(TransactItems=operations)
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            self._after_conflict(put, delete, token, guard)
            full = self._full_tally(put, guard)
            if full is not None:
                raise QuotaReached(full) from error
            raise StoreConflict("another replica changed what this write depends on") from error
        self._applied.add(sequence)
        self.peers.nudge_all(operations[-1]["Put"]["Item"])  # the change item, committed
        if delete is not None:
            self._unindex(delete)
            self._revs.pop(delete, None)
        if put is not None:
            self._unindex(put.key)
            self._index(put)
            self._revs[put.key] = sequence
        if token is not None:
            self._tokens[token[0]] = (token[1], token[2])
        self.sequence = max(self.sequence, sequence)
        return sequence

    def _full_tally(self, put: Record | None, guard: Guard) -> Tally | None:
        """The tally a failed create was refused by, if that alone refused it: its name
        is still free and its container still there (else App Mesh answers that, decided
        again on the fresh state), and the table's tally is at the limit."""
        tally = guard.counted
        if put is None or tally is None or self.get(put.key) is not None:
            return None
        if guard.container is not None and self.get(guard.container) is None:
            return None
        return tally if self._tally(tally) >= guard.limit else None

    def _after_conflict(
        self, put: Record | None, delete: Key | None, token: Token | None, guard: Guard
    ) -> None:
        """Re-read what the failed transaction depended on, so the service decides again
        on the table's state. A delete that found referrers or contents this replica has
        not seen yet re-reads the whole mesh, where they are."""
        if delete is not None and (guard.unreferenced or guard.empty):
            self._refresh_mesh(delete.mesh_key)
        else:
            keys = {delete, put.key if put else None, guard.container}
            keys |= set(guard.referenced) | set(guard.released)
            for key in keys:
                if key is not None:
                    self._refresh(key)
        if token is not None:
            self._tokens.pop(token[0], None)
            self.client_token(*token[0])

    def _refresh_mesh(self, mesh: MeshKey) -> None:
        """Replace the cached copy of one mesh partition with the table's."""
        items = self._query_all(_resource_pk(mesh))
        stale = {key for key in self._records if key.mesh_key == mesh}
        for item in items:
            self._index_item(item)
            stale.discard(self._key_of(item))
        for key in stale:
            self._unindex(key)
            self._revs.pop(key, None)

    # -- following the other replicas --------------------------------------------------
    def poll_changes(self) -> list[Change]:
        """Change items after the cursor (blocking I/O). The watermark item sorts after
        them, so the same Query also reads how far changes were pruned."""
        found: list[Change] = []
        start: dict[str, Any] | None = None
        while True:
            page = self._client.query(
                TableName=self.table,
                KeyConditionExpression="pk = :chg AND sk > :after",
                ExpressionAttributeValues={":chg": _s("chg"), ":after": _s(f"{self._cursor:020d}")},
                ConsistentRead=True,
                **({"ExclusiveStartKey": start} if start else {}),
            )
            for item in page["Items"]:
                if item["sk"]["S"] == WATERMARK_SK:
                    self._pruned = max(self._pruned, int(item["value"]["N"]))
                    continue
                found.append(_change_of(item))
            start = page.get("LastEvaluatedKey")
            if not start:
                return found

    @property
    def behind(self) -> bool:
        """Changes this replica has not applied may have been pruned: reload."""
        return self._cursor < self._pruned

    def read_all(self) -> tuple[int, list[dict]]:
        """(counter, every resource and token item) for a full reload (blocking I/O)."""
        counter = self._counter()
        pages = self._client.get_paginator("scan").paginate(
            TableName=self.table, ConsistentRead=True
        )
        wanted = ("res|", "tok|")
        return counter, [i for p in pages for i in p["Items"] if i["pk"]["S"].startswith(wanted)]

    def replace_all(self, counter: int, items: list[dict]) -> set[MeshKey]:
        """Index a full reload (on the loop); returns every mesh it may have changed.
        What this replica wrote after the reload read the counter is newer than the
        scan: it is kept, not overwritten or forgotten."""
        scanned: set[Key] = set()
        touched = {key.mesh_key for key in self._records}
        for item in items:
            if not item["pk"]["S"].startswith("res|"):
                self._load_item(item)
                continue
            key = self._key_of(item)
            scanned.add(key)
            if int(item["rev"]["N"]) >= self._revs.get(key, 0):
                self._index_item(item)
        for key in set(self._records) - scanned:
            if self._revs.get(key, 0) <= counter:
                self._unindex(key)
                self._revs.pop(key, None)
        self._applied = {s for s in self._applied if s > counter}
        self._gaps.clear()
        self._cursor = max(self._cursor, counter, self._pruned)
        self.sequence = max(self.sequence, counter)
        log.warning("reloaded table %s: this replica fell behind the change retention", self.table)
        return touched | {key.mesh_key for key in scanned}

    def fetch(self, keys: set[Key]) -> dict[Key, dict | None]:
        """The table's current items for ``keys`` (None: deleted), read off the loop."""
        return {
            key: self._client.get_item(
                TableName=self.table, Key=self._item_key(key), ConsistentRead=True
            ).get("Item")
            for key in keys
        }

    def apply(
        self, changes: list[tuple[int, Key]], items: dict[Key, dict | None]
    ) -> set[tuple[MeshKey, int]]:
        """Index what other replicas wrote (on the loop); returns (mesh, sequence) to publish."""
        published: set[tuple[MeshKey, int]] = set()
        for sequence, key in changes:
            if sequence in self._applied:
                continue
            self._applied.add(sequence)
            item = items.get(key)
            if item is None:
                self._unindex(key)
                self._revs.pop(key, None)
            elif int(item["rev"]["N"]) >= self._revs.get(key, 0):
                self._index_item(item)
            published.add((key.mesh_key, sequence))
            self.sequence = max(self.sequence, sequence)
        self._advance({sequence for sequence, _ in changes})
        return published

    def _advance(self, seen: set[int]) -> None:
        """Move the cursor over every number seen, or missing for longer than GAP_GRACE."""
        top = max(seen | {self._cursor})
        now = time.monotonic()
        while self._cursor < top:
            following = self._cursor + 1
            if following not in self._applied and following not in seen:
                first = self._gaps.setdefault(following, now)
                if now - first < GAP_GRACE:
                    break
                log.warning("change %d never committed (a failed or abandoned write)", following)
            self._gaps.pop(following, None)
            self._applied.discard(following)
            self._cursor = following

    async def follow(self, publish: Callable[[MeshKey, int], object]) -> None:
        """Forever: pick up the other replicas' writes and wake this replica's waiters,
        every ``poll_interval`` or at once when a peer nudges."""
        loop = asyncio.get_running_loop()
        nudge = self._nudge = asyncio.Event()
        polled = time.monotonic()
        while True:
            left = polled + self.poll_interval - time.monotonic()
            if left > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(nudge.wait(), left)
            nudge.clear()
            if not self._must_poll and time.monotonic() - polled < self.poll_interval:
                carried = self.apply_nudged()
                if carried is not None:  # applied without reading the table
                    for mesh, sequence in sorted(carried, key=lambda p: p[1]):
                        publish(mesh, sequence)
                    continue
            # Whatever nudges carried so far was committed before this Query starts.
            self._must_poll, self._nudged = False, []
            polled = time.monotonic()
            try:
                changes = await loop.run_in_executor(None, self.poll_changes)
                if self.behind:
                    counter, everything = await loop.run_in_executor(None, self.read_all)
                    for mesh in self.replace_all(counter, everything):
                        publish(mesh, counter)
                    continue
                fresh = [change for change in changes if change.sequence not in self._applied]
                items = carried_items(fresh)
                unread = {change.key for change in fresh if change.item is UNREAD}
                if unread:  # written by a replica whose change items carry no content
                    items.update(await loop.run_in_executor(None, self.fetch, unread))
            except Exception:
                log.exception("could not read the change items of table %s", self.table)
                await asyncio.sleep(1.0)
                continue
            pairs = [(change.sequence, change.key) for change in changes]
            for mesh, sequence in sorted(self.apply(pairs, items), key=lambda p: p[1]):
                publish(mesh, sequence)
            await asyncio.sleep(NUDGE_GAP)

    def accept_nudge(self, token: str | None, body: bytes = b"") -> bool:
        """A peer's nudge (on the loop), if it carries this replica's token: the change
        items in ``body`` are applied by the follower, or it polls now (no body, or one
        that is not a list of change items with content)."""
        if token is None or not secrets.compare_digest(token, self.token):
            return False
        changes, proxies = read_nudge(body)
        if proxies:
            self._proxies_nudged.set()
        if changes is None:
            self._must_poll = True
        else:
            self._nudged.extend(changes)
        if self._nudge is not None:
            self._nudge.set()
        return True

    def apply_nudged(self) -> set[tuple[MeshKey, int]] | None:
        """Apply what nudges carried since the last look, if it leaves no gap after the
        cursor (every sequence up to the newest carried is applied or carried), and
        return (mesh, sequence) to publish; None: it does not, read the table.

        Sequence order holds as after a poll: a change is applied only once all before
        it are, so a write that depends on an earlier one (made on another replica, its
        nudge late or lost) is never seen without it.
        """
        fresh = {
            change.sequence: change
            for change in self._nudged
            if change.sequence > self._cursor and change.sequence not in self._applied
        }
        self._nudged = []
        if not fresh:
            return set()
        newest = max(fresh)
        if newest - self._cursor > len(fresh) + len(self._applied):
            return None  # more numbers than could be accounted for: a gap
        for sequence in range(self._cursor + 1, newest + 1):
            if sequence not in fresh and sequence not in self._applied:
                return None
        changes = [fresh[sequence] for sequence in sorted(fresh)]
        pairs = [(change.sequence, change.key) for change in changes]
        return self.apply(pairs, carried_items(changes))

    async def wait_proxies(self) -> None:
        """Until a peer's nudge says its proxy registrations changed, or ``PROXY_POLL``
        (at least ``poll_interval``) passed: then the other replicas' rows are read."""
        with contextlib.suppress(TimeoutError):
            timeout = max(PROXY_POLL, self.poll_interval)
            await asyncio.wait_for(self._proxies_nudged.wait(), timeout)
        self._proxies_nudged.clear()

    # -- peers and retention ---------------------------------------------------------
    def start_peering(self, url: str | None) -> None:
        """List this replica at ``url`` for its peers to nudge (None: never nudged, it
        polls), follow the peers' items, and prune old change items; from a thread."""
        self._registry = threading.Thread(
            target=self._registry_forever, args=(url,), name="replica-registry", daemon=True
        )
        self._registry.start()

    def _registry_forever(self, url: str | None) -> None:
        registered = pruned = 0.0
        while not self._closing:
            now = time.time()
            try:
                if url is not None and now - registered >= REGISTRATION_REFRESH:
                    self._register(url, now)
                    registered = now
                self.peers.update(self.listed_peers(now))
                if now - pruned >= min(PRUNE_EVERY, self.retention / 2):
                    self.prune_changes(now)
                    pruned = now
            except Exception:  # DynamoDB unreachable: polling goes on, try again later
                log.exception("could not read or write the replica items of %s", self.table)
            for _ in range(int(PEERS_REFRESH / 0.1)):
                if self._closing:
                    break
                time.sleep(0.1)

    def _register(self, url: str, now: float) -> None:
        item = {
            "pk": _s("replica"),
            "sk": _s(self.replica),
            "url": _s(url),
            "token": _s(self.token),
            "expires": _n(now + REGISTRATION_TTL),
        }
        self._client.put_item(TableName=self.table, Item=item)

    def listed_peers(self, now: float) -> dict[str, tuple[str, str]]:
        """The other live replicas' (URL, token); expired items are deleted on the way."""
        peers = {}
        for item in self._query_all("replica"):
            if float(item["expires"]["N"]) <= now:
                self._conditional(
                    "delete_item",
                    Key={"pk": item["pk"], "sk": item["sk"]},
                    ConditionExpression="#expires = :expires",
                    ExpressionAttributeNames={"#expires": "expires"},
                    ExpressionAttributeValues={":expires": item["expires"]},
                )
            elif item["sk"]["S"] != self.replica:
                peers[item["sk"]["S"]] = (item["url"]["S"], item["token"]["S"])
        return peers

    def prune_changes(self, now: float) -> int:
        """Delete the oldest change items, up to the first one younger than the
        retention, after raising the watermark over them; returns how many."""
        old = self._expired_changes(now - self.retention)
        if not old:
            return 0
        mark = int(old[-1])
        self._conditional(
            "update_item",
            Key={"pk": _s("chg"), "sk": _s(WATERMARK_SK)},
            UpdateExpression="SET #v = :mark",
            ConditionExpression="attribute_not_exists(#v) OR #v < :mark",
            ExpressionAttributeNames={"#v": "value"},
            ExpressionAttributeValues={":mark": _n(mark)},
        )
        for start in range(0, len(old), 25):
            deletes = [
                {"DeleteRequest": {"Key": {"pk": _s("chg"), "sk": _s(sk)}}}
                for sk in old[start : start + 25]
            ]
            request: dict[str, Any] = {self.table: deletes}
            for _ in range(5):  # throttled deletes come back unprocessed
                request = self._client.batch_write_item(RequestItems=request).get(
                    "UnprocessedItems", {}
                )
                if not request:
                    break
        log.info("pruned %d change items (up to %d) of table %s", len(old), mark, self.table)
        return len(old)

    def _expired_changes(self, cutoff: float, most: int = 1000) -> list[str]:
        """Sort keys of the oldest change items made before ``cutoff``, in order."""
        old: list[str] = []
        start: dict[str, Any] | None = None
        while len(old) < most:
            page = self._client.query(
                TableName=self.table,
                KeyConditionExpression="pk = :chg AND sk < :mark",
                ExpressionAttributeValues={":chg": _s("chg"), ":mark": _s(WATERMARK_SK)},
                ConsistentRead=True,
                Limit=100,
                **({"ExclusiveStartKey": start} if start else {}),
            )
            for item in page["Items"]:
                if float(item["at"]["N"]) >= cutoff or len(old) >= most:
                    return old
                old.append(item["sk"]["S"])
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        return old

    # -- proxies and kube objects ----------------------------------------------------
    def save_proxies(self, rows: list[tuple[str, str, str]]) -> None:
        """Hand this replica's registrations to the writer thread and return at once.

        The caller is the event loop (a proxy's first request, the 10 s sweep), which
        must not wait for one DynamoDB write per proxy. Only the newest rows count: a
        save made while the writer is busy replaces one not yet written.
        """
        with self._proxy_lock:
            self._proxy_pending = list(rows)
            if self._proxy_writer is None:
                self._proxy_writer = threading.Thread(
                    target=self._write_proxies_forever, name="proxy-registrations", daemon=True
                )
                self._proxy_writer.start()
        self._proxy_wake.set()

    def _write_proxies_forever(self) -> None:
        while True:
            self._proxy_wake.wait()
            self._proxy_wake.clear()
            with self._proxy_lock:
                rows, self._proxy_pending = self._proxy_pending, None
            if rows is not None:
                try:
                    self._write_proxies(rows)
                except Exception:  # DynamoDB unreachable: the next save tries again
                    log.exception("could not save proxy registrations to table %s", self.table)
            if self._closing and self._proxy_pending is None:
                return

    def _write_proxies(self, rows: list[tuple[str, str, str]]) -> None:
        """This replica's registrations: a new one at once, the others as a heartbeat
        (at most every ``PROXY_REFRESH`` s), which carries their ``last_seen`` to the
        other replicas. A row is one per proxy, whichever replica it is connected to:
        a write only wins over another replica's row with a ``last_seen`` as recent, and
        a replica deletes only the rows it wrote, so a proxy that moved is not lost."""
        now = time.time()
        wanted = {json.dumps([node_id, address]): state for node_id, address, state in rows}
        changed = set(self._proxy_rows) ^ set(wanted)  # new or gone: the peers' endpoints
        try:
            self._write_proxy_rows(wanted, now)
        finally:
            if changed:
                self.peers.nudge_proxies()

    def _write_proxy_rows(self, wanted: dict[str, str], now: float) -> None:
        for sk in set(self._proxy_rows) - set(wanted):
            self._conditional(
                "delete_item",
                Key={"pk": _s("proxy"), "sk": _s(sk)},
                ConditionExpression="#by = :me",
                ExpressionAttributeNames={"#by": "by"},
                ExpressionAttributeValues={":me": _s(self.replica)},
            )
            del self._proxy_rows[sk]
        for sk, state in wanted.items():
            if now - self._proxy_rows.get(sk, 0.0) < PROXY_REFRESH:
                continue
            self._put_proxy(sk, state, now)
            self._proxy_rows[sk] = now

    def _put_proxy(self, sk: str, state: str, now: float) -> None:
        seen = json.loads(state)["last_seen"]
        item = {
            "pk": _s("proxy"),
            "sk": _s(sk),
            "state": _s(state),
            "seen": _n(seen),
            "expires": _n(now + PROXY_TTL),
            "by": _s(self.replica),
        }
        self._conditional(
            "put_item",
            Item=item,
            ConditionExpression="attribute_not_exists(pk) OR #by = :me OR #seen <= :seen",
            ExpressionAttributeNames={"#by": "by", "#seen": "seen"},
            ExpressionAttributeValues={":me": _s(self.replica), ":seen": _n(seen)},
        )

    def _conditional(self, operation: str, **request: Any) -> bool:
        """A conditional item write; False when its condition did not hold."""
        try:
            getattr(self._client, operation)(TableName=self.table, **request)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def load_proxies(self) -> list[tuple[str, str, str]]:
        """Nothing to restore as this replica's own: every saved registration belongs to
        the replica it was made on, and reaches this one through ``shared_proxies``."""
        return []

    def shared_proxies(self) -> list[tuple[str, str, str, str]]:
        """The other replicas' registrations, ``(replica, node_id, address, state)``
        (blocking I/O). Rows past their expiry are deleted on the way (their replica
        stopped refreshing them long ago, so it is gone)."""
        now = time.time()
        rows = []
        for item in self._query_all("proxy"):
            if float(item["expires"]["N"]) <= now:
                self._conditional(
                    "delete_item",
                    Key={"pk": item["pk"], "sk": item["sk"]},
                    ConditionExpression="#expires = :expires",
                    ExpressionAttributeNames={"#expires": "expires"},
                    ExpressionAttributeValues={":expires": item["expires"]},
                )
                continue
            if item["by"]["S"] == self.replica:
                continue
            node_id, address = json.loads(item["sk"]["S"])
            rows.append((item["by"]["S"], node_id, address, item["state"]["S"]))
        return rows

    def _query_all(self, pk: str) -> list[dict]:
        pages = self._client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": _s(pk)},
            ConsistentRead=True,
        )
        return [item for page in pages for item in page["Items"]]

    def kube_objects(self, account: str, region: str) -> list[str]:
        items = self._query_all(f"kube|{account}|{region}")
        items.sort(key=lambda item: json.loads(item["sk"]["S"]))
        return [item["body"]["S"] for item in items]

    def put_kube_object(
        self, account: str, region: str, key: tuple[str, str, str], body: str
    ) -> None:
        item = {
            "pk": _s(f"kube|{account}|{region}"),
            "sk": _s(json.dumps(list(key))),
            "body": _s(body),
        }
        self._client.put_item(TableName=self.table, Item=item)

    def delete_kube_object(self, account: str, region: str, key: tuple[str, str, str]) -> None:
        self._client.delete_item(
            TableName=self.table,
            Key={"pk": _s(f"kube|{account}|{region}"), "sk": _s(json.dumps(list(key)))},
        )

    def close(self) -> None:
        """Write the last registrations saved (briefly waited for), then close."""
        self._closing = True
        if self._proxy_writer is not None:
            self._proxy_wake.set()
            self._proxy_writer.join(timeout=5)
        self.peers.close()
        if self._registry is not None:
            self._registry.join(timeout=5)
            with contextlib.suppress(Exception):  # peers stop nudging at once, not in 30 s
                self._conditional(
                    "delete_item",
                    Key={"pk": _s("replica"), "sk": _s(self.replica)},
                    ConditionExpression="attribute_exists(pk)",
                )
        super().close()
        self._client.close()
