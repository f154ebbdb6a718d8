"""Centralized sampling: rules (GetSamplingRules and friends) and targets (GetSamplingTargets).

SDKs and Envoy poll these through the daemon: rules every 5 minutes, targets every 10
seconds with their request counts. Every account and region has X-Ray's ``Default`` rule
(1 request a second, then 5%), which can be retuned but not deleted; up to 25 more rules
can be created (X-Ray's quota).

Targets keep a simple reservoir account: a rule's reservoir is shared evenly between the
clients that reported it in the last minute; quotas live 60 s and are refreshed every 10 s.
How X-Ray itself splits a reservoir is not documented (UNCONFIRMED).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from appmesh_api.xray.errors import InvalidRequestException, RuleLimitExceededException
from appmesh_api.xray.wire import epoch

MAX_RULES = 25
DEFAULT_RULE = "Default"
TARGET_INTERVAL = 10
QUOTA_TTL = 60.0
_UPDATABLE = (
    "ResourceARN", "Priority", "FixedRate", "ReservoirSize", "Host", "ServiceName",
    "ServiceType", "HTTPMethod", "URLPath", "Attributes",
)  # fmt: skip


@dataclass
class RuleState:
    """A rule, its timestamps, and what its clients reported."""

    rule: dict[str, Any]
    created: float
    modified: float
    clients: dict[str, float] = field(default_factory=dict)  # client id -> last report
    counts: dict[str, int] = field(
        default_factory=lambda: {"RequestCount": 0, "BorrowCount": 0, "SampledCount": 0}
    )

    def record(self) -> dict[str, Any]:
        rule = dict(self.rule)
        return {"SamplingRule": rule, "CreatedAt": self.created, "ModifiedAt": self.modified}


class SamplingRules:
    """The sampling rules of one account and region."""

    def __init__(self, account: str, region: str) -> None:
        self.account, self.region = account, region
        now = time.time()
        default = {
            "RuleName": DEFAULT_RULE,
            "RuleARN": self.arn(DEFAULT_RULE),
            "ResourceARN": "*",
            "Priority": 10000,
            "FixedRate": 0.05,
            "ReservoirSize": 1,
            "ServiceName": "*",
            "ServiceType": "*",
            "Host": "*",
            "HTTPMethod": "*",
            "URLPath": "*",
            "Version": 1,
            "Attributes": {},
        }
        self._rules = {DEFAULT_RULE: RuleState(default, now, now)}

    def arn(self, name: str) -> str:
        return f"arn:aws:xray:{self.region}:{self.account}:sampling-rule/{name}"

    def records(self) -> list[dict[str, Any]]:
        ordered = sorted(
            self._rules.values(), key=lambda s: (s.rule["Priority"], s.rule["RuleName"])
        )
        return [state.record() for state in ordered]

    def saved(self) -> list[dict[str, Any]]:
        """The rules as the journal keeps them (their clients' counts start over)."""
        return [
            {"rule": state.rule, "created": state.created, "modified": state.modified}
            for state in self._rules.values()
        ]

    def restore(self, saved: list[dict[str, Any]]) -> None:
        for entry in saved:
            rule = entry["rule"]
            self._rules[rule["RuleName"]] = RuleState(rule, entry["created"], entry["modified"])

    def create(self, rule: dict[str, Any]) -> dict[str, Any]:
        name = rule.get("RuleName")
        if not name:
            raise InvalidRequestException("RuleName is required")
        if name in self._rules:
            raise InvalidRequestException(f"Sampling rule {name} already exists")
        if len(self._rules) > MAX_RULES:
            raise RuleLimitExceededException(f"An account can have at most {MAX_RULES} rules")
        if rule.get("Version") != 1:
            raise InvalidRequestException("Version must be 1")
        stored = {**rule, "RuleARN": self.arn(name), "Attributes": rule.get("Attributes") or {}}
        now = time.time()
        self._rules[name] = RuleState(stored, now, now)
        return self._rules[name].record()

    def find(self, name: str | None, arn: str | None) -> RuleState:
        if not name and not arn:
            raise InvalidRequestException("Either RuleName or RuleARN must be set")
        for state in self._rules.values():
            if state.rule["RuleName"] == name or state.rule["RuleARN"] == arn:
                return state
        raise InvalidRequestException(f"Sampling rule {name or arn} does not exist")

    def update(self, update: dict[str, Any]) -> dict[str, Any]:
        state = self.find(update.get("RuleName"), update.get("RuleARN"))
        changes = {k: update[k] for k in _UPDATABLE if update.get(k) is not None}
        if state.rule["RuleName"] == DEFAULT_RULE and set(changes) - {"FixedRate", "ReservoirSize"}:
            raise InvalidRequestException(
                "Only FixedRate and ReservoirSize of the default rule can change"
            )
        _check_ranges(changes)
        state.rule.update(changes)
        state.modified = time.time()
        return state.record()

    def delete(self, name: str | None, arn: str | None) -> dict[str, Any]:
        state = self.find(name, arn)
        if state.rule["RuleName"] == DEFAULT_RULE:
            raise InvalidRequestException("The default sampling rule cannot be deleted")
        del self._rules[state.rule["RuleName"]]
        return state.record()

    def targets(self, documents: list[dict[str, Any]]) -> dict[str, Any]:
        """GetSamplingTargets: count what clients report and hand out reservoir quotas."""
        now = time.time()
        targets, unprocessed = [], []
        for document in documents:
            state = self._rules.get(document["RuleName"])
            if state is None:
                unprocessed.append(
                    {
                        "RuleName": document["RuleName"],
                        "ErrorCode": "400",
                        "Message": "Unknown rule",
                    }
                )
                continue
            state.clients[document["ClientID"]] = epoch(document.get("Timestamp", now))
            for key in state.counts:
                state.counts[key] += int(document.get(key) or 0)
            targets.append(self._target(state, document["ClientID"], now))
        last = max(state.modified for state in self._rules.values())
        return {
            "SamplingTargetDocuments": targets,
            "LastRuleModification": last,
            "UnprocessedStatistics": unprocessed,
        }

    def _target(self, state: RuleState, client: str, now: float) -> dict[str, Any]:
        active = sorted(c for c, seen in state.clients.items() if now - seen <= QUOTA_TTL)
        active = active or [client]
        share, extra = divmod(int(state.rule["ReservoirSize"]), len(active))
        position = active.index(client) if client in active else 0
        return {
            "RuleName": state.rule["RuleName"],
            "FixedRate": state.rule["FixedRate"],
            "ReservoirQuota": share + (1 if position < extra else 0),
            "ReservoirQuotaTTL": now + QUOTA_TTL,
            "Interval": TARGET_INTERVAL,
        }

    def statistic_summaries(self) -> list[dict[str, Any]]:
        now = time.time()
        return [
            {"RuleName": name, "Timestamp": now, **state.counts}
            for name, state in self._rules.items()
        ]


def _check_ranges(changes: dict[str, Any]) -> None:
    """SamplingRuleUpdate's members are nullable, so the model states no ranges for them."""
    rate, size, priority = (changes.get(k) for k in ("FixedRate", "ReservoirSize", "Priority"))
    if rate is not None and not 0 <= rate <= 1:
        raise InvalidRequestException("FixedRate must be between 0 and 1")
    if size is not None and size < 0:
        raise InvalidRequestException("ReservoirSize must not be negative")
    if priority is not None and not 1 <= priority <= 9999:
        raise InvalidRequestException("Priority must be between 1 and 9999")
