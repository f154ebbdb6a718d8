"""X-Ray groups: named filter expressions, usable in ``group.name`` filters and graphs.

Every account and region has the ``Default`` group (no filter expression: every trace), as
X-Ray's console shows. Up to 25 more can be created (X-Ray's quota).
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from appmesh_api.xray import filters
from appmesh_api.xray.errors import InvalidRequestException

MAX_GROUPS = 25
DEFAULT_GROUP = "Default"
_NO_INSIGHTS = {"InsightsEnabled": False, "NotificationsEnabled": False}


class Groups:
    """The groups of one account and region, by name."""

    def __init__(self, account: str, region: str) -> None:
        self.account, self.region = account, region
        default_arn = f"arn:aws:xray:{region}:{account}:group/{DEFAULT_GROUP}"
        self._groups: dict[str, dict[str, Any]] = {
            DEFAULT_GROUP: {
                "GroupName": DEFAULT_GROUP,
                "GroupARN": default_arn,
                "InsightsConfiguration": dict(_NO_INSIGHTS),
            }
        }

    def all(self) -> list[dict[str, Any]]:
        return [dict(group) for group in self._groups.values()]

    def saved(self) -> list[dict[str, Any]]:
        """The groups as the journal keeps them."""
        return self.all()

    def restore(self, saved: list[dict[str, Any]]) -> None:
        self._groups = {group["GroupName"]: dict(group) for group in saved} or self._groups

    def create(self, name: str, expression: str | None, insights: dict | None) -> dict[str, Any]:
        if name in self._groups:
            raise InvalidRequestException(f"Group {name} already exists")
        if len(self._groups) > MAX_GROUPS:
            raise InvalidRequestException(f"An account can have at most {MAX_GROUPS} groups")
        if expression:
            filters.parse(expression)
        suffix = secrets.token_hex(16).upper()
        group = {
            "GroupName": name,
            "GroupARN": f"arn:aws:xray:{self.region}:{self.account}:group/{name}/{suffix}",
            "InsightsConfiguration": {**_NO_INSIGHTS, **(insights or {})},
        }
        if expression:
            group["FilterExpression"] = expression
        self._groups[name] = group
        return dict(group)

    def find(self, name: str | None, arn: str | None) -> dict[str, Any]:
        if not name and not arn:
            raise InvalidRequestException("Either GroupName or GroupARN must be set")
        for group in self._groups.values():
            if group["GroupName"] == name or group["GroupARN"] == arn:
                return group
        raise InvalidRequestException(f"Group {name or arn} not found")

    def update(
        self, name: str | None, arn: str | None, expression: str | None, insights: dict | None
    ) -> dict[str, Any]:
        group = self.find(name, arn)
        if expression is not None:
            if group["GroupName"] == DEFAULT_GROUP:
                raise InvalidRequestException("The Default group's filter cannot be changed")
            filters.parse(expression)
            group["FilterExpression"] = expression
        if insights:
            group["InsightsConfiguration"] = {**group["InsightsConfiguration"], **insights}
        return dict(group)

    def delete(self, name: str | None, arn: str | None) -> None:
        group = self.find(name, arn)
        if group["GroupName"] == DEFAULT_GROUP:
            raise InvalidRequestException("The Default group cannot be deleted")
        del self._groups[group["GroupName"]]

    def lookup(self, field: str, value: str) -> filters.Expr | Literal[True] | None:
        """For ``group.name``/``group.arn`` filters: the group's expression, True, or None."""
        key = "GroupName" if field == "group.name" else "GroupARN"
        for group in self._groups.values():
            if group[key] == value:
                expression = group.get("FilterExpression")
                return filters.parse(expression) if expression else True
        return None
