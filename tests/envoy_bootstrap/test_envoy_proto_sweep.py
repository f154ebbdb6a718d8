"""Every resource, for every proxy of many meshes, parses into Envoy's protobuf types
with no unknown field, and every name it cites exists."""

import pytest

from envoy_bootstrap import envoy_types
from envoy_bootstrap.snapshot import MeshSnapshot, NodeIdentity
from envoy_bootstrap.translate import EnvoyResources, ResourceNotFound, translate
from envoy_bootstrap.validate import message_class, parse_resource, reference_problems

from .kitchen_sink import CERTIFICATES, kitchen_sink
from .random_meshes import GATEWAYS, NODES, random_snapshot


def _check(resources: EnvoyResources) -> None:
    for resource in resources.all():
        parse_resource(resource)
    assert reference_problems(resources.all()) == []


@pytest.mark.parametrize("egress", ["DROP_ALL", "ALLOW_ALL"])
@pytest.mark.parametrize("ip_preference", [None, "IPv6_PREFERRED"])
def test_kitchen_sink_mesh_translates_into_valid_envoy_config(egress, ip_preference):
    mesh = kitchen_sink(egress, ip_preference)
    snapshot = mesh.build(
        certificates=CERTIFICATES, registered_endpoints={"web2": (("10.1.0.1", 15000),)}
    )
    for name in mesh.nodes:
        _check(translate(snapshot, NodeIdentity("virtualNode", name)))
    _check(translate(snapshot, NodeIdentity("virtualGateway", "gw")))


def test_kitchen_sink_exercises_every_resource_kind():
    snapshot = kitchen_sink().build(certificates=CERTIFICATES)
    client = translate(snapshot, NodeIdentity("virtualNode", "client"))
    assert client.listeners and client.route_configurations and client.clusters
    assert client.endpoints and client.secrets


@pytest.mark.parametrize("seed", range(150))
def test_random_meshes_translate_into_valid_envoy_config(seed):
    snapshot = random_snapshot(seed)
    for kind, names_ in (("virtualNode", NODES), ("virtualGateway", GATEWAYS)):
        for name in names_:
            _translate_and_check(snapshot, NodeIdentity(kind, name))


def _translate_and_check(snapshot: MeshSnapshot, identity: NodeIdentity) -> None:
    try:
        resources = translate(snapshot, identity)
    except ResourceNotFound:
        return
    _check(resources)


def test_every_type_url_we_use_resolves_to_an_envoy_message():
    for type_url in envoy_types.ALL_TYPE_URLS:
        assert message_class(type_url).DESCRIPTOR.full_name == type_url.removeprefix(
            envoy_types.PREFIX
        )


def test_parse_resource_rejects_unknown_fields():
    from google.protobuf.json_format import ParseError

    with pytest.raises(ParseError):
        parse_resource({"@type": envoy_types.CLUSTER, "name": "c", "not_a_field": 1})
    bad_filter = {"name": "x", "typed_config": {"@type": envoy_types.TLS_INSPECTOR, "bogus": 1}}
    with pytest.raises(ParseError):
        parse_resource(
            {"@type": envoy_types.LISTENER, "name": "l", "listener_filters": [bad_filter]}
        )


def test_reference_problems_finds_dangling_names():
    listener_resource = {
        "@type": envoy_types.LISTENER,
        "name": "l",
        "filter_chains": [
            {"filters": [{"typed_config": {"rds": {"route_config_name": "missing"}}}]}
        ],
    }
    route = {
        "@type": envoy_types.ROUTE_CONFIGURATION,
        "name": "r",
        "virtual_hosts": [
            {"name": "a", "domains": ["x"], "routes": [{"route": {"cluster": "nope"}}]},
            {"name": "b", "domains": ["x"], "routes": []},
        ],
    }
    eds = {"@type": envoy_types.CLUSTER, "name": "e", "type": "EDS"}
    problems = reference_problems([listener_resource, route, eds])
    assert "listener cites missing route configuration missing" in problems
    assert "missing cluster nope" in problems
    assert "r: duplicate domain x" in problems
    assert "EDS cluster e has no assignment" in problems


def _containers(value, seen: list) -> None:
    if isinstance(value, dict | list):
        seen.append(id(value))
        for item in value.values() if isinstance(value, dict) else value:
            _containers(item, seen)


@pytest.mark.parametrize("seed", range(20))
def test_resources_share_no_dict_or_list_with_each_other_or_the_input(seed):
    snapshot = random_snapshot(seed) if seed else kitchen_sink().build(certificates=CERTIFICATES)
    names_ = [("virtualNode", n) for n in snapshot.virtual_nodes] + [
        ("virtualGateway", g) for g in snapshot.virtual_gateways
    ]
    fields = ("mesh", "virtual_nodes", "virtual_routers", "routes", "virtual_services")
    fields += ("virtual_gateways", "gateway_routes")
    inputs: list = []
    roots = [getattr(snapshot, field) for field in fields]  # alive for the whole test
    _containers(roots, inputs)
    for kind, name in names_:
        try:
            resources = translate(snapshot, NodeIdentity(kind, name))
        except ResourceNotFound:
            continue
        seen: list = []
        everything = list(resources.all())  # kept alive so no id is reused mid-check
        _containers(everything, seen)
        assert len(seen) == len(set(seen)), f"{kind} {name} shares objects between resources"
        assert not set(seen) & set(inputs), f"{kind} {name} embeds input objects"
