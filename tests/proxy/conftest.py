"""Run ``async def`` tests on a fresh uvloop loop each, with a hard per-test bound.

The proxy is built for uvloop, so its tests run on it too. No pytest-asyncio: a small
``pytest_pyfunc_call`` hook is all that is needed, and it keeps every test isolated in
its own loop.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from pathlib import Path

import pytest
import uvloop

sys.path.insert(0, str(Path(__file__).parent))

TEST_BOUND_SECONDS = 30


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}

    async def bounded() -> None:
        await asyncio.wait_for(pyfuncitem.obj(**kwargs), TEST_BOUND_SECONDS)

    uvloop.run(bounded())
    return True
