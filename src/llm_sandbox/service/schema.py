"""Request bodies: declared once as `Body` specs, parsed strictly, and described in OpenAPI.

Malformed JSON, a field of the wrong type, a missing required field or an unknown field is an
`ApiError` (422 on our API; the Piston adapter turns it into Piston's 400).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llm_sandbox.service.errors import ApiError

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


@dataclass(frozen=True)
class Field:
    type: str
    description: str
    required: bool = False
    items: str | None = None
    """For arrays: the JSON type of the items."""
    nullable: bool = False


@dataclass(frozen=True)
class Body:
    name: str
    fields: dict[str, Field]

    def openapi(self) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        for name, spec in self.fields.items():
            prop: dict[str, Any] = {"type": spec.type, "description": spec.description}
            if spec.items:
                prop["items"] = {"type": spec.items}
            if spec.nullable:
                prop["nullable"] = True
            properties[name] = prop
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": properties,
        }
        required = [n for n, f in self.fields.items() if f.required]
        if required:
            schema["required"] = required
        return schema


def _is(value: Any, json_type: str) -> bool:
    if isinstance(value, bool) and json_type in ("integer", "number"):
        return False
    return isinstance(value, _JSON_TYPES[json_type])


def parse(raw: bytes, body: Body, status: int = 422) -> dict[str, Any]:
    """The fields of `raw` (a JSON object) checked against `body`."""
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(
            status, "malformed_json", f"the request body is not valid JSON ({exc}); send JSON"
        ) from exc
    if not isinstance(data, dict):
        raise ApiError(status, "invalid_body", "the request body must be a JSON object")
    unknown = sorted(set(data) - set(body.fields))
    if unknown:
        raise ApiError(
            status,
            "unknown_field",
            f"unknown field(s) {', '.join(unknown)}; known fields: {', '.join(body.fields)}",
        )
    for name, spec in body.fields.items():
        if name not in data:
            if spec.required:
                raise ApiError(status, "missing_field", f"the field {name!r} is required")
            continue
        value = data[name]
        if value is None and (spec.nullable or not spec.required):
            continue
        if not _is(value, spec.type):
            raise ApiError(
                status,
                "invalid_field",
                f"the field {name!r} must be a JSON {spec.type}, got {type(value).__name__}",
            )
        if spec.items and not all(_is(item, spec.items) for item in value):
            raise ApiError(
                status, "invalid_field", f"the items of {name!r} must be JSON {spec.items}s"
            )
    return data
