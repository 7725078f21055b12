"""REST API for profiles: read (identifiers masked for viewers) and the bulk upsert. Thin over audiences.profiles."""

import codecs

from django.conf import settings
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser
from rest_framework.response import Response

from audiences import profiles
from audiences.models import Profile
from connectors.api.views import requires
from connectors.identifiers import Slot
from dap import api_input
from dap.openapi import ErrorSerializer
from dap.throttling import ProfileIngestThrottle

# A bulk body above this is refused (10,000 rows of typical profiles are 2 to 5 MB, more than Django's
# DATA_UPLOAD_MAX_MEMORY_SIZE, which is why the bulk call has a parser of its own).
MAX_BULK_BODY_BYTES = 64 * 1024 * 1024

CHANGE_PERMS = ("audiences.add_profile", "audiences.change_profile")


# --- serializers (shapes only; the rules live in audiences.profiles) ------------------------------------------------


class ProfileSerializer(serializers.ModelSerializer):
    identifiers = serializers.SerializerMethodField(
        help_text="Identifiers by slot; masked (e.g. j•••@example.com) for users who may not change profiles."
    )
    identifiers_masked = serializers.SerializerMethodField()

    class Meta:
        model = Profile
        fields = [
            "id",
            "external_id",
            "attributes",
            "consent_ads",
            "identifiers",
            "identifiers_masked",
            "created_at",
            "updated_at",
        ]

    def _masked(self) -> bool:
        return bool(self.context.get("masked", True))

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_identifiers(self, profile) -> dict:
        return profiles.profile_identifiers(profile, masked=self._masked())

    def get_identifiers_masked(self, profile) -> bool:
        return self._masked()


class ProfileFilterSerializer(serializers.Serializer):
    """The profile list's query parameter (text with a null character is a 400)."""

    external_id = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=profiles.EXTERNAL_ID_MAX_LENGTH
    )


class ProfileBulkRowSerializer(serializers.Serializer):
    """One row of a bulk call (documentation of the shape; validation is the service's)."""

    external_id = serializers.CharField(max_length=profiles.EXTERNAL_ID_MAX_LENGTH)
    attributes = serializers.DictField(
        child=serializers.JSONField(allow_null=True),
        required=False,
        help_text="Merged into the stored attributes: given keys replace, a null value removes the key.",
    )
    identifiers = serializers.DictField(
        child=serializers.CharField(allow_null=True),
        required=False,
        help_text=(
            f"By slot ({', '.join(Slot.values)}): a value replaces the slot's value, null removes it. "
            "Email and phone (E.164) may be given as SHA-256 hex digests."
        ),
    )
    consent_ads = serializers.BooleanField(required=False, help_text="New profiles default to true.")


class ProfileBulkRequestSerializer(serializers.Serializer):
    profiles = ProfileBulkRowSerializer(many=True, help_text=f"At most {profiles.MAX_BULK_ROWS} profiles.")
    partial = serializers.BooleanField(
        default=False, help_text="Write the valid rows even when some are invalid (those are reported)."
    )


class _BulkEnvelopeSerializer(serializers.Serializer):
    """What the view checks itself: the rows are validated one by one by the service, errors reported by index."""

    profiles = serializers.ListField(allow_empty=True)  # rows unvalidated here: the service checks each
    partial = serializers.BooleanField(default=False)


class ProfileRowErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the row in `profiles`, from 0.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='Messages by field, e.g. {"identifiers.email": ["…"]}.',
    )


class ProfileBulkResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    errors = ProfileRowErrorSerializer(many=True, help_text="Invalid rows, not written (only with partial).")


class ProfileBulkInvalidSerializer(serializers.Serializer):
    """Invalid rows give `detail` and `errors`; a body that is not JSON gives `detail` only, and a body whose
    envelope is wrong (`profiles` missing or not a list, `partial` not a boolean) gives messages by field instead."""

    detail = serializers.CharField(required=False)
    errors = ProfileRowErrorSerializer(many=True, required=False)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class BulkJSONParser(BaseParser):
    """JSON with the bulk call's own size limit instead of DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default), which
    DRF's JSONParser enforces through request.body. Reads at most the limit (+1 byte) from the stream."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read(MAX_BULK_BODY_BYTES + 1) if stream is not None else b""
        if len(raw) > MAX_BULK_BODY_BYTES:
            raise PayloadTooLarge(f"The body is above {MAX_BULK_BODY_BYTES} bytes; send fewer profiles per call.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return api_input.loads(codecs.decode(raw, encoding))
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


# --- views -----------------------------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Profiles (identifiers masked unless you may change profiles)",
        parameters=[OpenApiParameter("external_id", str, description="Exact external id")],
    ),
    retrieve=extend_schema(summary="One profile with attributes, consent and identifiers by slot"),
)
class ProfileViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Profile.objects.none()
    serializer_class = ProfileSerializer

    def get_permissions(self):
        if self.action == "bulk":
            return [requires(*CHANGE_PERMS)()]
        return super().get_permissions()

    def get_queryset(self):
        if self.action != "list":
            return profiles.profile_list()
        filters = ProfileFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return profiles.profile_list(external_id=filters.validated_data.get("external_id"))

    def get_serializer_context(self):
        user = self.request.user
        return {**super().get_serializer_context(), "masked": not user.has_perm("audiences.change_profile")}

    @extend_schema(
        summary=f"Create or update up to {profiles.MAX_BULK_ROWS} profiles by external id",
        request=ProfileBulkRequestSerializer,
        responses={
            200: ProfileBulkResultSerializer,
            400: OpenApiResponse(
                ProfileBulkInvalidSerializer, description="Invalid rows or an invalid body; nothing was written."
            ),
            409: OpenApiResponse(description="A concurrent request took the same identifier; nothing was written."),
            413: OpenApiResponse(
                ErrorSerializer, description=f"The body is above {MAX_BULK_BODY_BYTES} bytes; nothing was written."
            ),
        },
    )
    @action(detail=False, methods=["post"], parser_classes=[BulkJSONParser], throttle_classes=[ProfileIngestThrottle])
    def bulk(self, request):
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > MAX_BULK_BODY_BYTES:
            raise PayloadTooLarge(f"The body is above {MAX_BULK_BODY_BYTES} bytes; send fewer profiles per call.")
        body = _BulkEnvelopeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            result = profiles.profile_bulk_upsert(
                rows=body.validated_data["profiles"], partial=body.validated_data["partial"], actor=request.user
            )
        except profiles.ProfileWriteConflict as exc:
            raise Conflict(str(exc)) from None
        if result.errors and not body.validated_data["partial"]:
            count = len(result.errors)
            return Response(
                {
                    "detail": f"{count} invalid profile{'s' if count != 1 else ''}; nothing was written.",
                    "errors": [e.as_dict() for e in result.errors],
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(result.as_dict())
