"""What the App Mesh image passed Envoy on its command line rather than in the bootstrap.

The image's agent read ``ENVOY_LOG_LEVEL`` (``-l``) and ``ENVOY_CONCURRENCY``
(``--concurrency``) and passed them as flags, and on SIGTERM it drained the listeners
for ``LISTENER_DRAIN_WAIT_TIME_S`` before stopping Envoy. Together with the bootstrap
(``bootstrap.py``) this is everything the image's environment decided, read in one
place, with the agent's parsing rules (a malformed number stops start-up).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from envoy_bootstrap.envvars import Env

LOG_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "critical", "off")
DRAIN_SECONDS = 20.0


@dataclass(frozen=True)
class CommandLine:
    log_level: str  # -l, ENVOY_LOG_LEVEL (info)
    concurrency: int  # --concurrency, ENVOY_CONCURRENCY (1 here: one process per core)
    drain_seconds: float  # LISTENER_DRAIN_WAIT_TIME_S (20)


def command_line(env: Mapping[str, str]) -> CommandLine:
    """Raises ``ValueError`` for a value the image would refuse."""
    values = Env(env)
    level = values.or_("ENVOY_LOG_LEVEL", "info").lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"ENVOY_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    drain = values.get("LISTENER_DRAIN_WAIT_TIME_S")
    try:
        drain_seconds = float(drain) if drain else DRAIN_SECONDS
    except ValueError:
        raise ValueError(
            f'LISTENER_DRAIN_WAIT_TIME_S environment variable ("{drain}") must be a number.'
        ) from None
    return CommandLine(level, max(1, values.integer("ENVOY_CONCURRENCY", 1)), drain_seconds)
