"""Upstream TLS from client policies or the server's mode, and ACM secrets."""

from .mesh_factory import Mesh, dns, listener, named, typed_config

FILE_CERT = {"file": {"certificateChain": "/c.pem", "privateKey": "/k.pem"}}
ACM_CERT_ARN = "arn:aws:acm:us-east-1:111122223333:certificate/abc"
PCA_ARN = "arn:aws:acm-pca:us-east-1:111122223333:certificate-authority/ca1"


def _policy(validation: dict, **extra) -> dict:
    return {"tls": {"validation": validation, **extra}}


def _upstream(
    server_tls: dict | None = None,
    backend_policy: dict | None = None,
    defaults: dict | None = None,
    discovery: dict | None = None,
    protocol: str = "http",
    **build,
):
    backend: dict = {"virtualService": {"virtualServiceName": "svc.local"}}
    if backend_policy:
        backend["virtualService"]["clientPolicy"] = backend_policy
    extra = {"backendDefaults": {"clientPolicy": defaults}} if defaults else {}
    target = listener(8443, protocol, **({"tls": server_tls} if server_tls else {}))
    mesh = (
        Mesh()
        .node("client", backends=[backend], **extra)
        .node("t", target, discovery=discovery or dns("t.apps.local"))
        .service("svc.local", node="t")
    )
    resources = mesh.translate("client", **build)
    cluster = named(resources.clusters, f"cds_egress_m_t_{protocol}_8443")
    socket = cluster.get("transport_socket")
    return (typed_config(socket) if socket else None), resources


def test_no_policy_and_no_server_tls_is_plaintext():
    assert _upstream()[0] is None


def test_client_policy_with_file_trust_validates_the_discovery_hostname():
    context, _ = _upstream(defaults=_policy({"trust": {"file": {"certificateChain": "/ca.pem"}}}))
    assert context["@type"].endswith("UpstreamTlsContext")
    assert context["sni"] == "t.apps.local"
    assert context["common_tls_context"]["validation_context"] == {
        "trusted_ca": {"filename": "/ca.pem"},
        "match_typed_subject_alt_names": [
            {"san_type": "DNS", "matcher": {"exact": "t.apps.local"}}
        ],
    }


def test_cloud_map_target_expects_service_dot_namespace():
    discovery = {"awsCloudMap": {"namespaceName": "apps.local", "serviceName": "t"}}
    context, _ = _upstream(
        defaults=_policy({"trust": {"file": {"certificateChain": "/ca.pem"}}}), discovery=discovery
    )
    sans = context["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert sans == [{"san_type": "DNS", "matcher": {"exact": "t.apps.local"}}]


def test_policy_sans_replace_the_discovery_name():
    validation = {
        "trust": {"file": {"certificateChain": "/ca.pem"}},
        "subjectAlternativeNames": {"match": {"exact": ["a.local", "spiffe://td/a"]}},
    }
    context, _ = _upstream(defaults=_policy(validation))
    sans = context["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]
    assert [s["matcher"]["exact"] for s in sans] == ["a.local", "spiffe://td/a"]
    assert [s["san_type"] for s in sans] == ["DNS", "URI"]


def test_backend_policy_overrides_backend_defaults():
    defaults = _policy({"trust": {"file": {"certificateChain": "/default.pem"}}})
    own = _policy({"trust": {"file": {"certificateChain": "/own.pem"}}})
    context, _ = _upstream(backend_policy=own, defaults=defaults)
    assert context["common_tls_context"]["validation_context"]["trusted_ca"] == {
        "filename": "/own.pem"
    }


def test_policy_ports_limit_where_it_applies():
    policy = _policy({"trust": {"file": {"certificateChain": "/ca.pem"}}}, ports=[9999])
    assert _upstream(defaults=policy)[0] is None
    assert _upstream(
        defaults=_policy({"trust": {"file": {"certificateChain": "/ca.pem"}}}, ports=[8443])
    )[0]


def test_unenforced_policy_leaves_the_server_in_charge():
    policy = _policy({"trust": {"file": {"certificateChain": "/ca.pem"}}}, enforce=False)
    assert _upstream(defaults=policy)[0] is None
    context, _ = _upstream(server_tls={"mode": "STRICT", "certificate": FILE_CERT}, defaults=policy)
    assert context["common_tls_context"] == {}


def test_sds_trust_and_client_certificate_come_from_the_local_sds_cluster():
    validation = {"trust": {"sds": {"secretName": "ca-bundle"}}}
    policy = _policy(validation, certificate={"sds": {"secretName": "client-cert"}})
    context, _ = _upstream(defaults=policy)
    common = context["common_tls_context"]
    combined = common["combined_validation_context"]
    assert combined["validation_context_sds_secret_config"]["name"] == "ca-bundle"
    source = combined["validation_context_sds_secret_config"]["sds_config"]["api_config_source"]
    assert source["grpc_services"] == [
        {"envoy_grpc": {"cluster_name": "static_cluster_sds_unix_socket"}}
    ]
    assert common["tls_certificate_sds_secret_configs"][0]["name"] == "client-cert"


def test_file_client_certificate_enables_mutual_tls():
    policy = _policy({"trust": {"file": {"certificateChain": "/ca.pem"}}}, certificate=FILE_CERT)
    context, _ = _upstream(defaults=policy)
    assert context["common_tls_context"]["tls_certificates"][0]["certificate_chain"] == {
        "filename": "/c.pem"
    }


def test_acm_trust_is_an_ads_secret_built_from_the_pca_certificate():
    policy = _policy({"trust": {"acm": {"certificateAuthorityArns": [PCA_ARN]}}})
    certificates = {PCA_ARN: {"certificate": "-----CA-----"}}
    context, resources = _upstream(defaults=policy, certificates=certificates)
    secret_config = context["common_tls_context"]["combined_validation_context"][
        "validation_context_sds_secret_config"
    ]
    assert secret_config == {
        "name": f"validation:{PCA_ARN}",
        "sds_config": {"ads": {}, "resource_api_version": "V3"},
    }
    assert resources.secrets == (
        {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
            "name": f"validation:{PCA_ARN}",
            "validation_context": {"trusted_ca": {"inline_string": "-----CA-----"}},
        },
    )


def test_acm_secret_is_omitted_without_its_material():
    policy = _policy({"trust": {"acm": {"certificateAuthorityArns": [PCA_ARN]}}})
    assert _upstream(defaults=policy)[1].secrets == ()


def test_server_with_acm_certificate_makes_clients_validate_its_chain():
    server = {"mode": "PERMISSIVE", "certificate": {"acm": {"certificateArn": ACM_CERT_ARN}}}
    context, _ = _upstream(server_tls=server, protocol="grpc")
    combined = context["common_tls_context"]["combined_validation_context"]
    assert combined["validation_context_sds_secret_config"]["name"] == f"validation:{ACM_CERT_ARN}"
    assert combined["default_validation_context"]["match_typed_subject_alt_names"][0][
        "matcher"
    ] == {"exact": "t.apps.local"}
    assert context["common_tls_context"]["alpn_protocols"] == ["h2"]


def test_server_with_file_certificate_gets_tls_without_validation():
    context, _ = _upstream(server_tls={"mode": "STRICT", "certificate": FILE_CERT})
    assert context["common_tls_context"] == {}


def test_server_with_tls_disabled_gets_plaintext():
    assert _upstream(server_tls={"mode": "DISABLED", "certificate": FILE_CERT})[0] is None


def test_listener_acm_certificate_is_sent_as_a_secret():
    tls = {"mode": "STRICT", "certificate": {"acm": {"certificateArn": ACM_CERT_ARN}}}
    material = {
        ACM_CERT_ARN: {"certificate": "LEAF", "certificateChain": "CHAIN", "privateKey": "KEY"}
    }
    resources = Mesh().node("n", listener(8443, tls=tls)).translate("n", certificates=material)
    secret = named(resources.secrets, ACM_CERT_ARN)
    assert secret["tls_certificate"] == {
        "certificate_chain": {"inline_string": "LEAF\nCHAIN"},
        "private_key": {"inline_string": "KEY"},
    }
    ingress = named(resources.listeners, "lds_ingress_0.0.0.0_15000")
    common = typed_config(ingress["filter_chains"][0]["transport_socket"])["common_tls_context"]
    assert common["tls_certificate_sds_secret_configs"][0]["sds_config"] == {
        "ads": {},
        "resource_api_version": "V3",
    }


def test_a_private_key_goes_only_to_a_node_of_the_certificates_account():
    """Two owners in one (shared) mesh name the same certificate: the snapshot carries
    its material because the owner's node asked, but the other account's node gets no
    secret (App Mesh allowed no cross-account ACM references)."""
    tls = {"mode": "STRICT", "certificate": {"acm": {"certificateArn": ACM_CERT_ARN}}}
    material = {
        ACM_CERT_ARN: {"certificate": "LEAF", "certificateChain": "CHAIN", "privateKey": "KEY"}
    }
    mesh = Mesh().node("mine", listener(8443, tls=tls)).node("theirs", listener(8443, tls=tls))
    mesh.nodes["mine"]["metadata"]["resourceOwner"] = "111122223333"
    mesh.nodes["theirs"]["metadata"]["resourceOwner"] = "444455556666"
    assert [s["name"] for s in mesh.translate("mine", certificates=material).secrets] == [
        ACM_CERT_ARN
    ]
    assert mesh.translate("theirs", certificates=material).secrets == ()
