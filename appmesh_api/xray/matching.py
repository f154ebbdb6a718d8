"""Testing traces against parsed filter expressions (see ``filters`` for the language).

At the top level a filter describes the whole trace: ``ok``/``error``/``fault``,
``responsetime`` and ``http.*`` are the root segment's, ``duration`` the trace's, ``throttle``
and ``partial`` any segment's, ``user`` and ``annotation.*`` any segment's values. Inside
``service(...) { }`` or ``edge(...) { }`` the same keywords describe one request that service
served or that edge carried, and the scope matches when any such request does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from appmesh_api.xray.analysis import Analysis, Observation
from appmesh_api.xray.errors import InvalidRequestException
from appmesh_api.xray.filters import (
    BOOLEAN_KEYWORDS,
    Both,
    Compare,
    EdgeScope,
    Either,
    Expr,
    Not,
    ServiceScope,
    parse,
)


class Context(Protocol):
    """What a filter can ask about: a whole trace, or one request of a service or edge."""

    def flag(self, name: str) -> bool: ...
    def values(self, name: str) -> list[Any]: ...
    def scopes(self, expr: ServiceScope | EdgeScope) -> list[Context]: ...
    def in_group(self, field: str, value: str) -> bool: ...


def evaluate(expr: Expr, context: Context) -> bool:
    if isinstance(expr, Both):
        return evaluate(expr.left, context) and evaluate(expr.right, context)
    if isinstance(expr, Either):
        return evaluate(expr.left, context) or evaluate(expr.right, context)
    if isinstance(expr, Not):
        return not evaluate(expr.operand, context)
    if isinstance(expr, (ServiceScope, EdgeScope)):
        scopes = context.scopes(expr)
        if expr.body is None:
            return bool(scopes)
        return any(evaluate(expr.body, scope) for scope in scopes)
    return _compare(expr, context)


def _compare(expr: Compare, context: Context) -> bool:
    keyword = expr.keyword
    if keyword in BOOLEAN_KEYWORDS:
        value = context.flag(keyword)
        return value if expr.op is None else (value == expr.value) == (expr.op == "=")
    if keyword in ("group.name", "group.arn"):
        return context.in_group(keyword, expr.value) == (expr.op == "=")
    values = context.values(keyword)
    if expr.op is None:  # a bare annotation: present (and true, when boolean)
        return any(v is True or not isinstance(v, bool) for v in values)
    if expr.op == "!=":
        return bool(values) and not any(_test("=", v, expr.value) for v in values)
    return any(_test(expr.op, v, expr.value) for v in values)


_NUMBER_TESTS: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_STRING_TESTS: dict[str, Callable[[str, str], bool]] = {
    "=": lambda a, b: a == b,
    "CONTAINS": lambda a, b: b in a,
    "BEGINSWITH": lambda a, b: a.startswith(b),
    "ENDSWITH": lambda a, b: a.endswith(b),
}


def _test(op: str, actual: Any, wanted: Any) -> bool:
    """One value against one literal; values of another type never match."""
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return (
            isinstance(actual, bool)
            and isinstance(wanted, bool)
            and op == "="
            and (actual == wanted)
        )
    if isinstance(wanted, float):
        number = isinstance(actual, (int, float))
        return number and op in _NUMBER_TESTS and _NUMBER_TESTS[op](float(actual), wanted)
    return isinstance(actual, str) and op in _STRING_TESTS and _STRING_TESTS[op](actual, wanted)


# ----------------------------------------------------------------------------- contexts


class RequestContext:
    """One request a service served or an edge carried (inside ``{ ... }``)."""

    def __init__(self, seen: Observation) -> None:
        self.seen = seen

    def flag(self, name: str) -> bool:
        if name == "partial":
            return self.seen.end is None
        if name == "ok":
            return self.seen.end is not None and self.seen.outcome.ok
        return bool(getattr(self.seen.outcome, name))

    def values(self, name: str) -> list[Any]:
        if name in ("responsetime", "duration"):
            elapsed = self.seen.response_time
            return [] if elapsed is None else [elapsed]
        if name == "http.status":
            return [] if self.seen.status is None else [self.seen.status]
        return []

    def scopes(self, expr: ServiceScope | EdgeScope) -> list[Context]:
        return []

    def in_group(self, field: str, value: str) -> bool:
        return False


_HTTP_FIELDS = {
    "http.url": ("request", "url"),
    "http.method": ("request", "method"),
    "http.useragent": ("request", "user_agent"),
    "http.clientip": ("request", "client_ip"),
}

GroupLookup = Callable[[str, str], "Expr | Literal[True] | None"]


class TraceContext:
    """A whole trace; ``groups`` resolves ``group.name``/``group.arn`` to an expression."""

    def __init__(self, analysis: Analysis, groups: GroupLookup | None = None) -> None:
        self.analysis = analysis
        self.groups = groups

    def flag(self, name: str) -> bool:
        if name == "partial":
            return self.analysis.partial
        if name == "throttle":
            return self.analysis.has_throttle
        root = self.analysis.root_observation
        return root is not None and RequestContext(root).flag(name)

    def values(self, name: str) -> list[Any]:
        analysis, root = self.analysis, self.analysis.root_observation
        if name.startswith("annotation:"):
            return [value for value, _node in analysis.annotations.get(name[11:], ())]
        if name == "user":
            return list(analysis.users)
        if name == "duration":
            return [] if analysis.duration is None else [analysis.duration]
        if root is None:
            return []
        if name in ("responsetime", "http.status"):
            return RequestContext(root).values(name)
        part, key = _HTTP_FIELDS[name]
        value = ((analysis.root or {}).get("http") or {}).get(part, {}).get(key)
        return [value] if isinstance(value, str) else []

    def scopes(self, expr: ServiceScope | EdgeScope) -> list[Context]:
        if isinstance(expr, ServiceScope):
            nodes = [n for key, n in self.analysis.nodes.items() if expr.target.matches(key)]
            return [RequestContext(seen) for node in nodes for seen in node.observations]
        return [
            RequestContext(seen)
            for (source, destination), calls in self.analysis.edges.items()
            if expr.source.matches(source) and expr.destination.matches(destination)
            for seen in calls
        ]

    def in_group(self, field: str, value: str) -> bool:
        found = self.groups(field, value) if self.groups else None
        if found is None:
            raise InvalidRequestException(f"Group {value} does not exist")
        return found is True or evaluate(found, self)  # True: a group without a filter


def matches(analysis: Analysis, expression: str | None, groups: GroupLookup | None = None) -> bool:
    """Whether a trace passes ``expression`` (no expression passes everything)."""
    if not expression:
        return True
    return evaluate(parse(expression), TraceContext(analysis, groups))
