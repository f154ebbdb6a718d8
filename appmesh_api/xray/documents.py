"""Segment documents: X-Ray's checks on upload, and assembling a trace from its documents.

A trace arrives as many documents: whole segments, in-progress placeholders later replaced
by the complete segment, and subsegments streamed on their own (``"type": "subsegment"``
with a ``parent_id``) when an SDK passes its streaming threshold. X-Ray stitches streamed
subsegments back into their parent, so BatchGetTraces, the graph and summaries see one
document per segment; ``assemble`` does the same.

The ``ErrorCode`` values of UnprocessedTraceSegments are not documented by AWS; the codes
here name the field at fault (UNCONFIRMED).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_DOCUMENT_BYTES = 64 * 1024  # X-Ray's segment document limit
_TRACE_ID = re.compile(r"1-[0-9a-fA-F]{8}-[0-9a-fA-F]{24}")
_ENTITY_ID = re.compile(r"[0-9a-fA-F]{16}")
# Unicode letters, numbers and whitespace plus _ . : / % & # = + \ - @ (the devguide's list).
_NAME = re.compile(r"[\w\s.:/%&#=+\\\-@]{1,200}")

Document = dict[str, Any]


class BadSegment(Exception):
    """A document X-Ray would return in UnprocessedTraceSegments."""

    def __init__(self, entity_id: str | None, code: str, message: str) -> None:
        super().__init__(message)
        self.entity_id = entity_id
        self.code = code
        self.message = message

    def as_unprocessed(self) -> dict[str, str]:
        found = {"ErrorCode": self.code, "Message": self.message}
        return {"Id": self.entity_id, **found} if self.entity_id else found


def is_subsegment(document: Document) -> bool:
    return document.get("type") == "subsegment"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_document(text: str) -> Document:
    """Parse and check one uploaded document the way PutTraceSegments does."""
    if len(text.encode("utf-8", "replace")) > MAX_DOCUMENT_BYTES:
        raise BadSegment(None, "DocumentTooLarge", "Segment document exceeds 64 kB")
    try:
        document = json.loads(text)
    except ValueError:
        raise BadSegment(None, "InvalidJson", "Segment document is not valid JSON") from None
    if not isinstance(document, dict):
        raise BadSegment(None, "InvalidJson", "Segment document must be a JSON object")
    _check_fields(document)
    return document


def _check_fields(document: Document) -> None:
    entity_id = document.get("id")
    if not isinstance(entity_id, str) or not entity_id:
        raise BadSegment(None, "MissingParam", "Missing segment ID")
    if not _ENTITY_ID.fullmatch(entity_id):
        raise BadSegment(entity_id, "InvalidId", "Segment ID must be 16 hexadecimal digits")
    required = ["name", "trace_id", "start_time"]
    if is_subsegment(document):
        required.append("parent_id")
    for key in required:
        if document.get(key) is None:
            raise BadSegment(entity_id, "MissingParam", f"Missing {key}")
    if not _TRACE_ID.fullmatch(str(document["trace_id"])):
        raise BadSegment(entity_id, "InvalidTraceId", "Invalid trace ID format")
    if not isinstance(document["name"], str) or not _NAME.fullmatch(document["name"]):
        raise BadSegment(entity_id, "InvalidName", "Invalid segment name")
    _check_times(entity_id, document)


def _check_times(entity_id: str, document: Document) -> None:
    start, end = document["start_time"], document.get("end_time")
    if not _number(start):
        raise BadSegment(entity_id, "InvalidTime", "start_time must be a number")
    if end is None:
        if document.get("in_progress") is not True:
            raise BadSegment(entity_id, "MissingParam", "Missing end_time or in_progress")
        return
    if not _number(end) or end < start:
        raise BadSegment(entity_id, "InvalidTime", "end_time must be a number after start_time")


def walk(entity: Document) -> Iterator[Document]:
    """The entity and every subsegment under it, depth first."""
    yield entity
    for child in entity.get("subsegments") or ():
        if isinstance(child, dict):
            yield from walk(child)


@dataclass
class Assembled:
    """A trace as X-Ray presents it: merged segments, plus subsegments whose parent never came."""

    segments: list[Document]
    orphans: list[Document] = field(default_factory=list)

    def documents(self) -> list[Document]:
        return [*self.segments, *self.orphans]


def assemble(documents: Iterable[Document]) -> Assembled:
    """Merge streamed subsegments into their parents (copies; the stored documents stay)."""
    segments: list[Document] = []
    pending: list[Document] = []
    for document in documents:
        (pending if is_subsegment(document) else segments).append(copy.deepcopy(document))
    segments.sort(key=lambda doc: (doc.get("start_time", 0), doc.get("id", "")))
    index = {entity.get("id"): entity for seg in segments for entity in walk(seg)}
    pending.sort(key=lambda doc: doc.get("start_time", 0))
    while pending:
        ready = [doc for doc in pending if doc.get("parent_id") in index]
        if not ready:
            break
        for doc in ready:
            _attach(index[doc["parent_id"]], doc, index)
        done = {id(doc) for doc in ready}
        pending = [doc for doc in pending if id(doc) not in done]
    return Assembled(segments, pending)


def _attach(parent: Document, streamed: Document, index: dict[Any, Document]) -> None:
    """Put a streamed subsegment under its parent as if it had been sent embedded."""
    child = {k: v for k, v in streamed.items() if k not in ("type", "trace_id", "parent_id")}
    children = [c for c in parent.get("subsegments") or () if c.get("id") != child["id"]]
    children.append(child)
    children.sort(key=lambda entity: entity.get("start_time", 0))
    parent["subsegments"] = children
    for entity in walk(child):
        index[entity.get("id")] = entity
