"""TLS: listener (server) and cluster (client) transport sockets, and ACM secrets.

Rules from the App Mesh User Guide ("tls", "mutual-tls") and the API model:
- Listener modes: STRICT accepts TLS only, PERMISSIVE TLS or plaintext, DISABLED plaintext.
  A listener ``validation`` asks for and checks a client certificate (mutual TLS).
- A client uses its client policy (the backend's, else ``backendDefaults``) when the
  policy is enforced (``enforce`` defaults to true) and covers the target port (no
  ``ports`` means all). Otherwise the server decides: STRICT or PERMISSIVE make the
  client speak TLS, validating an ACM certificate against its chain and not validating a
  file (or, UNCONFIRMED, SDS) certificate.
- Without SANs in the client policy the server certificate must name the target's
  service discovery host (DNS hostname, or ``service.namespace`` for Cloud Map).
- Certificates: files become inline file names; SDS secrets are fetched by name from the
  local SDS cluster; ACM material is sent by the control plane as ADS secrets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from envoy_bootstrap import envoy_types as types
from envoy_bootstrap import names
from envoy_bootstrap.snapshot import Spec

HTTP_ALPN = ["h2", "http/1.1"]


def downstream_socket(tls: Spec, http: bool) -> dict[str, Any]:
    """The ``transport_socket`` a TLS-terminating filter chain uses."""
    common = certificate_fields(tls.get("certificate") or {})
    validation = tls.get("validation")
    if validation:
        common.update(validation_fields(validation, ()))
    if http:
        common["alpn_protocols"] = list(HTTP_ALPN)
    context: dict[str, Any] = {"common_tls_context": common}
    if validation:
        context["require_client_certificate"] = True
    return types.extension(types.TLS_SOCKET_NAME, types.DOWNSTREAM_TLS, context)


def upstream_socket(
    policy: Spec, server_tls: Spec, port: int, default_sans: tuple[str, ...], http2: bool
) -> dict[str, Any] | None:
    """The ``transport_socket`` of an egress cluster, or None for plaintext."""
    tls = policy.get("tls") or {}
    if tls and tls.get("enforce", True) and _covers(tls.get("ports"), port):
        common = validation_fields(tls.get("validation") or {}, default_sans)
        common.update(certificate_fields(tls.get("certificate") or {}))
    elif server_tls.get("mode") in ("STRICT", "PERMISSIVE"):
        common = _server_driven_validation(server_tls, default_sans)
    else:
        return None
    if http2:
        common["alpn_protocols"] = ["h2"]
    context: dict[str, Any] = {"common_tls_context": common}
    if default_sans:
        context["sni"] = default_sans[0]
    return types.extension(types.TLS_SOCKET_NAME, types.UPSTREAM_TLS, context)


def certificate_fields(certificate: Spec) -> dict[str, Any]:
    """A ``ListenerTlsCertificate`` or ``ClientTlsCertificate`` union as common-context
    fields."""
    if "file" in certificate:
        file = certificate["file"]
        pair = {
            "certificate_chain": {"filename": file["certificateChain"]},
            "private_key": {"filename": file["privateKey"]},
        }
        return {"tls_certificates": [pair]}
    if "sds" in certificate:
        return {"tls_certificate_sds_secret_configs": [local_sds(certificate["sds"]["secretName"])]}
    if "acm" in certificate:
        name = names.acm_certificate_secret(certificate["acm"]["certificateArn"])
        return {"tls_certificate_sds_secret_configs": [ads_sds(name)]}
    return {}


def validation_fields(validation: Spec, default_sans: tuple[str, ...]) -> dict[str, Any]:
    """A TLS validation context (trust plus SANs) as common-context fields."""
    trust = validation.get("trust") or {}
    sans = tuple(
        ((validation.get("subjectAlternativeNames") or {}).get("match") or {}).get("exact") or ()
    ) or tuple(default_sans)
    matchers = {"match_typed_subject_alt_names": [san_matcher(s) for s in sans]} if sans else {}
    if "file" in trust:
        context = {"trusted_ca": {"filename": trust["file"]["certificateChain"]}, **matchers}
        return {"validation_context": context}
    if "sds" in trust:
        return _combined(local_sds(trust["sds"]["secretName"]), matchers)
    if "acm" in trust:
        arns = tuple(trust["acm"]["certificateAuthorityArns"])
        return _combined(ads_sds(names.acm_trust_secret(arns)), matchers)
    return {}  # Envoy refuses SAN checks without a trust anchor, so there is nothing to do


def san_matcher(san: str) -> dict[str, Any]:
    """SANs are FQDNs or URIs (e.g. SPIFFE IDs); the SAN type follows the form."""
    san_type = "URI" if "://" in san else "DNS"
    return {"san_type": san_type, "matcher": {"exact": san}}


def local_sds(secret_name: str) -> dict[str, Any]:
    """An SDS secret served by the local SDS agent over ``APPMESH_SDS_SOCKET_PATH``."""
    source = {
        "api_type": "GRPC",
        "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": names.SDS_CLUSTER}}],
    }
    return {
        "name": secret_name,
        "sds_config": {"api_config_source": source, "resource_api_version": "V3"},
    }


def ads_sds(secret_name: str) -> dict[str, Any]:
    """An SDS secret the control plane sends over the ADS stream (ACM material)."""
    return {"name": secret_name, "sds_config": types.ads_source()}


def acm_secrets(
    resources: list[dict[str, Any]], certificates: Mapping[str, Mapping[str, str]], owner: str = ""
) -> tuple[dict[str, Any], ...]:
    """Secrets for every ADS-delivered secret name the resources reference and whose
    ACM material the snapshot carries, sorted by name.

    Only the proxy's own listeners and clusters are walked, so a node gets no secret its
    own resources do not name. A private key goes only to a node of the account that owns
    the certificate (``owner``, the node's or gateway's resource owner): App Mesh allowed
    no cross-account ACM references, and another account's node naming the ARN in the
    same mesh must not get the key because the owner's node made the control plane
    fetch it."""
    wanted = sorted({name for resource in resources for name in _ads_secret_names(resource)})
    secrets = (_secret(name, certificates, owner) for name in wanted)
    return tuple(secret for secret in secrets if secret is not None)


def _server_driven_validation(server_tls: Spec, default_sans: tuple[str, ...]) -> dict[str, Any]:
    acm = (server_tls.get("certificate") or {}).get("acm")
    if not acm:
        return {}
    trust = ads_sds(names.acm_trust_secret((acm["certificateArn"],)))
    sans = {"match_typed_subject_alt_names": [san_matcher(s) for s in default_sans]}
    return _combined(trust, sans if default_sans else {})


def _combined(secret: dict[str, Any], matchers: dict[str, Any]) -> dict[str, Any]:
    if not matchers:
        return {"validation_context_sds_secret_config": secret}
    combined = {
        "default_validation_context": matchers,
        "validation_context_sds_secret_config": secret,
    }
    return {"combined_validation_context": combined}


def _covers(ports: list[int] | None, port: int) -> bool:
    return not ports or port in ports


def _secret(
    name: str, certificates: Mapping[str, Mapping[str, str]], owner: str
) -> dict[str, Any] | None:
    if name.startswith("validation:"):
        arns = name.removeprefix("validation:").split(",")
        pems = [_trust_pem(arn, certificates.get(arn) or {}) for arn in arns]
        if not all(pems):
            return None
        context = {"trusted_ca": {"inline_string": "\n".join(pems)}}
        return types.typed(types.SECRET, {"name": name, "validation_context": context})
    material = certificates.get(name) or {}
    if not material.get("certificate") or not material.get("privateKey"):
        return None
    if owner and _arn_account(name) != owner:
        return None
    chain = "\n".join(p for p in (material["certificate"], material.get("certificateChain")) if p)
    pair = {
        "certificate_chain": {"inline_string": chain},
        "private_key": {"inline_string": material["privateKey"]},
    }
    return types.typed(types.SECRET, {"name": name, "tls_certificate": pair})


def _arn_account(arn: str) -> str:
    parts = arn.split(":", 5)
    return parts[4] if len(parts) == 6 else ""


def _trust_pem(arn: str, material: Mapping[str, str]) -> str:
    """A PCA's own certificate (plus its chain), or an issued certificate's chain."""
    if ":certificate-authority/" in arn:
        parts = (material.get("certificate"), material.get("certificateChain"))
        return "\n".join(p for p in parts if p)
    return material.get("certificateChain", "")


def _ads_secret_names(node: Any) -> Iterator[str]:
    """Walk a resource and yield names of SDS configs that point at ADS."""
    if isinstance(node, dict):
        config = node.get("sds_config")
        if isinstance(config, dict) and "ads" in config and "name" in node:
            yield node["name"]
        for value in node.values():
            yield from _ads_secret_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _ads_secret_names(value)
