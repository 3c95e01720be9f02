"""Request bodies read by hand (so parsing runs in a worker thread, after a cheap shape check).

The endpoints take the raw bytes: ``check_shape`` with :func:`body_bounds` refuses a body more complex
than any valid request before it is parsed, then :func:`parse_body` runs the strict JSON parser and the
request model inside the admission thread, failing exactly as FastAPI's own parsing does (422).
"""

from __future__ import annotations

import json

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from features.online import FeatureSpace
from serving.admission import TOP_LEVEL
from serving.schemas import loads_strict
from serving.service import Limits, allowed_fields


def parse_body(model_cls: type[BaseModel], body: bytes, content_type: str) -> BaseModel:
    """Strict JSON (no NaN/Infinity) then the request model, failing as FastAPI does (422 with reasons)."""
    if "json" not in content_type:
        raise RequestValidationError([{"type": "model_attributes_type", "loc": ("body",),
                                       "msg": "Input should be a valid dictionary or object to extract fields from"}])
    try:
        data = loads_strict(body)
    except json.JSONDecodeError as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
                                       "ctx": {"error": exc.msg}}]) from None
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]) \
            from None


def body_bounds(space: FeatureSpace, limits: Limits, candidates: bool, history: bool) -> dict[str, int]:
    """The most objects and separators a valid body for this model can hold (``admission.check_shape``)."""
    fields = allowed_fields(space)
    items = (limits.max_candidates if candidates else 0) + (limits.max_history if history else 0)
    per_item = max(len(fields["candidates"]) if candidates else 0, len(fields["history"]) if history else 0)
    mappings = len(fields["user"]) + len(fields["context"]) + TOP_LEVEL
    return {"objects": items + TOP_LEVEL, "separators": items * per_item + mappings}


def json_body(models: type[BaseModel]) -> dict:
    """``openapi_extra`` declaring a request body (the endpoint reads the raw bytes itself)."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{models.__name__}"}}}}}


