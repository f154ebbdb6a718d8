"""The filter-expression parser on its own: precedence, forms and error positions."""

from __future__ import annotations

import pytest

from appmesh_api.xray import filters
from appmesh_api.xray.errors import InvalidRequestException
from appmesh_api.xray.filters import Both, Compare, EdgeScope, Either, Not, ServiceScope, Target


def test_precedence_not_then_and_then_or():
    parsed = filters.parse("ok OR !fault AND error")
    assert parsed == Either(Compare("ok"), Both(Not(Compare("fault")), Compare("error")))
    assert filters.parse("(ok OR fault) and error") == Both(
        Either(Compare("ok"), Compare("fault")), Compare("error")
    )


def test_forms_of_keywords():
    assert filters.parse("responsetime >= 1.5") == Compare("responsetime", ">=", 1.5)
    assert filters.parse('http.url contains "/v2/"') == Compare("http.url", "CONTAINS", "/v2/")
    assert filters.parse('annotation[my.key] = "x"') == Compare("annotation:my.key", "=", "x")
    assert filters.parse("annotation.count < -2") == Compare("annotation:count", "<", -2.0)
    assert filters.parse("fault = false") == Compare("fault", "=", False)
    assert filters.parse('user = "a \\"quoted\\" name"') == Compare("user", "=", 'a "quoted" name')


def test_service_and_edge_scopes():
    assert filters.parse("service()") == ServiceScope(Target(), None)
    assert filters.parse('service(id(name: "a", type: "AWS::AppMesh::Proxy")) { fault }') == (
        ServiceScope(Target("a", "AWS::AppMesh::Proxy"), Compare("fault"))
    )
    assert filters.parse('edge("a", "b") { responsetime > 2 }') == EdgeScope(
        Target("a"), Target("b"), Compare("responsetime", ">", 2.0)
    )


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("", 0),
        ("ok AND", 6),
        ("responsetime > fast", 15),
        ('http.status = "500"', 14),
        ("nonsense", 0),
        ("ok )", 3),
        ('service("a" "b")', 12),
        ("duration ~ 3", 9),
    ],
)
def test_errors_name_the_position(text, position):
    with pytest.raises(InvalidRequestException) as caught:
        filters.parse(text)
    assert caught.value.message.endswith(f"at position {position}")
