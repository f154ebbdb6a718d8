"""The interception rules, built from ECS proxyConfiguration and from EKS variables."""

from __future__ import annotations

import pytest

from proxy.interception.iptables import Interception, install_rules

ECS_PROPERTIES = {
    "IgnoredUID": "1337",
    "ProxyIngressPort": "15000",
    "ProxyEgressPort": "15001",
    "AppPorts": "9080,9081",
    "EgressIgnoredIPs": "169.254.170.2,169.254.169.254",
    "EgressIgnoredPorts": "5432",
}


def joined(rules: list[list[str]]) -> list[str]:
    return [" ".join(rule) for rule in rules]


def test_ecs_proxy_configuration_becomes_the_app_mesh_chains():
    rules = joined(install_rules(Interception.from_properties(ECS_PROPERTIES)))
    assert "-t nat -N APPMESH_INGRESS" in rules and "-t nat -N APPMESH_EGRESS" in rules
    assert "-t nat -A APPMESH_EGRESS -m owner --uid-owner 1337 -j RETURN" in rules
    assert "-t nat -A APPMESH_EGRESS -p tcp -m multiport --dports 22,5432 -j RETURN" in rules
    assert "-t nat -A APPMESH_EGRESS -p tcp -d 169.254.170.2 -j RETURN" in rules
    assert any(r.endswith("-j REDIRECT --to-ports 15001") for r in rules)
    ingress = (
        "-t nat -A APPMESH_INGRESS -p tcp -m multiport --dports 9080,9081 "
        "-j REDIRECT --to-ports 15000"
    )
    assert ingress in rules
    # The uid exemption must come before the redirect, or the proxy would loop into itself.
    redirect = next(i for i, r in enumerate(rules) if "--to-ports 15001" in r)
    assert rules.index("-t nat -A APPMESH_EGRESS -m owner --uid-owner 1337 -j RETURN") < redirect


def test_eks_variables_give_the_same_rules_as_ecs_properties():
    env = {
        "APPMESH_IGNORE_UID": "1337",
        "APPMESH_APP_PORTS": "9080,9081",
        "APPMESH_ENVOY_INGRESS_PORT": "15000",
        "APPMESH_ENVOY_EGRESS_PORT": "15001",
        "APPMESH_EGRESS_IGNORED_IP": "169.254.170.2,169.254.169.254",
        "APPMESH_EGRESS_IGNORED_PORTS": "5432",
    }
    ecs = install_rules(Interception.from_properties(ECS_PROPERTIES))
    assert install_rules(Interception.from_environment(env)) == ecs


def test_without_app_ports_there_is_no_ingress_redirect():
    rules = joined(install_rules(Interception(app_ports=())))
    assert not any("PREROUTING" in rule for rule in rules)


def test_the_proxy_user_must_be_exempt():
    with pytest.raises(ValueError, match="IgnoredUID"):
        Interception(ignored_uid=None, ignored_gid=None)


def test_at_most_fifteen_ignored_ports():
    with pytest.raises(ValueError, match="15"):
        Interception(egress_ignored_ports=tuple(range(1000, 1016)))
