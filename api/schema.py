"""The OpenAPI schema lists every status an operation can answer, derived from the view.

Views declare their success answer and the refusals only they know (409, 422, ...) with
``@extend_schema``; the statuses that follow from how a view is built are added here, in
one place, so a new view cannot forget them:

- 400 when the operation takes input: a body, query or header parameters (a cursor too);
- 401 when it authenticates the caller (a bad token is refused whatever the permission),
  and 403 as well when it needs a permission;
- 404 when its path names an object;
- 406 for every operation (an Accept header that JSON cannot satisfy);
- 415 when it takes a body (anything but application/json);
- 429 when it is throttled;
- 503 for every operation: the database (or a platform it needs) is not answering.

Each added answer has the error shape and an example, like the declared ones.
"""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework.permissions import AllowAny

from .errors import ErrorSerializer

# A kept answer replayed to a retry with the same Idempotency-Key says so (api.views.common.idempotent);
# the statuses raised before the view runs (credentials, content negotiation, throttles) are never kept.
_REPLAYED = {
    "Idempotent-Replayed": {
        "schema": {"type": "string", "enum": ["true"]},
        "description": "Present on a replay: the first answer to this Idempotency-Key, sent again.",
    }
}
_NEVER_KEPT = {401, 403, 406, 415, 429}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before trying again."}}

# status -> (description, example code, example message, example fields)
_DERIVED = {
    400: (
        "Bad input (code invalid and others); fields names the wrong fields.",
        "invalid",
        "Some fields are not valid.",
        {"amount": "A valid number is required."},
    ),
    401: (
        "No credentials, or invalid or expired ones.",
        "not_authenticated",
        "Authentication credentials were not provided.",
        None,
    ),
    403: (
        "The caller may not do this.",
        "permission_denied",
        "You do not have permission to perform this action.",
        None,
    ),
    404: ("Absent, or not the caller's to see.", "not_found", "Not found.", None),
    406: (
        "The Accept header allows no JSON; the API answers application/json only.",
        "not_acceptable",
        "Could not satisfy the request Accept header.",
        None,
    ),
    415: (
        "The body is not application/json.",
        "unsupported_media_type",
        'Unsupported media type "text/plain" in request.',
        None,
    ),
    429: (
        "Too many requests; see Retry-After.",
        "throttled",
        "Request was throttled. Expected available in 42 seconds.",
        None,
    ),
    503: (
        "The database, or a platform the server depends on, did not answer; retry after Retry-After seconds.",
        "service_unavailable",
        "The service is briefly unavailable. Please try again in a moment.",
        None,
    ),
}

# Statuses a view can answer that nothing in its classes shows, by operation id. Prefer
# declaring them on the view with @extend_schema(responses=...); this is for the rest.
EXTRA_STATUSES: dict[str, set[int]] = {}

_INVALID_CURSOR = {
    "error": {
        "code": "invalid_cursor",
        "message": "This cursor is not one the API gave out. Start again from the first page (no cursor).",
        "fields": {"cursor": "This cursor is not one the API gave out. Start again from the first page (no cursor)."},
    }
}


def _example_body(code: str, message: str, fields: dict | None) -> dict:
    body = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


def _response(status: int) -> OpenApiResponse:
    description, code, message, fields = _DERIVED[status]
    return OpenApiResponse(
        ErrorSerializer,
        description=description,
        examples=[
            OpenApiExample(
                code, value=_example_body(code, message, fields), response_only=True, status_codes=[str(status)]
            )
        ],
    )


class AutoSchema(SpectacularAutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        for status in self.error_statuses(operation):
            key = str(status)
            if key not in responses:
                responses[key] = self._get_response_for_code(_response(status), key)
            elif status == 503:
                # A view that declares its own 503 (a platform it calls) can still lose the database.
                _, code, message, fields = _DERIVED[503]
                responses[key]["description"] = _DERIVED[503][0]
                examples = responses[key].get("content", {}).get("application/json", {}).get("examples")
                if examples is not None:
                    examples["ServiceUnavailable"] = {"value": _example_body(code, message, fields), "summary": code}
            if status in (429, 503):
                responses[key].setdefault("headers", {}).update(_RETRY_AFTER)
        if any(p.get("in") == "header" and p["name"] == "Idempotency-Key" for p in operation.get("parameters", [])):
            for key, response in responses.items():
                if int(key) < 500 and int(key) not in _NEVER_KEPT:
                    response.setdefault("headers", {}).update(_REPLAYED)
        params = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
        examples = responses.get("400", {}).get("content", {}).get("application/json", {}).get("examples")
        if "cursor" in params and examples is not None:
            examples["InvalidCursor"] = {"value": _INVALID_CURSOR, "summary": "invalid_cursor"}
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def error_statuses(self, operation: dict) -> set[int]:
        """The error statuses this operation can answer because of how its view is built."""
        view = self.view
        statuses = {406, 503}
        takes = {p.get("in") for p in operation.get("parameters", [])}
        if operation.get("requestBody"):
            statuses |= {400, 415}
        if takes & {"query", "header", "cookie"}:
            statuses.add(400)
        if "path" in takes:
            statuses.add(404)
        if view.get_authenticators():
            statuses.add(401)
        if any(not isinstance(permission, AllowAny) for permission in view.get_permissions()):
            statuses |= {401, 403}
        if view.get_throttles():
            statuses.add(429)
        return statuses | EXTRA_STATUSES.get(operation["operationId"], set())
