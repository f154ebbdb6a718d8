"""The App Mesh API, called in process, exactly as an HTTP client would call it.

The controller reconciled through the AWS SDK; so does this package, without a
socket: botocore serializes the request from its model (with the SDK's own parameter
validation), appmesh-local's endpoint handles it as it handles any HTTP request
(same parsing, checks, errors, change feed), and botocore parses the answer. A
manifest therefore gets exactly the errors ``aws appmesh`` would get.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from botocore.validate import ParamValidationError, validate_parameters

from appmesh_api.identity import Caller
from appmesh_api.model import service_model

# (method, path, query, body, caller) -> (status, headers, payload): AppMeshApi.handle
Handle = Callable[[str, str, dict[str, str], bytes, Caller], tuple[int, dict[str, str], bytes]]


class AppMeshCallError(Exception):
    """An App Mesh error answer: its code (``ConflictException``...) and message."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


class InProcessAppMesh:
    """``call("CreateMesh", meshName=...)`` for one account and region."""

    def __init__(self, handle: Handle, account: str, region: str) -> None:
        self._handle = handle
        self._caller = Caller(account, region)
        self.account, self.region = account, region
        self._model = service_model()
        self._serializer = create_serializer(self._model.metadata["protocol"])
        self._parser = create_parser(self._model.metadata["protocol"])

    def call(self, operation_name: str, **params: Any) -> dict[str, Any]:
        operation = self._model.operation_model(operation_name)
        assert operation.input_shape is not None and operation.output_shape is not None
        try:
            validate_parameters(params, operation.input_shape)
        except ParamValidationError as exc:
            raise AppMeshCallError("BadRequestException", str(exc), 400) from exc
        request = self._serializer.serialize_to_request(params, operation)
        url = urlsplit(request["url_path"])
        query = {k: str(v) for k, v in request["query_string"].items()}
        query.update(parse_qsl(url.query))
        body = request["body"]
        if isinstance(body, str):
            body = body.encode()
        status, answer_headers, payload = self._handle(
            request["method"], url.path, query, body or b"", self._caller
        )
        if status >= 300:
            code = answer_headers.get("x-amzn-ErrorType", "UnknownError").split(":")[0]
            try:
                message = json.loads(payload).get("message", "")
            except ValueError:
                message = payload.decode(errors="replace")
            raise AppMeshCallError(code, message, status)
        response = {"status_code": status, "headers": answer_headers, "body": payload}
        parsed = self._parser.parse(response, operation.output_shape)
        parsed.pop("ResponseMetadata", None)
        return parsed
