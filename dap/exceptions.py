"""API error handling: service-layer errors become clear HTTP answers."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from connectors.errors import InUseError


def nest_errors(message_dict: dict[str, list[str]]) -> dict:
    """{"settings.url": [...]} -> {"settings": {"url": [...]}}: field errors nested like the request body."""
    nested: dict = {}
    for field, messages in message_dict.items():
        head, _, rest = field.partition(".")
        if rest:
            nested.setdefault(head, {})
            if isinstance(nested[head], dict):
                nested[head][rest] = messages
        else:
            nested[head] = messages
    return nested


def exception_handler(exc, context):
    if isinstance(exc, InUseError):
        return Response(
            {"detail": str(exc), "usages": [u.as_dict() for u in exc.usages]},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, RequestDataTooBig):
        # Django refuses to read a body above DATA_UPLOAD_MAX_MEMORY_SIZE (request.body, which DRF's parsers read);
        # left to Django it would be a bare HTML 400.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            {"detail": f"The request body is above {limit} bytes."}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        )
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            detail = nest_errors(exc.message_dict)
        else:
            detail = {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail=detail)
    return drf_exception_handler(exc, context)


def page_not_found(request, exception):
    """handler404: an API path nothing matches (e.g. /api/v1/connectors/abc/) answers JSON like every other API
    error; pages keep Django's HTML page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)
