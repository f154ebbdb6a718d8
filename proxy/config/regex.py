"""Every regex that comes from outside, on Google RE2: linear time, whatever the input.

Envoy runs route and header ``safe_regex`` matches, ``regex_rewrite`` and the admin's
``/stats?filter=`` on RE2, so a pattern written by a mesh author or sent by any client
of the admin port cannot backtrack for seconds on the event loop that carries traffic
(Python's ``re`` takes exponential time on ``(a+)+$``). As Envoy does, a pattern whose
compiled program is larger than 100 (RE2's ``ProgramSize``, Envoy's default
``re2.max_program_size.error_level``) is refused. RE2 has no backreferences or
lookaround; such a pattern is refused too (Envoy NACKs it the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

#: Envoy's default ``re2.max_program_size.error_level``.
MAX_PROGRAM_SIZE = 100

#: Verdicts a route or header matcher remembers (0: none). Paths and header values repeat
#: from request to request, and a dict lookup costs a tenth of RE2's call through the
#: binding; the dict is emptied when full, so its memory is bounded whatever clients send.
VERDICT_CACHE_SIZE = 512
#: Inputs longer than this are matched every time, never remembered.
MAX_REMEMBERED_INPUT = 256


class Regex(Protocol):
    """What the proxy calls on a compiled pattern (``re2`` has no type stubs)."""

    def fullmatch(self, text: str) -> Any: ...
    def search(self, text: str) -> Any: ...
    def sub(self, replacement: str, text: str) -> str: ...


class RegexError(ValueError):
    """A pattern RE2 cannot compile, or one over the program-size limit."""


def compile_re2(pattern: str, *, ignore_case: bool = False) -> Regex:
    import re2  # here, not at the top: a config without regexes never loads RE2 (2.6 MB)

    options = re2.Options()
    options.log_errors = False  # the refusal says why; no absl line on stderr
    options.case_sensitive = not ignore_case
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise RegexError(f"RE2 cannot compile {pattern!r}: {reason}") from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise RegexError(
            f"regex {pattern!r} RE2 program size of {compiled.programsize} > max program size "
            f"of {MAX_PROGRAM_SIZE} set for the error level threshold"
        )
    return compiled


def full_matcher(pattern: Regex) -> Callable[[str], bool]:
    """Whether a whole string matches ``pattern``, as route and header matching ask.

    google-re2's ``fullmatch`` builds a Python match object for every call (offsets
    decoded through a generator, a ``_Match``), several times the cost of RE2's match
    itself and about ten times Python's ``re`` on a short path; a route needs only yes or
    no, so RE2's own ``Match`` is called directly when the binding has it (its
    ``_regexp``, held since google-re2 1.0), else the pattern's ``fullmatch``. Recent
    verdicts are remembered (``remembering``), which puts a repeated path or header value
    at Python ``re``'s speed or better.
    """
    regexp = getattr(pattern, "_regexp", None)
    if regexp is None:
        return lambda text: pattern.fullmatch(text) is not None
    from re2 import _re2

    anchor, match, null = _re2.RE2.Anchor.ANCHOR_BOTH, regexp.Match, (-1, -1)

    def matches(text: str) -> bool:
        data = text.encode()
        return bool(match(anchor, data, 0, len(data))[0] != null)

    return remembering(matches, {}) if VERDICT_CACHE_SIZE else matches


def remembering(matches: Callable[[str], bool], verdicts: dict[str, bool]) -> Callable[[str], bool]:
    """``matches``, answering from ``verdicts`` for an input seen recently.

    A regex's verdict depends on the input alone, so a remembered one is always right.
    The dict holds at most VERDICT_CACHE_SIZE short inputs: when full it is emptied, so a
    client sending a new path each time costs one RE2 match and one insertion per
    request, never unbounded memory.
    """
    limit, longest = VERDICT_CACHE_SIZE, MAX_REMEMBERED_INPUT

    def remembered(text: str) -> bool:
        verdict = verdicts.get(text)
        if verdict is None:
            verdict = matches(text)
            if len(text) <= longest:
                if len(verdicts) >= limit:
                    verdicts.clear()
                verdicts[text] = verdict
        return verdict

    return remembered
