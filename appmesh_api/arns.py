"""App Mesh ARNs, built and parsed in one place.

Format (reference §1.6): ``arn:aws:appmesh:{region}:{resourceOwner}:mesh/{mesh}``,
then ``/virtualNode/{n}``, ``/virtualRouter/{r}/route/{x}``,
``/virtualGateway/{g}/gatewayRoute/{x}`` and so on. The account is the resource
owner's, which in a shared mesh is not the mesh owner's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appmesh_api.kinds import BY_ARN_SEGMENT, MESH, Kind

_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):appmesh:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"mesh/(?P<path>.+)"
)


@dataclass(frozen=True)
class ParsedArn:
    region: str
    account: str
    mesh: str
    kind: Kind
    parent: str
    name: str


def build_arn(region: str, owner: str, mesh: str, kind: Kind, name: str, parent: str = "") -> str:
    arn = f"arn:aws:appmesh:{region}:{owner}:mesh/{mesh}"
    if kind is MESH:
        return arn
    if kind.parent is not None:
        arn += f"/{kind.parent.arn_segment}/{parent}"
    return f"{arn}/{kind.arn_segment}/{name}"


def parse_arn(arn: str) -> ParsedArn | None:
    """Parse an App Mesh ARN; None when it is not one."""
    found = _ARN.fullmatch(arn)
    if found is None:
        return None
    parts = found.group("path").split("/")
    region, account = found.group("region"), found.group("account")
    if any(not part for part in parts):
        return None
    if len(parts) == 1:
        return ParsedArn(region, account, parts[0], MESH, "", parts[0])
    if len(parts) == 3:
        kind = BY_ARN_SEGMENT.get(parts[1])
        if kind is None or kind is MESH or kind.parent is not None:
            return None
        return ParsedArn(region, account, parts[0], kind, "", parts[2])
    if len(parts) == 5:
        kind = BY_ARN_SEGMENT.get(parts[3])
        if kind is None or kind.parent is None or kind.parent.arn_segment != parts[1]:
            return None
        return ParsedArn(region, account, parts[0], kind, parts[2], parts[4])
    return None
