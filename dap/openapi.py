"""OpenAPI schema generation: every operation documents the error answers it can give (dap/exceptions.py shapes them),
so clients and the schema fuzz test (tests/api_fuzz) see the whole contract, not only the happy path."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in words.")


INVALID = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="Invalid input; nothing was changed. Messages per field, nested like the request body "
    '(`{"settings": {"url": ["…"]}}`), `non_field_errors`, or `detail` for a body that is not valid JSON.',
)
UNAUTHENTICATED = OpenApiResponse(ErrorSerializer, description="No valid session or token.")
FORBIDDEN = OpenApiResponse(ErrorSerializer, description="The user lacks the permission this operation needs.")
NOT_FOUND = OpenApiResponse(ErrorSerializer, description="No such object.")
TOO_LARGE = OpenApiResponse(
    ErrorSerializer, description="The body is above the size limit (DATA_UPLOAD_MAX_MEMORY_SIZE); nothing was changed."
)
UNSUPPORTED_MEDIA_TYPE = OpenApiResponse(
    ErrorSerializer, description="The body's Content-Type is not one the operation reads; nothing was changed."
)
THROTTLED = OpenApiResponse(
    ErrorSerializer, description="Too many calls: wait the `Retry-After` header's seconds; nothing was changed."
)

# Query parameters that never answer 400 (DRF's limit/offset pagination ignores values it cannot read).
_LENIENT_QUERY = {"limit", "offset"}


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema, plus the error responses of the operation where it does not declare them:
    400 when it reads a body or query parameters, 413 and 415 when it reads a body, 401 always (every API operation
    needs a user), 403 when a permission beyond being signed in is checked, 404 when the path names an object, 429
    when the view throttles."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        params = operation.get("parameters", [])
        errors = {"401": UNAUTHENTICATED}
        reads_query = any(p["in"] == "query" and p["name"] not in _LENIENT_QUERY for p in params)
        if "requestBody" in operation or reads_query:
            errors["400"] = INVALID
        if "requestBody" in operation:
            errors["413"] = TOO_LARGE
            errors["415"] = UNSUPPORTED_MEDIA_TYPE
        if not all(isinstance(p, IsAuthenticated) for p in self.view.get_permissions()):
            errors["403"] = FORBIDDEN
        if any(p["in"] == "path" for p in params):
            errors["404"] = NOT_FOUND
        if self.view.get_throttles():
            errors["429"] = THROTTLED
        responses = operation["responses"]
        for code, response in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code)
        operation["responses"] = dict(sorted(responses.items()))
        return operation


def refused(description: str) -> OpenApiResponse:
    """A 400 for an operation the services may refuse in the object's current state (messages like INVALID's)."""
    return OpenApiResponse(OpenApiTypes.OBJECT, description=description)
