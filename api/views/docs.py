"""/api/docs/: a reference page rendered by the server from the OpenAPI schema.

It needs no script at all; the interactive Swagger UI (/api/docs/swagger/) loads its
scripts from SWAGGER_UI_DIST, by default our own static copy.
"""

import json

from django.shortcuts import render
from django.views.decorators.cache import cache_page
from drf_spectacular.generators import SchemaGenerator

METHODS = ("get", "post", "put", "patch", "delete")


def _ref(schema: dict | None) -> str:
    if not schema:
        return ""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if schema.get("type") == "array" and "items" in schema:
        return f"[{_ref(schema['items'])}]"
    return schema.get("type", "")


@cache_page(300)
def docs_page(request):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = []
    for path_name, item in schema.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if not op:
                continue
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json", {})
            request_examples = [
                json.dumps(e.get("value"), ensure_ascii=False, indent=2) for e in body.get("examples", {}).values()
            ]
            responses = []
            for code, response in op.get("responses", {}).items():
                content = (response.get("content") or {}).get("application/json", {})
                responses.append(
                    {
                        "status": code,
                        "description": response.get("description", ""),
                        "schema": _ref(content.get("schema")),
                        "examples": [
                            json.dumps(e.get("value"), ensure_ascii=False, indent=2)
                            for e in content.get("examples", {}).values()
                        ],
                    }
                )
            operations.append(
                {
                    "id": op.get("operationId"),
                    "method": method.upper(),
                    "path": path_name,
                    "tag": (op.get("tags") or [""])[0],
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "parameters": op.get("parameters", []),
                    "request_schema": _ref(body.get("schema")),
                    "request_examples": request_examples,
                    "responses": responses,
                    "security": [next(iter(s), "") for s in op.get("security", []) if s],
                }
            )
    components = {
        name: json.dumps(component, ensure_ascii=False, indent=2)
        for name, component in sorted(schema.get("components", {}).get("schemas", {}).items())
    }
    return render(
        request, "api/docs.html", {"info": schema.get("info", {}), "operations": operations, "components": components}
    )
