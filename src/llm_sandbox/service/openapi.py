"""The OpenAPI schema (built from the routes and the request `Body` specs) and a docs page
that lists the endpoints from it (plain HTML, nothing fetched from elsewhere)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Route

from llm_sandbox.service.schema import Body

PUBLIC = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs"})


def _summary(route: Route) -> str:
    doc = (route.endpoint.__doc__ or route.name.replace("_", " ")).strip()
    return doc.splitlines()[0]


def schema(routes: Sequence[BaseRoute], bodies: dict[str, Body], version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation: dict[str, Any] = {
                "summary": _summary(route),
                "operationId": f"{route.name}_{method.lower()}",
                "responses": {
                    "200": {"description": "OK"},
                    "default": {
                        "description": "An error (Piston's shape on /api/v2)",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "$ref": "#/components/schemas/"
                                    + (
                                        "PistonError"
                                        if route.path.startswith("/api/v2/")
                                        else "Error"
                                    )
                                }
                            }
                        },
                    },
                },
            }
            if route.path not in PUBLIC:
                operation["security"] = [{"bearer": []}]
            if "{id}" in route.path:
                operation["parameters"] = [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ]
            body = bodies.get(route.path)
            if body is not None and method == "POST":
                components[body.name] = body.openapi()
                operation["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{body.name}"}
                        }
                    },
                }
            paths.setdefault(route.path, {})[method.lower()] = operation
    components["Error"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string", "description": "Stable, for programs."},
                    "message": {"type": "string", "description": "What to change."},
                },
            }
        },
    }
    components["PistonError"] = {"type": "object", "properties": {"message": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "LLM Sandbox", "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def docs_page(spec: dict[str, Any]) -> str:
    rows = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            auth = "key" if "security" in operation else "public"
            fields = ""
            ref = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            if ref:
                name = ref["schema"]["$ref"].rsplit("/", 1)[1]
                props = spec["components"]["schemas"][name]["properties"]
                fields = ", ".join(props)
            rows.append(
                f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(operation['summary'])}</td><td>{auth}</td>"
                f"<td>{html.escape(fields)}</td></tr>"
            )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>LLM Sandbox API</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;"
        "border-bottom:1px solid #ddd;text-align:left}</style></head><body>"
        "<h1>LLM Sandbox API</h1><p>Schema: <a href='/openapi.json'>/openapi.json</a>. "
        "Send <code>Authorization: Bearer KEY</code> (<code>llm-sandbox keys create NAME</code>)."
        "</p><table><tr><th>Method</th><th>Path</th><th>What</th><th>Auth</th>"
        "<th>Body fields</th></tr>" + "".join(rows) + "</table></body></html>"
    )
