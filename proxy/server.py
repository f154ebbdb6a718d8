"""``ProxyServer``: the sidecar's lifecycle and its config versions.

``apply(resources, version)`` compiles a complete resource set (raising ``ConfigError``
for what Envoy would NACK as a whole), binds any new listener addresses first (a
listener that cannot bind is refused alone, as one that does not compile: it keeps the
version it runs, or is left out, and the reason goes back with the refusals), updates
clusters and waits briefly for new clusters' first health checks (Envoy's warming), then
swaps the compiled config in one assignment and retires listeners that went away.
Requests already in flight keep the config they started with. Open connections of a
filter chain the update kept stay open (routes come over RDS and clusters by name, so
they follow the new version from their next request); those of a changed or removed
chain, listener or address drain, and are closed after the drain time
(``drain_seconds``: ``--drain-time-s``, LISTENER_DRAIN_WAIT_TIME_S), as in Envoy
(``proxy.listener_drain``).

Secrets from the local SDS agent (App Mesh's ``sds`` sources, SPIRE) are watched by
``proxy.sds_client``, started when a config first names one. A listener or cluster
waiting for one warms (``CompiledConfig.warming_*``): a new one is not bound or not
created, an updated one keeps serving its previous version. Each accepted change of the
agent's secrets compiles the current resources again (same version): warming listeners
and clusters go live, rotated certificates apply to new connections.

The server state follows Envoy's ``/server_info``: PRE_INITIALIZING before ``start()``,
INITIALIZING until the first config, LIVE, then DRAINING during ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from envoy_bootstrap.envoy_types import LISTENER
from proxy.admin import AdminServer
from proxy.config.bootstrap import BootstrapConfig, SdsAgent
from proxy.config.compile import CompiledConfig, compile_resources
from proxy.config.observability import ObservabilityConfig
from proxy.config.protojson import ConfigError
from proxy.config.tls import local_secret_names
from proxy.context import ProxyContext
from proxy.listener import ListenerHandle
from proxy.listener_drain import ListenerDrains
from proxy.observe.observability import Observability
from proxy.observe.stats import Stats
from proxy.sds_client import SdsAgentClient

log = logging.getLogger(__name__)
PRE_INITIALIZING, INITIALIZING, LIVE, DRAINING = (
    "PRE_INITIALIZING",
    "INITIALIZING",
    "LIVE",
    "DRAINING",
)
_STATE_GAUGE = {LIVE: 0, DRAINING: 1, PRE_INITIALIZING: 2, INITIALIZING: 3}
WARMING_TIMEOUT = 5.0
DRAIN_SECONDS = 20.0  # App Mesh's LISTENER_DRAIN_WAIT_TIME_S default


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
        sds_agent: SdsAgent | None = None,
        drain_seconds: float = DRAIN_SECONDS,
    ) -> None:
        self.bootstrap = bootstrap
        self.drain_seconds = drain_seconds
        self.sds_agent = sds_agent or (bootstrap.sds_agent if bootstrap else None)
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
        self._drains: ListenerDrains | None = None
        self._lock = asyncio.Lock()
        self.sds: SdsAgentClient | None = None
        self._reapply: asyncio.Task[None] | None = None
        self._warming: dict[str, str] = {}

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
    def drains(self) -> ListenerDrains:
        if self._drains is None:
            raise RuntimeError("ProxyServer.start() has not been called")
        return self._drains

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
        self._drains = ListenerDrains(loop, self._ctx.stats, self.drain_seconds)
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

    async def apply(
        self, resources: list[dict[str, Any]], version: str
    ) -> Mapping[str, Mapping[str, str]]:
        """Make ``resources`` the running config; raises ``ConfigError`` to NACK it all.

        Returns the listeners and clusters left out or kept at their previous version
        because they do not compile (type URL -> name -> reason): the rest is live, and
        the xDS client NACKs the update with those reasons, as Envoy does."""
        async with self._lock:
            return await self._apply_locked(resources, version)

    async def _apply_locked(
        self, resources: list[dict[str, Any]], version: str
    ) -> Mapping[str, Mapping[str, str]]:
        names = set(local_secret_names(resources))
        sds = self._sds_client(names)
        compiled = compile_resources(
            resources,
            version,
            local_secrets=sds.secrets if sds else None,
            agent_cluster=sds.agent.cluster if sds else "",
            previous=self._ctx.config if self._ctx else None,
        )
        opened, unbound = await self._bind_new_listeners(compiled)
        if unbound:
            compiled = self._without_unbound(compiled, unbound)
        warming = self.ctx.clusters.update(compiled)
        if warming:
            await asyncio.wait([asyncio.ensure_future(w) for w in warming], timeout=WARMING_TIMEOUT)
        self.ctx.config = compiled
        self._reconcile_listeners(compiled, opened)
        if self.state == INITIALIZING:
            self.state = LIVE
        self._log_warming(compiled)
        return compiled.refused

    def _sds_client(self, names: set[str]) -> SdsAgentClient | None:
        """The local SDS agent's client, created when a config first names its secrets."""
        agent = self.sds_agent
        if agent is None or (self.sds is None and not names):
            return self.sds
        if self.sds is None:
            self.sds = SdsAgentClient(agent, self.node, self._secrets_changed, stats=self.stats)
        self.sds.watch(names)
        return self.sds

    def _secrets_changed(self) -> None:
        """The agent sent new secrets: compile the current resources again with them."""
        if self._reapply is None or self._reapply.done():
            self._reapply = asyncio.get_running_loop().create_task(self._recompile())

    async def _recompile(self) -> None:
        async with self._lock:
            config = self.ctx.config
            try:
                refused = await self._apply_locked(
                    [dict(r) for r in config.resources], config.version
                )
            except ConfigError as exc:
                log.warning("sds: new secrets not applied: %s", exc)
                return
            for reasons in refused.values():  # already NACKed when its version came
                for name, why in reasons.items():
                    log.debug("sds: %s kept as it was: %s", name, why)

    def _log_warming(self, compiled: CompiledConfig) -> None:
        """One line per listener or cluster that starts or stops warming."""
        previous = self._warming
        now = {
            **{f"listener {n}": why for n, why in compiled.warming_listeners.items()},
            **{f"cluster {n}": why for n, why in compiled.warming_clusters.items()},
        }
        for what, why in now.items():
            if previous.get(what) != why:
                status = self.sds.status if self.sds else "no SDS agent"
                quietly = status == "not connected yet"  # the usual start: it answers soon
                log.log(logging.INFO if quietly else logging.WARNING,
                        "%s warming: %s (agent %s)", what, why, status)  # fmt: skip
        for what in previous.keys() - now.keys():
            log.info("%s warmed: its SDS secrets arrived", what)
        self._warming = now

    async def _bind_new_listeners(
        self, compiled: CompiledConfig
    ) -> tuple[dict[str, ListenerHandle], dict[str, str]]:
        """Open every listener that needs a new socket; returns those opened and, by name,
        why each of the others could not bind.

        Envoy binds each listener of an update on its own: one whose address is taken
        (or not the machine's) fails alone, with ``listener_manager.listener_create_failure``
        counted and "cannot bind" in the NACK, and the other listeners go live."""
        opened: dict[str, ListenerHandle] = {}
        unbound: dict[str, str] = {}
        for name, config in compiled.listeners.items():
            current = self.listeners.get(name)
            if not config.bind_to_port:
                continue
            if current is not None and current.config.address == config.address:
                continue
            handle = ListenerHandle(self.ctx, config, self.drains)
            try:
                await handle.open()
            except OSError as exc:
                host, port = config.address
                why = exc.strerror or str(exc)
                unbound[name] = f"listener {name}: cannot bind '{host}:{port}': {why}"
                self.drains.stats.counters["listener_create_failure"] += 1
                log.error("listener '%s' failed to bind or apply socket options: %s", name, why)
                continue
            opened[name] = handle
        return opened, unbound

    def _without_unbound(self, compiled: CompiledConfig, unbound: dict[str, str]) -> CompiledConfig:
        """``compiled`` with each listener that could not bind back at the version this
        proxy runs (still bound where it was), or left out, and the reasons among the
        refusals, as for a listener that does not compile."""
        listeners = dict(compiled.listeners)
        running = self.ctx.config.listeners
        for name in unbound:
            if name in self.listeners and name in running:
                listeners[name] = running[name]
            else:
                listeners.pop(name, None)
        refused = {kind: dict(names) for kind, names in compiled.refused.items()}
        refused.setdefault(LISTENER, {}).update(unbound)
        return dataclasses.replace(
            compiled,
            listeners=MappingProxyType(listeners),
            refused=MappingProxyType({k: MappingProxyType(v) for k, v in refused.items()}),
        )

    def _reconcile_listeners(
        self, compiled: CompiledConfig, opened: dict[str, ListenerHandle]
    ) -> None:
        """Update the listeners that stay, drain the ones removed or moved (Envoy's
        ``listener_manager.listener_*`` counters)."""
        counters = self.drains.stats.counters
        counters["listener_added"] += len(opened.keys() - self.listeners.keys())
        for name, handle in list(self.listeners.items()):
            config = compiled.listeners.get(name)
            if config is None or name in opened or not config.bind_to_port:
                handle.close()
                del self.listeners[name]
                counters["listener_modified" if name in opened else "listener_removed"] += 1
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
        self.drains.close()
        ctx.clusters.close()
        if self.sds is not None:
            await self.sds.stop()
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
