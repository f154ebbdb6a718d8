"""Access logs: a node's or gateway's ``logging.accessLog.file`` as Envoy file loggers.

App Mesh attached the same logger to every connection manager and TCP proxy of the
proxy (the gateway config dump shows it on ingress and egress alike).
"""

from __future__ import annotations

from typing import Any

from envoy_bootstrap import envoy_types as types
from envoy_bootstrap.snapshot import Spec


def access_logs(logging: Spec) -> list[dict[str, Any]]:
    """The ``access_log`` list for a filter: empty when the resource logs nothing."""
    file = (logging.get("accessLog") or {}).get("file") or {}
    if not file.get("path"):
        return []
    body: dict[str, Any] = {"path": file["path"]}
    log_format = _log_format(file.get("format") or {})
    if log_format:
        body["log_format"] = log_format
    return [types.extension(types.FILE_ACCESS_LOG_NAME, types.FILE_ACCESS_LOG, body)]


def _log_format(fmt: Spec) -> dict[str, Any]:
    """``text`` is an Envoy format string; ``json`` is a list of key/value pairs, each
    value an Envoy format string. Without a format Envoy uses its default line."""
    if "text" in fmt:
        return {"text_format_source": {"inline_string": _line(fmt["text"])}}
    if "json" in fmt:
        return {"json_format": {pair["key"]: pair["value"] for pair in fmt["json"]}}
    return {}


def _line(text: str) -> str:
    """Envoy writes text formats verbatim; a missing newline would glue lines together."""
    return text if text.endswith("\n") else text + "\n"
