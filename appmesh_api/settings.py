"""Runtime settings: where state lives, which accounts keys map to, and quotas.

Defaults are AWS's (reference §1.8); each quota can be raised or lowered with
``--quota NAME=N`` or ``APPMESH_LOCAL_QUOTAS="name=n,name=n"``, just as a real
account could ask Service Quotas for more.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"

#: AWS's default App Mesh quotas (name -> (default, quota code)).
QUOTA_DEFAULTS: dict[str, tuple[int, str]] = {
    "meshes_per_account": (15, "L-AC861A39"),
    "virtual_nodes_per_mesh": (200, "L-E043DFB4"),
    "virtual_routers_per_mesh": (200, "L-50F6C35A"),
    "virtual_services_per_mesh": (200, "L-DA7495A7"),
    "routes_per_virtual_router": (50, "L-BB90B7FF"),
    "virtual_gateways_per_mesh": (3, "L-87E74146"),
    "gateway_routes_per_virtual_gateway": (10, "L-F6F26D09"),
    "backends_per_virtual_node": (50, ""),
}


def default_data_dir() -> Path:
    """``$APPMESH_LOCAL_DATA_DIR``, else the XDG data home's ``appmesh-local``.

    A user with no home (an ECS task's ``user`` such as ``1337``, with no passwd entry
    and no ``HOME``) gets ``appmesh-local-<uid>`` in the temporary directory instead of
    a crash: every command builds its help from this, even those that store nothing
    (``xray-daemon``, ``bootstrap``).
    """
    if explicit := os.environ.get("APPMESH_LOCAL_DATA_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME")
    if not base:
        try:
            base = str(Path.home() / ".local" / "share")
        except (RuntimeError, KeyError):
            return Path(tempfile.gettempdir()) / f"appmesh-local-{os.getuid()}"
    return Path(base) / "appmesh-local"


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """Parse ``a=1,b=2`` (or a list joined by commas); a bad item names itself."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what} must look like NAME=VALUE, got {item!r}")
        pairs[name.strip()] = value.strip()
    return pairs


def parse_quotas(text: str) -> dict[str, int]:
    quotas: dict[str, int] = {}
    for name, value in parse_pairs(text, "a quota").items():
        normalized = name.replace("-", "_")
        if normalized not in QUOTA_DEFAULTS:
            known = ", ".join(sorted(QUOTA_DEFAULTS))
            raise ValueError(f"unknown quota {name!r}; known quotas: {known}")
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"quota {name!r} must be a positive integer, got {value!r}")
        quotas[normalized] = int(value)
    return quotas


@dataclass
class Settings:
    """Everything ``appmesh-local serve`` can be told."""

    data_dir: Path | None = None  # None: in memory only
    store: str | None = None  # dynamodb://TABLE?...: resources in DynamoDB, not data_dir
    create_table: bool = False  # create the DynamoDB table if it is missing
    aws_endpoint: str | None = None  # side services go here instead of the embedded moto
    accounts: dict[str, str] = field(default_factory=dict)  # access key id -> account id
    default_account: str = DEFAULT_ACCOUNT
    quotas: dict[str, int] = field(default_factory=dict)
    xds_host: str = "127.0.0.1"
    xds_port: int = 15010  # gRPC ADS for real Envoys; 0 turns it off
    xds_tls_port: int = 0  # gRPC ADS over TLS (App Mesh's Envoy image); 0: off
    xds_tls_cert: str | None = None  # PEM chain for the TLS port; None: issued by a local CA
    xds_tls_key: str | None = None
    #: more names (HOST or HOST:PORT) tasks reach ADS by: in the issued certificate, and
    #: accepted as the authority an ADS call's signature covers
    xds_tls_names: list[str] = field(default_factory=list)
    self_endpoint: str | None = None  # this server's own URL (for calls to embedded services)
    #: the URL other replicas nudge this one at (--replica-url); None: ``self_endpoint``
    replica_url: str | None = None
    xray_daemon_host: str = "127.0.0.1"
    xray_daemon_port: int = 2000  # UDP+TCP X-Ray daemon for SDKs and Envoy; 0 turns it off
    verify_signatures: bool = False  # check SigV4 signatures against ``credentials``
    credentials: dict[str, str] = field(default_factory=dict)  # access key id -> secret key
    moto_admin: bool = False  # serve moto's /moto-api (reads and resets every account)
    xray_max_bytes: int = 256 * 1024 * 1024  # X-Ray documents held over all accounts
    share_all_meshes: bool = False  # every mesh open to every account (no RAM share needed)
    #: signs the control plane's own calls to its side services (Cloud Map), never shown
    internal_secret: str = field(default_factory=lambda: secrets.token_hex(16))

    def side_services_endpoint(self) -> str | None:
        """Where side-service calls made by the control plane itself (Cloud Map) go."""
        return self.aws_endpoint or self.self_endpoint

    def quota(self, name: str) -> int:
        return self.quotas.get(name, QUOTA_DEFAULTS[name][0])

    @staticmethod
    def quota_code(name: str) -> str:
        return QUOTA_DEFAULTS[name][1]

    @classmethod
    def from_environment(cls, **overrides: object) -> Settings:
        """Settings from ``APPMESH_LOCAL_*`` variables, then explicit overrides."""
        settings = cls(
            accounts=parse_pairs(os.environ.get("APPMESH_LOCAL_ACCOUNTS", ""), "an account map"),
            default_account=os.environ.get("APPMESH_LOCAL_DEFAULT_ACCOUNT", DEFAULT_ACCOUNT),
            quotas=parse_quotas(os.environ.get("APPMESH_LOCAL_QUOTAS", "")),
            aws_endpoint=os.environ.get("APPMESH_LOCAL_AWS_ENDPOINT") or None,
            store=os.environ.get("APPMESH_LOCAL_STORE") or None,
            replica_url=os.environ.get("APPMESH_LOCAL_REPLICA_URL") or None,
            credentials=parse_pairs(
                os.environ.get("APPMESH_LOCAL_CREDENTIALS", ""), "a credential (KEY=SECRET)"
            ),
        )
        for name, value in overrides.items():
            if value is not None:
                setattr(settings, name, value)
        return settings
