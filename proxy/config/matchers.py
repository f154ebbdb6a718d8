"""Envoy's string, header and query-parameter matchers, compiled once.

Semantics follow ``envoy.type.matcher.v3`` and ``envoy.config.route.v3.HeaderMatcher``:
regexes must match the whole value (RE2 ``FullMatch``, on RE2 itself: ``regex.py``),
header ranges are half-open ``[start, end)``, ``invert_match`` negates the result, and a
missing header fails every matcher except ``present_match: false`` (or its inversion).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config.protojson import ConfigError
from proxy.config.regex import Regex, RegexError, compile_re2, full_matcher

Predicate = Callable[[str], bool]


def compile_regex(spec: Any, *, ignore_case: bool = False) -> Regex:
    """A ``RegexMatcher`` (``{"regex": ...}``) as a compiled RE2 pattern; bad regexes NACK."""
    pattern = spec.get("regex") if isinstance(spec, dict) else spec
    if not isinstance(pattern, str):
        raise ConfigError(f"regex matcher without regex: {spec!r}")
    try:
        return compile_re2(pattern, ignore_case=ignore_case)
    except RegexError as exc:
        raise ConfigError(f"invalid regex {pattern!r}: {exc}") from exc


def compile_string_matcher(spec: dict[str, Any]) -> Predicate:
    """A ``StringMatcher`` as a predicate on the value."""
    ignore_case = bool(spec.get("ignore_case", False))
    if "safe_regex" in spec:
        return full_matcher(compile_regex(spec["safe_regex"]))
    for kind in ("exact", "prefix", "suffix", "contains"):
        if kind in spec:
            return _text_predicate(kind, str(spec[kind]), ignore_case)
    raise ConfigError(f"string matcher without a match: {spec!r}")


def _text_predicate(kind: str, expected: str, ignore_case: bool) -> Predicate:
    """Exact/prefix/suffix/contains, optionally case-folded (on the value only, once)."""
    if ignore_case:
        expected = expected.lower()
        inner = _text_predicate(kind, expected, False)
        return lambda value: inner(value.lower())
    if kind == "exact":
        return lambda value: value == expected
    if kind == "prefix":
        return lambda value: value.startswith(expected)
    if kind == "suffix":
        return lambda value: value.endswith(expected)
    return lambda value: expected in value


def _range_predicate(spec: dict[str, Any]) -> Predicate:
    """``range_match``: the value parsed as int64 within ``[start, end)``."""
    start, end = int(spec.get("start", 0)), int(spec.get("end", 0))

    def matches(value: str) -> bool:
        try:
            number = int(value.strip())
        except ValueError:
            return False
        return start <= number < end

    return matches


@dataclass(frozen=True, slots=True)
class HeaderMatcher:
    """One ``HeaderMatcher``; ``present`` is set only for ``present_match``."""

    name: str
    predicate: Predicate | None
    present: bool | None
    invert: bool
    treat_missing_as_empty: bool

    def matches(self, headers: Mapping[str, str]) -> bool:
        value = headers.get(self.name)
        if value is None:
            if not self.treat_missing_as_empty:
                # Envoy: a missing header only satisfies presence checks.
                if self.present is None:
                    return False
                return self.present if self.invert else not self.present
            value = ""
        if self.present is not None:
            result = self.present
        else:
            assert self.predicate is not None
            result = self.predicate(value)
        return result != self.invert


def compile_header_matcher(spec: dict[str, Any]) -> HeaderMatcher:
    """A route's (or retry policy's) ``HeaderMatcher``; header names are case-insensitive."""
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"header matcher without name: {spec!r}")
    present: bool | None = None
    predicate: Predicate | None = None
    if "present_match" in spec:
        present = bool(spec["present_match"])
    elif "string_match" in spec:
        predicate = compile_string_matcher(spec["string_match"])
    elif "exact_match" in spec:
        predicate = _text_predicate("exact", str(spec["exact_match"]), False)
    elif "safe_regex_match" in spec:
        predicate = full_matcher(compile_regex(spec["safe_regex_match"]))
    elif "range_match" in spec:
        predicate = _range_predicate(spec["range_match"])
    elif "prefix_match" in spec:
        predicate = _text_predicate("prefix", str(spec["prefix_match"]), False)
    elif "suffix_match" in spec:
        predicate = _text_predicate("suffix", str(spec["suffix_match"]), False)
    elif "contains_match" in spec:
        predicate = _text_predicate("contains", str(spec["contains_match"]), False)
    else:
        # Envoy: no match specifier means "header is present".
        present = True
    return HeaderMatcher(
        name=name.lower(),
        predicate=predicate,
        present=present,
        invert=bool(spec.get("invert_match", False)),
        treat_missing_as_empty=bool(spec.get("treat_missing_header_as_empty", False)),
    )


@dataclass(frozen=True, slots=True)
class QueryParameterMatcher:
    """One ``QueryParameterMatcher``: a ``string_match`` or ``present_match``."""

    name: str
    predicate: Predicate | None

    def matches(self, params: Mapping[str, str]) -> bool:
        value = params.get(self.name)
        if value is None:
            return False
        return self.predicate is None or self.predicate(value)


def compile_query_matcher(spec: dict[str, Any]) -> QueryParameterMatcher:
    """A route's ``QueryParameterMatcher`` (names are case-sensitive, as in Envoy)."""
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"query parameter matcher without name: {spec!r}")
    if "string_match" in spec:
        return QueryParameterMatcher(name, compile_string_matcher(spec["string_match"]))
    return QueryParameterMatcher(name, None)
