"""What every xDS transport of the proxy shares: the subscriptions, warming, applying,
ACK/NACK verdicts, and failing over between control-plane replicas.

The proxy has two transports (``rest.py``: REST-JSON State of the World, long-polled;
``delta.py``: incremental ADS over gRPC). They differ in how a response arrives and how
the verdict goes back; what a response *means* is decided here, once:

* Listeners and clusters are wildcard subscriptions; routes, endpoints and secrets
  follow the names the current listeners and clusters reference (``_resubscribe``), and
  a transport is told when those names change (``_names_changed``).
* Responses that arrive together are applied together after a short settle delay, and an
  update that references routes, endpoints or secrets not yet received waits (bounded by
  ``warm_timeout``) for them, the way Envoy warms clusters and listeners.
* A listener, route configuration or cluster this proxy cannot serve (unsupported, does
  not compile, or, for a listener, cannot bind) keeps its last accepted version, or is
  left out, while the rest goes live, and the update is NACKed with the reasons; a
  malformed update is NACKed whole and the last good config stays.
* Several endpoints are replicas of one control plane: the first failure on the current
  one moves every caller to the next at once; back-off (jittered, exponential) starts
  only when each endpoint has failed in a row.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envoy_bootstrap.envoy_types import (
    CLUSTER,
    CLUSTER_LOAD_ASSIGNMENT,
    LISTENER,
    ROUTE_CONFIGURATION,
    SECRET,
)
from proxy.config import unsupported
from proxy.config.protojson import ConfigError, objects_in, type_url
from proxy.observe.stats import Stats

log = logging.getLogger(__name__)

KINDS = {
    "listeners": LISTENER,
    "clusters": CLUSTER,
    "routes": ROUTE_CONFIGURATION,
    "endpoints": CLUSTER_LOAD_ASSIGNMENT,
    "secrets": SECRET,
}
WILDCARD_KINDS = ("listeners", "clusters")
REFERENCED_KINDS = ("routes", "endpoints", "secrets")
INVALID_ARGUMENT = 3  # google.rpc.Code

#: What applying refused of a live update, by type URL: name -> reason (``None``: nothing).
Refusals = Mapping[str, Mapping[str, str]]
Apply = Callable[[list[dict[str, Any]], str], Awaitable[Refusals | None]]
Resources = dict[str, dict[str, Any]]


@dataclass
class Subscription:
    """One resource type: what was accepted, and what the next request must say."""

    kind: str
    type_url: str
    names: tuple[str, ...] = ()
    version: str = ""  # last accepted version_info (system_version_info on delta)
    nonce: str = ""
    resources: Resources = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # delta: per-resource, accepted
    pending_versions: dict[str, str] | None = None  # delta: what ``staged`` would make them
    received: bool = False
    error: dict[str, Any] | None = None
    force_refresh: bool = False
    task: asyncio.Task[None] | None = None
    staged: tuple[str, str, Resources] | None = None
    awaiting: set[str] = field(default_factory=set)  # newly referenced, not yet answered
    rejected: tuple[str, dict[str, Any]] | None = None  # (version, error_detail) last NACKed
    refused: dict[str, str] = field(default_factory=dict)  # staged, can't serve: name -> why
    verdict: asyncio.Future[bool] | None = None


def endpoint_urls(endpoint: str | Sequence[str]) -> list[str]:
    """One ``host:port`` or URL, or several (replicas, in failover order) -> URLs."""
    listed = [endpoint] if isinstance(endpoint, str) else list(endpoint)
    return [(one if "://" in one else f"http://{one}").rstrip("/") for one in listed]


class DiscoveryState:
    """The transport-neutral half of an xDS client; ``rest.XdsClient`` and
    ``delta.DeltaClient`` are the two transports built on it."""

    #: The stats scope's transport-specific counters (``control_plane.<name>``).
    COUNTERS: tuple[str, ...] = ()

    def __init__(
        self,
        endpoints: Sequence[str],
        node: dict[str, Any],
        apply: Apply,
        *,
        stats: Stats | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        settle_seconds: float = 0.05,
        warm_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        agent_cluster: str = "",
    ) -> None:
        if not endpoints:
            raise ValueError("an xDS client needs at least one control-plane endpoint")
        self.endpoints = tuple(endpoints)
        self._current = 0
        self.failovers = 0
        self.connect_timeout = connect_timeout
        self.agent_cluster = agent_cluster  # the bootstrap's local SDS agent ("": none)
        self.node = node
        self.apply = apply
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.settle_seconds = settle_seconds
        self.warm_timeout = warm_timeout
        self.connected = False
        self._unreachable = False  # reported as unreachable, not yet reachable again
        self.first_applied = asyncio.Event()
        self.subs = {kind: Subscription(kind, url) for kind, url in KINDS.items()}
        self._applier: asyncio.Task[None] | None = None
        self._warm_deadline: float | None = None
        self.counters: dict[str, int] = dict.fromkeys(self.COUNTERS, 0)
        if stats is not None:
            scope = stats.scope("control_plane", counters=self.COUNTERS)
            scope.gauge_fn("connected_state", lambda: int(self.connected))
            self.counters = scope.counters

    @property
    def endpoint(self) -> str:
        """The control-plane replica talked to now."""
        return self.endpoints[self._current]

    async def start(self) -> None:
        """Subscribe (listeners and clusters first) and keep in step until ``stop``."""
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    # -- reaching the control plane ---------------------------------------------------------
    def _reached(self, *, answered: bool = True) -> None:
        """Connected (``answered=False``: the connection only, before any response).
        "reachable again" waits for an answer: a replica that takes the connection and
        refuses every stream is not reachable, and its retries stay quiet."""
        self.connected = True
        if self._unreachable and answered:
            self._unreachable = False
            log.info("xds: control plane %s reachable again", self.endpoint)

    def _lost(self, what: str, exc: Exception, reason: object = None) -> None:
        """One warning when the control plane goes away, not one per request and retry."""
        self.connected = False
        if self._unreachable:
            log.debug("xds %s: %s", what, exc)
            return
        self._unreachable = True
        log.warning(
            "xds: control plane %s unreachable (%s: %s); serving the last good config and retrying",
            self.endpoint,
            what,
            reason or exc or type(exc).__name__,
        )

    def _fail_over(self, used: str, exc: Exception) -> bool:
        """Whether the next request goes to another endpoint than ``used``.

        The first caller to fail on the current endpoint moves them all to the next one;
        a caller whose failure was on an endpoint already left just follows.
        """
        if self.endpoint != used:
            return True
        if len(self.endpoints) == 1:
            return False
        self._current = (self._current + 1) % len(self.endpoints)
        self.failovers += 1
        log.warning(
            "xds: leaving control plane %s (%s); failing over to %s",
            used,
            exc or type(exc).__name__,
            self.endpoint,
        )
        return True

    def _backoff(self, attempt: int) -> float:
        """Jittered exponential back-off, ``backoff_base`` doubling up to ``backoff_max``."""
        delay = min(self.backoff_max, self.backoff_base * 2 ** min(attempt - 1, 10))
        return delay * (0.5 + random.random() / 2)

    # -- staging one response ---------------------------------------------------------------
    async def _stage(
        self,
        sub: Subscription,
        version: str,
        nonce: str,
        resources: Resources,
        answered: set[str] | None = None,
    ) -> bool:
        """Hand a type's complete new set to the applier and wait for the verdict.

        ``answered`` are the names this response settles (``None``: all of the type, as a
        State-of-the-World response does); names still awaited keep an update warming.
        """
        sub.refused = self._refuse_unsupported(sub, resources)
        sub.staged = (version, nonce, resources)
        if answered is None:
            sub.awaiting.clear()
        else:
            sub.awaiting -= answered
        sub.verdict = asyncio.get_running_loop().create_future()
        self._schedule_apply()
        return await asyncio.shield(sub.verdict)

    def _refuse_unsupported(self, sub: Subscription, resources: Resources) -> dict[str, str]:
        """Take out the listeners and clusters this proxy cannot serve (TLS, HTTP/2, ...);
        the reason for each, by name.

        As Envoy does with a resource it cannot load, each keeps its last accepted version
        (or is left out) while the rest of the update goes live, and the update is NACKed
        with every reason, so nothing runs downgraded and nothing else is held back.
        """
        reasons = {}
        for name, resource in list(resources.items()):
            reason = self._problem(sub.type_url, resource)
            if reason is None:
                continue
            reasons[name] = reason
            previous = sub.resources.get(name)
            if previous is not None and self._problem(sub.type_url, previous) is not None:
                previous = None
            _put_back(resources, name, previous)
        return reasons

    def _problem(self, kind: str, resource: dict[str, Any]) -> str | None:
        return unsupported.problem(kind, resource, agent_cluster=self.agent_cluster)

    # -- applying ---------------------------------------------------------------------------
    def _schedule_apply(self) -> None:
        if self._applier is None or self._applier.done():
            self._applier = asyncio.get_running_loop().create_task(self._apply_staged())

    def _merged(self) -> dict[str, Resources]:
        return {k: s.staged[2] if s.staged else s.resources for k, s in self.subs.items()}

    async def _apply_staged(self) -> None:
        await asyncio.sleep(self.settle_seconds)
        if not any(s.staged is not None for s in self.subs.values()):
            return
        if self._resubscribe(self._merged()) and not self._warm_expired():
            # Wait for the newly referenced routes/endpoints; their response re-triggers us.
            self._applier = None
            return
        self._warm_deadline = None
        for sub in self.subs.values():
            sub.awaiting.clear()  # answered, or waited for long enough
        staged = [s for s in self.subs.values() if s.staged is not None]
        merged = self._merged()
        resources = [r for kind in KINDS for r in merged[kind].values()]
        try:
            refused = await self.apply(resources, self._combined_version())
        except Exception as exc:  # ConfigError, or any failure: NACK and keep the old config
            log.warning("xds: rejecting update: %s", exc, exc_info=not isinstance(exc, ConfigError))
            self._settle(staged, accepted=False, message=str(exc))
            return
        self._take_refused(staged, refused or {})
        self._settle(staged, accepted=True)
        for sub in self.subs.values():
            # A rejection may have been another type's fault: let every type try again.
            if not sub.refused:
                sub.rejected = None
        self.first_applied.set()

    def _take_refused(self, staged: list[Subscription], refused: Refusals) -> None:
        """Resources the proxy could not compile (or listeners it could not bind), though
        the rest went live: each staged one is put back to its last accepted version (or
        left out), as ``_refuse_unsupported`` does, and its reason joins the update's
        NACK. A refusal of a type not in this update (a new secret, say) is this update's
        to report."""
        for kind_url, reasons in refused.items():
            sub = next((s for s in self.subs.values() if s.type_url == kind_url), None)
            if sub is None or sub.staged is None:
                for other in staged:
                    other.refused.update(reasons)
                continue
            resources = sub.staged[2]
            for name, reason in reasons.items():
                sub.refused[name] = reason
                _put_back(resources, name, sub.resources.get(name))

    def _settle(self, staged: list[Subscription], accepted: bool, message: str = "") -> None:
        for sub in staged:
            assert sub.staged is not None
            version, nonce, resources = sub.staged
            sub.nonce = nonce
            if accepted and sub.refused:
                # Applied without what it could not serve: live, but NACKed with the reasons.
                message = "; ".join(sub.refused.values())
                log.warning("xds: refusing part of %s version %s: %s", sub.kind, version, message)
                sub.resources, sub.received = resources, True
                sub.error = {"code": INVALID_ARGUMENT, "message": message}
                sub.rejected = (version, sub.error)
            elif accepted:
                sub.version, sub.resources, sub.received = version, resources, True
                sub.rejected = None
            else:
                sub.error = {"code": INVALID_ARGUMENT, "message": message}
                sub.rejected = (version, sub.error)
            if accepted and sub.pending_versions is not None:
                sub.versions = _held_versions(sub, resources)
            sub.pending_versions = None
            sub.staged = None
            if sub.verdict is not None and not sub.verdict.done():
                sub.verdict.set_result(accepted)
        if not accepted:
            self._resubscribe({k: s.resources for k, s in self.subs.items()})

    def _combined_version(self) -> str:
        versions = {
            kind: (s.staged[0] if s.staged else s.version)
            for kind, s in self.subs.items()
            if s.staged or s.received
        }
        distinct = set(versions.values())
        if len(distinct) == 1:
            return distinct.pop()
        return ",".join(f"{kind}:{v}" for kind, v in versions.items())

    def _resubscribe(self, merged: dict[str, Resources]) -> bool:
        """Follow references to routes/endpoints/secrets; True if an update must wait.

        It waits for names referenced for the first time (and, at start-up, for both
        listeners and clusters) so a new listener never goes live without its routes.
        Names the control plane already answered without are not waited for again.
        """
        wanted = referenced_names(merged)
        wait = any(not (self.subs[k].received or self.subs[k].staged) for k in WILDCARD_KINDS)
        for kind, names in wanted.items():
            sub = self.subs[kind]
            ordered = tuple(sorted(names))
            if ordered == sub.names:
                continue
            added = names - set(sub.names)
            removed = set(sub.names) - names
            sub.names = ordered
            self._names_changed(sub, added, removed)
            sub.awaiting |= added - set(merged[kind])
            sub.awaiting &= names
        return wait or any(self.subs[k].awaiting for k in REFERENCED_KINDS)

    def _names_changed(self, sub: Subscription, added: set[str], removed: set[str]) -> None:
        """The transport asks for ``sub.names`` from now on (``added`` and ``removed``
        being what changed)."""
        raise NotImplementedError

    def _warm_expired(self) -> bool:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._warm_deadline is None:
            self._warm_deadline = now + self.warm_timeout
            loop.call_later(self.warm_timeout + 0.01, self._schedule_apply)
        return now >= self._warm_deadline


def _put_back(resources: Resources, name: str, previous: dict[str, Any] | None) -> None:
    """A refused resource in a staged set: its last accepted version in its place, or
    none (left out)."""
    if previous is not None:
        resources[name] = previous
    else:
        resources.pop(name, None)


def _held_versions(sub: Subscription, resources: Resources) -> dict[str, str]:
    """Delta: the per-resource versions once ``resources`` (the staged set) went live.

    A refused resource keeps the version of what is still served in its place (the
    previous one, or none when it is left out), not the version that was refused: the
    versions go back to the control plane as ``initial_resource_versions`` after a
    reconnect, and must not claim what the proxy never took.
    """
    assert sub.pending_versions is not None
    versions = dict(sub.pending_versions)
    for name in sub.refused:
        previous = sub.versions.get(name)
        if name in resources and previous is not None:
            versions[name] = previous
        else:
            versions.pop(name, None)
    return versions


# -- resources and the names they reference ---------------------------------------------------
def resource_name(sub: Subscription, resource: Any) -> str:
    """The name a resource of ``sub``'s type is known by; ``ConfigError`` if it has none
    or is of another type."""
    key = "cluster_name" if sub.kind == "endpoints" else "name"
    if not isinstance(resource, dict) or type_url(resource) != sub.type_url:
        kind = type_url(resource) if isinstance(resource, dict) else type(resource).__name__
        raise ConfigError(f"{sub.kind}: unexpected resource type {kind!r}")
    name = resource.get(key)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{sub.kind}: resource without {key}")
    return name


def by_name(sub: Subscription, resources: list[Any]) -> Resources:
    return {resource_name(sub, resource): resource for resource in resources}


def referenced_names(merged: dict[str, Resources]) -> dict[str, set[str]]:
    """The routes, endpoints and secrets the listeners and clusters of ``merged`` name."""
    listeners, clusters = merged["listeners"].values(), merged["clusters"].values()
    return {
        "routes": set(route_names(listeners)),
        "endpoints": set(eds_names(clusters)),
        "secrets": set(secret_names([*listeners, *clusters])),
    }


def route_names(listeners: Any) -> Iterator[str]:
    """RDS names referenced by HTTP connection managers."""
    for node in objects_in(list(listeners)):
        rds = node.get("rds")
        if "stat_prefix" in node and isinstance(rds, dict) and rds.get("route_config_name"):
            yield str(rds["route_config_name"])


def eds_names(clusters: Any) -> Iterator[str]:
    for cluster in clusters:
        if cluster.get("type") == "EDS":
            eds = cluster.get("eds_cluster_config") or {}
            yield str(eds.get("service_name") or cluster.get("name"))


def secret_names(resources: list[Any]) -> Iterator[str]:
    """Names of the SDS secrets the control plane sends (``SdsSecretConfig``: a ``name``
    next to ``sds_config: {ads: {}}``); a local SDS agent's are ``proxy.sds_client``'s."""
    for node in objects_in(resources):
        config = node.get("sds_config")
        if isinstance(config, dict) and "ads" in config and isinstance(node.get("name"), str):
            yield node["name"]
