"""A DynamoDB stand-in on one machine: moto's server, one request at a time.

    python -m appmesh_api.localdynamo PORT

Used by ``up --replicas`` and the tests (``appmesh_api.dynamo.local_dynamodb_command``).
A DynamoDB must apply a transaction's conditions and writes atomically, and moto's
threaded server does not (two TransactWriteItems can both pass one condition), so
serving requests in turn is what makes it a faithful stand-in.

moto also backs up a table for a possible rollback once per *item* of a transaction
(a deep copy of the whole table each time, so a write of five items copies it five
times); here it is copied once per transaction, which rolls back the same way.
"""

from __future__ import annotations

import copy
import sys
from typing import Any


class _OneBackupPerTable:
    """Stands in for the ``copy`` module inside one ``transact_write_items`` call: the
    table backups it makes are taken once per table; anything else is copied as asked."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type
        self._backups: dict[int, Any] = {}

    def deepcopy(self, thing: Any) -> Any:
        if not isinstance(thing, self._table_type):
            return copy.deepcopy(thing)
        if id(thing) not in self._backups:
            self._backups[id(thing)] = copy.deepcopy(thing)
        return self._backups[id(thing)]


def _back_up_tables_once() -> None:
    from moto.dynamodb import models

    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        models.copy = _OneBackupPerTable(models.Table)  # type: ignore[assignment]
        try:
            return original(self, transact_items)
        finally:
            models.copy = copy

    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def main(port: int) -> None:
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    _back_up_tables_once()
    app = DomainDispatcherApplication(create_backend_app)
    make_server("127.0.0.1", port, app, threaded=False).serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
