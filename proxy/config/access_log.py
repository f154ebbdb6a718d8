"""Envoy access-log configuration: command operators, text and JSON formats, compiled once.

A format string is compiled once into a list of literal pieces and getter functions over
``StreamInfo``, so logging a request is a join, not a parse. The loggers of an HCM or
``tcp_proxy`` compile with the rest of the config version; the sinks that write the lines
live in ``proxy.observe.access_log``.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proxy.config.protojson import ConfigError, typed_config
from proxy.stream_info import StreamInfo

DEFAULT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"\n'
)
STDOUT = "/dev/stdout"
STDERR = "/dev/stderr"

_OPERATOR = re.compile(r"%([A-Z][A-Z0-9_]*)(?:\(([^)]*)\))?(?::(\d+))?%")
_HOSTNAME = socket.gethostname()
Getter = Callable[[StreamInfo], Any]


def _ms(start: float, end: float | None) -> int | None:
    return None if end is None else int((end - start) * 1000)


def _without_port(address: str) -> str:
    host, sep, port = address.rpartition(":")
    return host if sep and port.isdigit() else address


def _start_time(fmt: str | None) -> Getter:
    """``%START_TIME(fmt)%`` with Envoy's ``%3f``/``%6f``/``%9f`` fractional seconds."""
    pattern = fmt or "%Y-%m-%dT%H:%M:%S.%3fZ"

    def render(info: StreamInfo) -> str:
        seconds = info.start_time
        micros = round(seconds * 1_000_000)  # float seconds are only µs-precise
        frac = f"{micros % 1_000_000:06d}000"
        seconds = micros // 1_000_000
        text = re.sub(r"%([369])f", lambda m: frac[: int(m.group(1))], pattern)
        text = text.replace("%f", frac).replace("%s", str(int(seconds)))
        return time.strftime(text, time.gmtime(seconds))

    return render


def _header_getter(arg: str | None, response: bool) -> Getter:
    """``%REQ(X?Y)%`` / ``%RESP(X?Y)%``: header X, else Y."""
    names = [name.strip().lower() for name in (arg or "").split("?") if name.strip()]

    def render(info: StreamInfo) -> str | None:
        for name in names:
            value = info.response_header(name) if response else info.request_headers.get(name)
            if value is not None:
                return value
        return None

    return render


def _req_without_query(arg: str | None) -> Getter:
    inner = _header_getter(arg, False)
    return lambda info: (lambda v: v.split("?", 1)[0] if v else v)(inner(info))


_SIMPLE: dict[str, Getter] = {
    "PROTOCOL": lambda i: i.protocol,
    "RESPONSE_CODE": lambda i: i.response_code or 0,
    "RESPONSE_CODE_DETAILS": lambda i: i.response_code_details or None,
    "GRPC_STATUS": lambda i: _grpc_status_name(i.grpc_status or i.response_header("grpc-status")),
    "RESPONSE_FLAGS": lambda i: i.flags_text,
    "BYTES_RECEIVED": lambda i: i.bytes_received,
    "BYTES_SENT": lambda i: i.bytes_sent,
    "DURATION": lambda i: _ms(i.start, i.end),
    "REQUEST_DURATION": lambda i: _ms(i.start, i.last_downstream_rx),
    "RESPONSE_DURATION": lambda i: _ms(i.start, i.first_upstream_rx),
    "RESPONSE_TX_DURATION": lambda i: (
        None if i.first_upstream_rx is None else _ms(i.first_upstream_rx, i.end)
    ),
    "UPSTREAM_HOST": lambda i: i.upstream_host or None,
    "UPSTREAM_CLUSTER": lambda i: i.upstream_cluster or None,
    "UPSTREAM_LOCAL_ADDRESS": lambda i: i.upstream_local or None,
    "UPSTREAM_TRANSPORT_FAILURE_REASON": lambda i: i.upstream_transport_failure_reason or None,
    "UPSTREAM_REQUEST_ATTEMPT_COUNT": lambda i: i.attempt_count,
    "DOWNSTREAM_REMOTE_ADDRESS": lambda i: i.downstream_remote,
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": lambda i: _without_port(i.downstream_remote),
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS": lambda i: i.downstream_remote,
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT": lambda i: _without_port(i.downstream_remote),
    "DOWNSTREAM_LOCAL_ADDRESS": lambda i: i.downstream_local,
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": lambda i: _without_port(i.downstream_local),
    "ROUTE_NAME": lambda i: i.route_name or None,
    "CONNECTION_ID": lambda i: i.connection_id,
    "HOSTNAME": lambda i: _HOSTNAME,
    "REQUESTED_SERVER_NAME": lambda i: None,
}


def _operator(name: str, arg: str | None, limit: str | None) -> Getter:
    """One command operator; unknown ones render ``-`` rather than rejecting the config."""
    if name == "START_TIME":
        getter = _start_time(arg)
    elif name in ("REQ", "RESP"):
        getter = _header_getter(arg, response=name == "RESP")
    elif name == "REQ_WITHOUT_QUERY":
        getter = _req_without_query(arg)
    else:
        getter = _SIMPLE.get(name, lambda info: None)
    if limit is None:
        return getter
    size = int(limit)
    return lambda info: (lambda v: v[:size] if isinstance(v, str) else v)(getter(info))


def _pieces(template: str) -> list[str | Getter]:
    pieces: list[str | Getter] = []
    pos = 0
    for match in _OPERATOR.finditer(template):
        if match.start() > pos:
            pieces.append(template[pos : match.start()])
        pieces.append(_operator(match.group(1), match.group(2), match.group(3)))
        pos = match.end()
    if pos < len(template):
        pieces.append(template[pos:])
    return pieces


def compile_text_format(template: str) -> Callable[[StreamInfo], str]:
    """A text format; missing values print ``-`` as in Envoy."""
    if not template.endswith("\n"):
        # Choice: terminate lines so a file sink stays line-oriented.
        template += "\n"
    pieces = _pieces(template)

    def render(info: StreamInfo) -> str:
        out = []
        for piece in pieces:
            if isinstance(piece, str):
                out.append(piece)
            else:
                value = piece(info)
                out.append("-" if value is None or value == "" else str(value))
        return "".join(out)

    return render


def _json_value(spec: Any) -> Callable[[StreamInfo], Any]:
    if isinstance(spec, dict):
        fields = {key: _json_value(value) for key, value in spec.items()}
        return lambda info: {key: fn(info) for key, fn in fields.items()}
    if not isinstance(spec, str):
        return lambda info: spec
    pieces = _pieces(spec)
    if len(pieces) == 1 and not isinstance(pieces[0], str):
        return pieces[0]  # a lone operator keeps its type (numbers stay numbers)
    return lambda info: "".join(
        p if isinstance(p, str) else ("-" if (v := p(info)) is None else str(v)) for p in pieces
    )


def compile_json_format(spec: dict[str, Any]) -> Callable[[StreamInfo], str]:
    """A ``json_format`` struct; one JSON object per line."""
    build = _json_value(spec)
    return lambda info: json.dumps(build(info), separators=(",", ":")) + "\n"


@dataclass(frozen=True, slots=True)
class AccessLogConfig:
    """Where one logger writes (a path, ``/dev/stdout`` or ``/dev/stderr``) and how."""

    path: str
    render: Callable[[StreamInfo], str]


def compile_access_logs(specs: Any) -> tuple[AccessLogConfig, ...]:
    """An HCM's or tcp_proxy's ``access_log`` list; loggers other than file/stdout are skipped."""
    loggers = []
    for spec in specs or ():
        kind, config = typed_config(spec)
        if "FileAccessLog" in kind or kind == "envoy.access_loggers.file":
            path = config.get("path")
            if not isinstance(path, str) or not path:
                raise ConfigError("file access log without path")
        elif "StdoutAccessLog" in kind or kind == "envoy.access_loggers.stdout":
            path = STDOUT
        elif "StderrAccessLog" in kind or kind == "envoy.access_loggers.stderr":
            path = STDERR
        else:
            continue
        loggers.append(AccessLogConfig(path, _compile_format(config)))
    return tuple(loggers)


def _compile_format(config: dict[str, Any]) -> Callable[[StreamInfo], str]:
    log_format = config.get("log_format")
    if isinstance(log_format, dict):
        if isinstance(log_format.get("json_format"), dict):
            return compile_json_format(log_format["json_format"])
        source = log_format.get("text_format_source")
        if isinstance(source, dict) and isinstance(source.get("inline_string"), str):
            return compile_text_format(source["inline_string"])
        if isinstance(log_format.get("text_format"), str):
            return compile_text_format(log_format["text_format"])
    if isinstance(config.get("json_format"), dict):
        return compile_json_format(config["json_format"])
    if isinstance(config.get("format"), str):
        return compile_text_format(config["format"])
    return compile_text_format(DEFAULT_FORMAT)


_GRPC_NAMES = (
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
    "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
)  # fmt: skip


def _grpc_status_name(code: str | None) -> str | None:
    """``%GRPC_STATUS%``: Envoy prints the status's name (``Unavailable``), or the number."""
    if code is None:
        return None
    return _GRPC_NAMES[int(code)] if code.isdigit() and int(code) < len(_GRPC_NAMES) else code
