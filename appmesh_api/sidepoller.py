"""What the control plane's lookups against the side services share.

App Mesh's control plane, not the proxy, called Cloud Map (``DiscoverInstances``) and ACM
(``ExportCertificate``) and pushed the answers over xDS; so do ``cloudmap.py`` and
``acm.py``. Both hold a cache keyed by what the meshes want, look up new keys at once and
every key again each ``interval`` seconds, off the event loop, as the owning account
against the side-service endpoint (embedded moto or ``--aws-endpoint``). This base class
is that timer and that client; the subclasses own what is cached and when to publish.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import boto3
from botocore.config import Config


class NoSideServiceEndpoint(Exception):
    """The embedded side services have not bound their port yet (start-up)."""


class SideServicePoller:
    """A wake-or-interval timer and boto3 clients signed as a mesh's account."""

    def __init__(
        self,
        endpoint: Callable[[], str | None],
        secret: str = "appmesh-local",
        interval: float = 5.0,
    ) -> None:
        self._endpoint = endpoint
        self._secret = secret  # passes --verify-signatures on our own port
        self.interval = interval
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Run the next round now (something new is wanted)."""
        self._wake.set()

    async def rounds(self) -> AsyncIterator[None]:
        """Yield once per round: at once after ``wake``, else every ``interval`` seconds."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            yield

    def client(self, service: str, region: str, account: str, **config: Any) -> Any:
        """A boto3 client for ``service`` acting as ``account``; two attempts, no more,
        so a dead side service costs one round, not a retry storm."""
        endpoint = self._endpoint()
        if endpoint is None:
            raise NoSideServiceEndpoint("no side-service endpoint is known yet")
        make: Callable[..., Any] = boto3.client  # any service name, not one stubbed literal
        return make(
            service,
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=account,
            aws_secret_access_key=self._secret,
            config=Config(retries={"max_attempts": 2}, **config),
        )
