"""API error handling: service-layer errors become clear HTTP answers."""

from django.core.exceptions import ValidationError as DjangoValidationError
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
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            detail = nest_errors(exc.message_dict)
        else:
            detail = {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail=detail)
    return drf_exception_handler(exc, context)
