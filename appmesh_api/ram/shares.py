"""Resource shares and their invitations, and the one question App Mesh asks of them.

A share is made by the owner of the resources it names; each principal (an account id)
gets an invitation, ``PENDING`` until the receiver accepts or rejects it. A mesh is
shared with an account while an active share names the mesh's ARN and that account's
invitation is ``ACCEPTED``. Every principal is invited, as RAM does outside one
organization; appmesh-local knows no organizations (UNCONFIRMED whether App Mesh
consumers in one organization ever skipped the invitation). State is kept in
``ram.json`` beside the App Mesh database (rewritten on every change), or in memory
with ``--in-memory``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_ACCOUNT = re.compile(r"\d{12}")
_MESH_ARN = re.compile(r"arn:aws[\w-]*:appmesh:([\w-]+):(\d{12}):mesh/([^/]+)")


class RamError(Exception):
    """A RAM error type (botocore's ``ram`` model gives its status)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class Invitation:
    arn: str
    share_arn: str
    sender: str
    receiver: str
    created: float = field(default_factory=time.time)
    status: str = "PENDING"  # ACCEPTED, REJECTED


@dataclass
class Share:
    arn: str
    name: str
    owner: str
    region: str
    resources: list[str]
    principals: list[str]
    allow_external: bool = True
    status: str = "ACTIVE"  # DELETED
    created: float = field(default_factory=time.time)


class Shares:
    """Every share and invitation on this server, saved to ``path`` when given."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.shares: dict[str, Share] = {}
        self.invitations: dict[str, Invitation] = {}
        if path is not None and path.exists():
            saved = json.loads(path.read_text())
            self.shares = {s["arn"]: Share(**s) for s in saved["shares"]}
            self.invitations = {i["arn"]: Invitation(**i) for i in saved["invitations"]}

    def create(
        self, owner: str, region: str, name: str, resources: list[str], principals: list[str]
    ) -> Share:
        for arn in resources:
            _check_own_mesh(arn, owner, region)
        for principal in principals:
            if not _ACCOUNT.fullmatch(principal):
                raise RamError(
                    "InvalidParameterException",
                    f"appmesh-local shares with account ids only, not {principal!r} "
                    "(organizations and IAM principals are not supported)",
                )
        share = Share(
            f"arn:aws:ram:{region}:{owner}:resource-share/{uuid.uuid4()}",
            name,
            owner,
            region,
            list(resources),
            list(principals),
        )
        self.shares[share.arn] = share
        for principal in principals:
            if principal != owner:
                self._invite(share, principal)
        self._save()
        return share

    def _invite(self, share: Share, receiver: str) -> None:
        arn = f"arn:aws:ram:{share.region}:{share.owner}:resource-share-invitation/{uuid.uuid4()}"
        self.invitations[arn] = Invitation(arn, share.arn, share.owner, receiver)

    def respond(self, arn: str, receiver: str, accept: bool) -> Invitation:
        invitation = self.invitations.get(arn)
        if invitation is None or invitation.receiver != receiver:
            raise RamError(
                "ResourceShareInvitationArnNotFoundException",
                f"ResourceShareInvitationArn {arn} could not be found",
            )
        if invitation.status == "ACCEPTED":
            raise RamError(
                "ResourceShareInvitationAlreadyAcceptedException",
                "The invitation has already been accepted",
            )
        if invitation.status == "REJECTED":
            raise RamError(
                "ResourceShareInvitationAlreadyRejectedException",
                "The invitation has already been rejected",
            )
        invitation.status = "ACCEPTED" if accept else "REJECTED"
        self._save()
        return invitation

    def delete(self, arn: str, caller: str) -> None:
        share = self.shares.get(arn)
        if share is None or share.owner != caller or share.status == "DELETED":
            raise RamError("UnknownResourceException", f"ResourceShare {arn} could not be found")
        share.status = "DELETED"
        self._save()

    def received_by(self, account: str) -> list[Invitation]:
        return [i for i in self.invitations.values() if i.receiver == account]

    def owned_by(self, account: str, region: str) -> list[Share]:
        return [s for s in self.shares.values() if s.owner == account and s.region == region]

    def shared_with(self, account: str, region: str) -> list[Share]:
        """Active shares whose invitation to ``account`` was accepted."""
        accepted = {
            i.share_arn
            for i in self.invitations.values()
            if i.receiver == account and i.status == "ACCEPTED"
        }
        return [
            s
            for s in self.shares.values()
            if s.arn in accepted and s.status == "ACTIVE" and s.region == region
        ]

    def allows(self, mesh_arn: str, account: str, region: str) -> bool:
        """Is the mesh shared with ``account`` through an accepted, active share?"""
        return any(mesh_arn in share.resources for share in self.shared_with(account, region))

    def _save(self) -> None:
        if self.path is None:
            return
        document: dict[str, Any] = {
            "shares": [asdict(s) for s in self.shares.values()],
            "invitations": [asdict(i) for i in self.invitations.values()],
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document))
        temporary.replace(self.path)


def _check_own_mesh(arn: str, owner: str, region: str) -> None:
    """RAM shares only what the caller owns; here, only App Mesh meshes (never pretend)."""
    found = _MESH_ARN.fullmatch(arn)
    if found is None:
        raise RamError(
            "InvalidParameterException",
            f"appmesh-local's RAM shares App Mesh meshes only; {arn!r} is not a mesh ARN",
        )
    if found.group(2) != owner or found.group(1) != region:
        raise RamError(
            "UnknownResourceException",
            f"The resource {arn} does not belong to account {owner} in {region}",
        )
