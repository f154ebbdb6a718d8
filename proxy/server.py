"""``ProxyServer``: the sidecar's lifecycle and its config versions.

``apply(resources, version)`` compiles a complete resource set (raising ``ConfigError``
for what Envoy would NACK), binds any new listener addresses first (a bind failure is a
NACK too, and nothing changes), updates clusters and waits briefly for new clusters'
first health checks (Envoy's warming), then swaps the compiled config in one assignment
and retires listeners that went away. Requests already in flight keep the config they
started with; open connections of a changed listener stay open and follow the new
version from their next request; only connections of a removed or moved listener drain.

The server state follows Envoy's ``/server_info``: PRE_INITIALIZING before ``start()``,
INITIALIZING until the first config, LIVE, then DRAINING during ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from proxy.admin import AdminServer
from proxy.config.bootstrap import BootstrapConfig
from proxy.config.compile import CompiledConfig, compile_resources
from proxy.config.observability import ObservabilityConfig
from proxy.config.protojson import ConfigError
from proxy.context import ProxyContext
from proxy.listener import ListenerHandle
from proxy.observe.observability import Observability
from proxy.observe.stats import Stats

PRE_INITIALIZING, INITIALIZING, LIVE, DRAINING = (
    "PRE_INITIALIZING",
    "INITIALIZING",
    "LIVE",
    "DRAINING",
)
_STATE_GAUGE = {LIVE: 0, DRAINING: 1, PRE_INITIALIZING: 2, INITIALIZING: 3}
WARMING_TIMEOUT = 5.0


class ProxyServer:
    """The data plane: listeners, clusters, stats and the admin endpoint."""

    def __init__(
        self,
        *,
        admin_address: tuple[str, int] | None = ("0.0.0.0", 9901),
        node: dict[str, Any] | None = None,
        observability: ObservabilityConfig | None = None,
        reuse_port: bool = False,
        bootstrap: BootstrapConfig | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.node = node or (bootstrap.node if bootstrap else {})
        self._reuse_port = reuse_port
        self._observability_config = observability or (
            bootstrap.observability if bootstrap else None
        )
        self.observability: Observability | None = None
        self.state = PRE_INITIALIZING
        self.started_at = time.time()
        self.listeners: dict[str, ListenerHandle] = {}
        self._admin_address = admin_address
        self._admin: AdminServer | None = None
        self._ctx: ProxyContext | None = None
        self._lock = asyncio.Lock()

    # -- accessors --------------------------------------------------------------------------
    @property
    def ctx(self) -> ProxyContext:
        if self._ctx is None:
            raise RuntimeError("ProxyServer.start() has not been called")
        return self._ctx

    @property
    def config(self) -> CompiledConfig:
        return self.ctx.config

    @property
    def version(self) -> str:
        return self.ctx.config.version

    @property
    def stats(self) -> Stats:
        return self.ctx.stats

    @property
    def admin_address(self) -> tuple[str, int] | None:
        return self._admin.bound if self._admin is not None else None

    def listener_address(self, name: str) -> tuple[str, int]:
        """Where listener ``name`` is bound (the real port when configured as 0)."""
        return self.listeners[name].bound

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the runtime and open the admin endpoint; listeners come with ``apply``."""
        loop = asyncio.get_running_loop()
        events = self.bootstrap.outlier_event_log if self.bootstrap else None
        self._ctx = ProxyContext(loop, reuse_port=self._reuse_port, outlier_event_log=events)
        server_stats = self._ctx.stats.scope("server")
        server_stats.gauge_fn("state", lambda: _STATE_GAUGE[self.state])
        server_stats.gauge_fn("live", lambda: int(self.state == LIVE))
        server_stats.gauge_fn("uptime", lambda: int(time.time() - self.started_at))
        server_stats.gauge_fn("total_connections", lambda: len(self.ctx.connections))
        ctx = self._ctx
        self.observability = Observability(
            self._observability_config, loop, ctx.stats, ctx.connections
        )
        ctx.tracer, ctx.metrics = self.observability.tracer, self.observability.metrics
        self.observability.start()
        self.state = INITIALIZING
        if self._admin_address is not None:
            access_log = self.bootstrap.admin_access_log if self.bootstrap else None
            self._admin = AdminServer(self, access_log)
            await self._admin.start(*self._admin_address)

    async def apply(self, resources: list[dict[str, Any]], version: str) -> None:
        """Make ``resources`` the running config; raises ``ConfigError`` to NACK."""
        compiled = compile_resources(resources, version)
        async with self._lock:
            opened = await self._bind_new_listeners(compiled)
            warming = self.ctx.clusters.update(compiled)
            if warming:
                await asyncio.wait(
                    [asyncio.ensure_future(w) for w in warming], timeout=WARMING_TIMEOUT
                )
            self.ctx.config = compiled
            self._reconcile_listeners(compiled, opened)
            if self.state == INITIALIZING:
                self.state = LIVE

    async def _bind_new_listeners(self, compiled: CompiledConfig) -> dict[str, ListenerHandle]:
        """Open every listener that needs a new socket, all or nothing."""
        opened: dict[str, ListenerHandle] = {}
        for name, config in compiled.listeners.items():
            current = self.listeners.get(name)
            if not config.bind_to_port:
                continue
            if current is not None and current.config.address == config.address:
                continue
            handle = ListenerHandle(self.ctx, config)
            try:
                await handle.open()
            except OSError as exc:
                for other in opened.values():
                    other.close()
                raise ConfigError(f"listener {name}: cannot bind {config.address}: {exc}") from exc
            opened[name] = handle
        return opened

    def _reconcile_listeners(
        self, compiled: CompiledConfig, opened: dict[str, ListenerHandle]
    ) -> None:
        for name, handle in list(self.listeners.items()):
            config = compiled.listeners.get(name)
            if config is None or name in opened or not config.bind_to_port:
                handle.close()
                del self.listeners[name]
            else:
                handle.update(config)
        self.listeners.update(opened)

    async def stop(self, drain_seconds: float = 0.0) -> None:
        """Stop accepting, let in-flight requests finish for up to ``drain_seconds``, close."""
        if self._ctx is None:
            return
        ctx = self._ctx
        self.state = DRAINING
        for handle in self.listeners.values():
            handle.close()
        self.listeners.clear()
        for conn in list(ctx.connections):
            conn.drain()
        deadline = ctx.loop.time() + drain_seconds
        while ctx.connections and ctx.loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(ctx.connections):
            transport = getattr(conn, "transport", None)
            if transport is not None:
                transport.abort()
        ctx.clusters.close()
        for _ in range(3):  # let aborted transports deliver connection_lost (and log)
            await asyncio.sleep(0)
        ctx.access_logs.close()
        if self.observability is not None:
            await self.observability.stop()
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.stop()
            self._admin = None
        ctx.timers.close()

    def flush_access_logs(self) -> None:
        """Write buffered access-log lines now (they otherwise flush every second)."""
        self.ctx.access_logs.flush()
