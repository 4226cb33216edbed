"""The OpenAPI schema, as the generated TypeScript client should see it.

FastAPI declares its own 422 body; ours is `ErrorResponse`, and so is every other error.
Failures any route can give (422 where it takes input; 408 and 413 where it takes a
body, which is received before the route runs; 500; 503 when busy) are declared here
once rather than on each route.
"""

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.api.errors import ErrorResponse

_REF = "#/components/schemas/{model}"


def _error(status: int) -> dict[str, Any]:
    return {
        "description": HTTPStatus(status).phrase,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorResponse")}}},
    }


def openapi_builder(app: FastAPI, *, unadmitted_paths: frozenset[str]) -> Callable[[], Any]:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
            separate_input_output_schemas=True,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        error_schema = ErrorResponse.model_json_schema(ref_template=_REF)
        components.update(error_schema.pop("$defs", {}))
        components["ErrorResponse"] = error_schema
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation["responses"]
                if "422" in responses:
                    responses["422"] = _error(422)
                if "requestBody" in operation:
                    responses.setdefault("408", _error(408))
                    responses.setdefault("413", _error(413))
                responses.setdefault("500", _error(500))
                if path not in unadmitted_paths:
                    responses.setdefault("503", _error(503))
        app.openapi_schema = schema
        return schema

    return build
