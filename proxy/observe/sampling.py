"""X-Ray local sampling: the decision a proxy makes for a request that arrives undecided.

Envoy's X-Ray tracer used X-Ray's *local* rules, never the centralized ones: a manifest
(``XRAY_SAMPLING_RULE_MANIFEST``, the SDKs' JSON format) or the default rule, which keeps
the first request each second (``fixed_target`` 1, the reservoir) and then a fixed
``rate`` of the rest (``XRAY_SAMPLING_RATE``, 5%). Rules match ``host``, ``http_method``
and ``url_path`` with X-Ray's wildcards (``*`` any run, ``?`` one character); the first
rule that matches decides, else the default does. Version 1 manifests name the host
``service_name``, as the SDKs' older format did.

A malformed manifest is not fatal: Envoy logged it and used the default rule, so do we.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.config.observability import TracingConfig

log = logging.getLogger("appmesh_proxy.sampling")


def wildcard(pattern: str) -> Callable[[str], bool]:
    """X-Ray's case-insensitive glob: ``*`` matches any run, ``?`` one character."""
    if pattern == "*":
        return lambda _value: True
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    fullmatch = re.compile(regex, re.IGNORECASE | re.DOTALL).fullmatch
    return lambda value: fullmatch(value) is not None


@dataclass
class SamplingRule:
    """One rule with its own reservoir: ``fixed_target`` requests a second, then ``rate``."""

    fixed_target: int
    rate: float
    host: str = "*"
    http_method: str = "*"
    url_path: str = "*"
    _matchers: tuple[Callable[[str], bool], ...] = field(init=False, repr=False)
    _second: int = field(default=-1, init=False, repr=False)
    _taken: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._matchers = (
            wildcard(self.host),
            wildcard(self.http_method),
            wildcard(self.url_path),
        )

    def matches(self, host: str, method: str, path: str) -> bool:
        match_host, match_method, match_path = self._matchers
        return match_host(host) and match_method(method) and match_path(path)

    def sample(self, now: float, draw: Callable[[], float] = random.random) -> bool:
        """Take from this second's reservoir if any is left, else sample at ``rate``."""
        second = int(now)
        if second != self._second:
            self._second, self._taken = second, 0
        if self._taken < self.fixed_target:
            self._taken += 1
            return True
        return draw() < self.rate


class Sampler:
    """The rules of one proxy, first match wins, then the default rule."""

    def __init__(self, rules: list[SamplingRule], default: SamplingRule) -> None:
        self.rules = rules
        self.default = default

    def decide(self, host: str, method: str, path: str) -> bool:
        now = time.monotonic()
        for rule in self.rules:
            if rule.matches(host, method, path):
                return rule.sample(now)
        return self.default.sample(now)

    @classmethod
    def from_config(cls, config: TracingConfig) -> Sampler:
        """The bootstrap's ``sampling_rule_manifest``: inline (what ``XRAY_SAMPLING_RATE``
        becomes), a file, or X-Ray's default rule."""
        if config.manifest is not None:
            try:
                return cls.from_manifest(config.manifest)
            except ValueError as exc:
                log.warning("sampling_rule_manifest: %s; using the default rule", exc)
        return cls.from_settings(config.sampling_rate, config.manifest_path)

    @classmethod
    def from_settings(cls, rate: float, manifest_path: str | None) -> Sampler:
        """The manifest when one is named and valid, else the default rule at ``rate``."""
        fallback = cls([], SamplingRule(1, rate))
        if not manifest_path:
            return fallback
        try:
            with open(manifest_path, encoding="utf-8") as handle:
                return cls.from_manifest(json.load(handle))
        except (OSError, ValueError) as exc:
            log.warning(
                "XRAY_SAMPLING_RULE_MANIFEST %s: %s; using the default rule", manifest_path, exc
            )
            return fallback

    @classmethod
    def from_manifest(cls, manifest: Any) -> Sampler:
        """A parsed manifest; raises ``ValueError`` naming what is wrong with it."""
        if not isinstance(manifest, dict) or manifest.get("version") not in (1, 2):
            raise ValueError("the manifest needs a version of 1 or 2")
        host_key = "service_name" if manifest["version"] == 1 else "host"
        default = manifest.get("default")
        if not isinstance(default, dict):
            raise ValueError("the manifest needs a default rule")
        rules = [_rule(spec, host_key) for spec in manifest.get("rules") or ()]
        return cls(rules, _rule(default, None))


def _rule(spec: Any, host_key: str | None) -> SamplingRule:
    if not isinstance(spec, dict):
        raise ValueError(f"a rule must be an object: {spec!r}")
    try:
        fixed_target = int(spec["fixed_target"])
        rate = float(spec["rate"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"a rule needs fixed_target and rate: {spec!r}") from None
    if fixed_target < 0 or not 0 <= rate <= 1:
        raise ValueError(f"fixed_target must be >= 0 and rate within 0..1: {spec!r}")
    if host_key is None:
        return SamplingRule(fixed_target, rate)
    return SamplingRule(
        fixed_target,
        rate,
        host=str(spec.get(host_key, "*")),
        http_method=str(spec.get("http_method", "*")),
        url_path=str(spec.get("url_path", "*")),
    )
