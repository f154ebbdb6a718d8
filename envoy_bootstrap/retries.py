"""Retry policies: a route's App Mesh ``retryPolicy``, or App Mesh's invisible default.

Mapping, from a published App Mesh config dump (2022) and the User Guide:
- HTTP status events become ``retriable-status-codes`` with the exact codes the API
  documents (server-error 500-508,510,511; gateway-error 502-504; client-error 409), as
  the dump shows App Mesh did, rather than Envoy's broader ``5xx``/``gateway-error``.
- ``stream-error`` becomes ``reset,refused-stream`` (the dump shows both, together).
- TCP ``connection-error`` becomes ``connect-failure`` (UG: "equivalent to").
- gRPC events keep their names; Envoy's gRPC ``retry_on`` values are the same words.
- User policies also get the ``previous_hosts`` predicate with 5 selection attempts, as
  in the dump.

The default policy (UG envoy-defaults) retries twice on connect-failure, refused-stream,
reset and HTTP 503 (and gRPC ``unavailable`` on gRPC routes). That a user policy replaces
it rather than merging is UNCONFIRMED; replacing is what a user reading the API expects.
"""

from __future__ import annotations

from typing import Any

from envoy_bootstrap import durations
from envoy_bootstrap import envoy_types as types
from envoy_bootstrap.snapshot import Spec

STATUS_CODES = {
    "server-error": (500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511),
    "gateway-error": (502, 503, 504),
    "client-error": (409,),
}
STREAM_EVENTS = {"stream-error": ("reset", "refused-stream")}
TCP_EVENTS = {"connection-error": ("connect-failure",)}
GRPC_EVENTS = ("cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable")

DEFAULT_MAX_RETRIES = 2
DEFAULT_RETRY_ON = ("connect-failure", "refused-stream", "reset", "retriable-status-codes")
DEFAULT_STATUS_CODES = (503,)


def retry_policy(protocol: str, policy: Spec | None) -> dict[str, Any]:
    """The Envoy ``RetryPolicy`` of an HTTP-family route: the user's, else the default."""
    if policy:
        return user_policy(policy)
    return default_policy(protocol)


def user_policy(policy: Spec) -> dict[str, Any]:
    """Translate an ``HttpRetryPolicy`` or ``GrpcRetryPolicy``."""
    retry_on, codes = _events(policy)
    result: dict[str, Any] = {
        "retry_on": ",".join(retry_on),
        "num_retries": int(policy.get("maxRetries", 0)),
        "retry_host_predicate": [types.extension(types.PREVIOUS_HOSTS_NAME, types.PREVIOUS_HOSTS)],
        "host_selection_retry_max_attempts": 5,
    }
    if policy.get("perRetryTimeout"):
        result["per_try_timeout"] = durations.from_appmesh(policy["perRetryTimeout"])
    if codes:
        result["retriable_status_codes"] = list(codes)
    return result


def default_policy(protocol: str) -> dict[str, Any]:
    """App Mesh's default policy for HTTP, HTTP/2 and gRPC routes."""
    retry_on = list(DEFAULT_RETRY_ON)
    if protocol == "grpc":
        retry_on.insert(0, "unavailable")
    return {
        "retry_on": ",".join(retry_on),
        "num_retries": DEFAULT_MAX_RETRIES,
        "retriable_status_codes": list(DEFAULT_STATUS_CODES),
    }


def _events(policy: Spec) -> tuple[list[str], list[int]]:
    """Collect ``retry_on`` words and status codes in the order the policy lists events,
    without duplicates; ``retriable-status-codes`` goes last, as in the dump."""
    words: list[str] = []
    codes: list[int] = []
    for event in policy.get("tcpRetryEvents") or ():
        words.extend(TCP_EVENTS.get(event, ()))
    for event in policy.get("grpcRetryEvents") or ():
        if event in GRPC_EVENTS:
            words.append(event)
    for event in policy.get("httpRetryEvents") or ():
        words.extend(STREAM_EVENTS.get(event, ()))
        codes.extend(STATUS_CODES.get(event, ()))
    if codes:
        words.append("retriable-status-codes")
    return _unique(words), _unique(codes)


def _unique(items: list) -> list:
    return list(dict.fromkeys(items))
