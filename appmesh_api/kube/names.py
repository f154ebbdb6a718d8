"""The controller's naming and selection rules.

``aws_name``: the App Mesh name an object gets when ``spec.awsName`` is not set, as
the controller's mutating webhooks defaulted it: a Mesh keeps its name; virtual nodes,
routers, gateways and gateway routes become ``name_namespace``; a virtual service
becomes ``name.namespace`` (a DNS-like name, since apps call it by that name).

``selects``: Kubernetes label-selector semantics (``matchLabels`` and
``matchExpressions`` with In, NotIn, Exists, DoesNotExist), used for mesh membership
(a Mesh's ``namespaceSelector``) and gateway membership (a VirtualGateway's
``namespaceSelector`` and ``gatewayRouteSelector``).
"""

from __future__ import annotations

from typing import Any

from appmesh_api.kube.objects import KubeObject, ManifestError


def aws_name(obj: KubeObject) -> str:
    given = obj.spec.get("awsName")
    if given:
        return str(given)
    if obj.kind == "Mesh":
        return obj.name
    if obj.kind == "VirtualService":
        return f"{obj.name}.{obj.namespace}"
    return f"{obj.name}_{obj.namespace}"


def selects(selector: Any, labels: dict[str, str], what: str = "selector") -> bool:
    """Whether a LabelSelector matches ``labels``. ``None`` (no selector) matches
    nothing, as in the controller; ``{}`` matches everything."""
    if selector is None:
        return False
    if not isinstance(selector, dict):
        raise ManifestError(f"{what} must be a label selector object")
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    return all(_expression(e, labels, what) for e in selector.get("matchExpressions") or ())


def _expression(expression: Any, labels: dict[str, str], what: str) -> bool:
    if not isinstance(expression, dict):
        raise ManifestError(f"{what}: matchExpressions entries must be objects")
    key, operator = expression.get("key"), expression.get("operator")
    values = expression.get("values") or []
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    raise ManifestError(f"{what}: {operator!r} is not a valid selector operator")
