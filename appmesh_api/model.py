"""botocore's App Mesh service model: the single source of truth for the wire.

Operations, paths, shapes, limits and error types are all read from
``botocore/data/appmesh/2019-01-25/service-2.json`` at start-up. Nothing here is
hand-copied, so a member botocore adds tomorrow is parsed, validated and
serialized without a code change.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import botocore.session
from botocore.model import OperationModel, ServiceModel

_LABEL = re.compile(r"\{([A-Za-z0-9_]+)\+?\}")


@functools.cache
def service_model() -> ServiceModel:
    """The loaded ``appmesh`` service model (cached: loading costs ~50 ms)."""
    return botocore.session.get_session().get_service_model("appmesh")


@dataclass(frozen=True)
class RouteSpec:
    """One operation's HTTP binding: method, path pattern and the labels it captures."""

    operation: OperationModel
    method: str
    path_regex: re.Pattern[str]
    labels: tuple[str, ...]
    literal_length: int

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        found = self.path_regex.fullmatch(path)
        return None if found is None else found.groupdict()


def _compile(request_uri: str) -> tuple[re.Pattern[str], tuple[str, ...], int]:
    path = request_uri.split("?", 1)[0]
    labels: list[str] = []
    pattern = ""
    position = 0
    for label in _LABEL.finditer(path):
        pattern += re.escape(path[position : label.start()])
        pattern += f"(?P<{label.group(1)}>[^/]+)"
        labels.append(label.group(1))
        position = label.end()
    pattern += re.escape(path[position:])
    literal_length = len(_LABEL.sub("", path))
    return re.compile(pattern), tuple(labels), literal_length


@functools.cache
def http_routes() -> tuple[RouteSpec, ...]:
    """Every operation's binding, most specific path first (more literal characters win)."""
    model = service_model()
    routes = []
    for name in model.operation_names:
        operation = model.operation_model(name)
        regex, labels, literal_length = _compile(operation.http["requestUri"])
        routes.append(RouteSpec(operation, operation.http["method"], regex, labels, literal_length))
    routes.sort(key=lambda route: -route.literal_length)
    return tuple(routes)


def match_operation(method: str, path: str) -> tuple[OperationModel, dict[str, str]] | None:
    """Find the operation for ``method path``; returns it with its URI labels."""
    for route in http_routes():
        labels = route.match(method, path)
        if labels is not None:
            return route.operation, labels
    return None
