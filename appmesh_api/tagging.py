"""TagResource, UntagResource and ListTagsForResource.

Tags belong to the stored record (so they vanish with the resource) but are not
part of its description, so tagging does not bump ``version`` -- a choice: AWS's
behaviour here is unconfirmed (reference §1.6). At most 50 tags per resource;
a request that would exceed it applies none of its tags (TooManyTagsException).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from appmesh_api.arns import parse_arn
from appmesh_api.errors import (
    BadRequestException,
    ForbiddenException,
    NotFoundException,
    TooManyTagsException,
)
from appmesh_api.identity import Caller
from appmesh_api.pagination import paginate
from appmesh_api.store import Record, Store

MAX_TAGS_PER_RESOURCE = 50


class Tagging:
    """The three tag operations over a Store; ``commit`` persists and announces a record."""

    def __init__(self, store: Store, commit: Callable[[Record], None]) -> None:
        self._store = store
        self._commit = commit

    def handler(self, operation: str) -> Callable[[dict, Caller], dict] | None:
        return {
            "TagResource": self.tag,
            "UntagResource": self.untag,
            "ListTagsForResource": self.list_tags,
        }.get(operation)

    def _resource(self, arn: str, caller: Caller, action: str) -> Record:
        parsed = parse_arn(arn)
        if parsed is None:
            raise BadRequestException(
                f"The resourceArn {arn} is not a valid App Mesh ARN. Expected a form like "
                "arn:aws:appmesh:us-east-1:123456789012:mesh/my-mesh/virtualNode/my-node"
            )
        record = self._store.get_by_arn(arn)
        if record is None or parsed.region != caller.region:  # ARNs are regional, as in AWS
            raise NotFoundException(
                f"The resource {arn} does not exist for account {parsed.account}"
            )
        owner = record.data["metadata"]["resourceOwner"]
        if owner != caller.account:
            raise ForbiddenException(
                f"Account {caller.account} cannot {action} {arn}: tags can only be managed "
                f"by the resource owner ({owner})."
            )
        return record

    def tag(self, params: dict[str, Any], caller: Caller) -> dict:
        record = self._resource(params["resourceArn"], caller, "tag")
        tags = dict(record.tags)
        tags.update({tag["key"]: tag.get("value", "") for tag in params["tags"]})
        if len(tags) > MAX_TAGS_PER_RESOURCE:
            raise TooManyTagsException(
                f"None of the tags in this request were applied: the resource would have "
                f"{len(tags)} tags, and the maximum is {MAX_TAGS_PER_RESOURCE}. "
                "Untag some keys first."
            )
        self._commit(Record(record.key, record.data, tags))
        return {}

    def untag(self, params: dict[str, Any], caller: Caller) -> dict:
        record = self._resource(params["resourceArn"], caller, "untag")
        remove = set(params["tagKeys"])
        self._commit(
            Record(
                record.key, record.data, {k: v for k, v in record.tags.items() if k not in remove}
            )
        )
        return {}

    def list_tags(self, params: dict[str, Any], caller: Caller) -> dict:
        arn = params["resourceArn"]
        record = self._resource(arn, caller, "list the tags of")
        page, next_token = paginate(
            sorted(record.tags), params.get("limit"), params.get("nextToken"), f"tags:{arn}"
        )
        return {
            "tags": [{"key": key, "value": record.tags[key]} for key in page],
            "nextToken": next_token,
        }
