"""The HTTP server under ``serve``: uvicorn, stopping the way a control plane should.

uvicorn waits for open requests before it runs the app's shutdown. A proxy's xDS
long-poll would hold that wait for up to 30 s and then be cancelled, with one traceback
per poll. ``StoppingServer`` first runs ``on_stop`` (closing the change feed, which
answers every long-poll at once) and only then lets uvicorn drain, so a stop takes
well under a second and prints nothing alarming.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import FrameType

import uvicorn


class StoppingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: hand the work to the loop rather than touch asyncio state here.
        asyncio.get_event_loop().call_soon_threadsafe(self._on_stop)
        super().handle_exit(sig, frame)
