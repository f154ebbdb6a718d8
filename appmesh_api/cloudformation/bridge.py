"""The App Mesh service as CloudFormation's handlers reach it: on the event loop.

moto's CloudFormation runs in a2wsgi's worker threads, but ``AppMeshService`` relies on
running on the event loop's thread (each check-then-write is atomic because nothing else
runs meanwhile, and the change feed wakes asyncio waiters). So a handler hands each call
to the loop and waits for its answer. The call is the very one the REST API makes, with
the same validation and errors, and its commit wakes the proxies' long-polls at once.

moto's state is process-wide, so the binding is too: ``serve`` binds its one service.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appmesh_api import protocol
from appmesh_api.errors import AppMeshError, ServiceUnavailableException
from appmesh_api.identity import Caller
from appmesh_api.model import service_model
from appmesh_api.service import AppMeshService

_CALL_TIMEOUT = 60.0


@dataclass
class _Binding:
    service: AppMeshService
    loop: asyncio.AbstractEventLoop


_bound: _Binding | None = None
_lock = threading.Lock()


def bind(service: AppMeshService, loop: asyncio.AbstractEventLoop) -> None:
    """Make ``service`` (running on ``loop``) the one CloudFormation stacks write to."""
    global _bound
    with _lock:
        _bound = _Binding(service, loop)


def unbind(service: AppMeshService) -> None:
    global _bound
    with _lock:
        if _bound is not None and _bound.service is service:
            _bound = None


def data_dir() -> Path | None:
    """Where the bound server keeps its state (None: in memory only, or not bound)."""
    binding = _bound
    return None if binding is None else binding.service.settings.data_dir


def call(operation: str, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """Validate ``params`` against botocore's model and run ``operation`` on the loop.

    Raises the AppMeshError the REST API would answer with.
    """
    protocol.validate_input(service_model().operation_model(operation), params)
    binding = _bound
    if binding is None or binding.loop.is_closed():
        raise ServiceUnavailableException("The App Mesh API of appmesh-local is not running.")
    if _on_loop_thread(binding.loop):
        return binding.service.call(operation, params, caller)

    async def run() -> dict[str, Any]:
        return binding.service.call(operation, params, caller)

    future = asyncio.run_coroutine_threadsafe(run(), binding.loop)
    try:
        return future.result(_CALL_TIMEOUT)
    except AppMeshError:
        raise
    except TimeoutError:
        future.cancel()
        raise ServiceUnavailableException(
            f"{operation} got no answer from the App Mesh API within {_CALL_TIMEOUT:.0f} s."
        ) from None


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
