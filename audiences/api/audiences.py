"""REST API for audiences: CRUD, refresh, static-list entries, members, recent changes and connections to partner
configurations. Thin: serializers shape, `audiences.services` decides, `audiences.selectors` reads."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from audiences import selectors, services
from audiences.models import Audience, AudienceConnection, AudienceMembership, AudienceMembershipChange
from connectors.api.views import requires
from connectors.identifiers import Slot
from dap.api_input import IdField, JSONField
from dap.openapi import refused

# --- serializers (shapes only; the rules live in audiences.services and the partner descriptors) --------------------


class LastRefreshSerializer(serializers.Serializer):
    enters = serializers.IntegerField()
    exits = serializers.IntegerField()
    seconds = serializers.FloatField(allow_null=True)


class AudienceSerializer(serializers.ModelSerializer):
    # A plain string here: the enum is declared once, on the create request ("kind" names several enums in the API).
    kind = serializers.CharField(read_only=True, help_text="rule_based or static.")
    size = serializers.SerializerMethodField(help_text="Members after the last refresh.")
    connection_count = serializers.SerializerMethodField(help_text="Connections sending (not being removed).")
    rule_text = serializers.SerializerMethodField(help_text="The rule in words.")
    last_refresh = serializers.SerializerMethodField()

    class Meta:
        model = Audience
        fields = [
            "id",
            "name",
            "description",
            "kind",
            "rule",
            "rule_text",
            "size",
            "connection_count",
            "refreshed_at",
            "last_refresh",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_size(self, obj) -> int:
        return obj.size if hasattr(obj, "size") else obj.member_count

    def get_connection_count(self, obj) -> int:
        if hasattr(obj, "connection_count"):
            return obj.connection_count
        return obj.connections.filter(removing_since__isnull=True).count()

    def get_rule_text(self, obj) -> str:
        return selectors.rule_text(obj.rule)

    @extend_schema_field(LastRefreshSerializer(allow_null=True))
    def get_last_refresh(self, obj) -> dict | None:
        if obj.refreshed_at is None:
            return None
        return {"enters": obj.last_refresh_enters, "exits": obj.last_refresh_exits, "seconds": obj.last_refresh_seconds}


RULE_HELP = (
    'Rule-based audiences: {"all": [...]} or {"any": [...]} of conditions {"attribute", "op", "value"} '
    "(ops: equals, not_equals, in, contains, gt, gte, lt, lte, exists, within_days); groups nest. "
    "Static lists have none."
)


class AudienceFilterSerializer(serializers.Serializer):
    """The audience list's query parameters (text with a null character, or an unknown kind, is a 400)."""

    search = serializers.CharField(required=False, allow_blank=True, max_length=200)
    kind = serializers.ChoiceField(
        choices=Audience.Kind.choices,
        required=False,
        allow_blank=True,
        error_messages={"invalid_choice": f"Choose one of: {', '.join(Audience.Kind.values)}."},
    )


class AudienceCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=Audience.Kind.choices, default=Audience.Kind.RULE_BASED)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    rule = JSONField(required=False, allow_null=True, help_text=RULE_HELP)


class AudienceUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    rule = JSONField(required=False, allow_null=True, help_text=RULE_HELP + " The kind never changes.")


class OutboxCountsSerializer(serializers.Serializer):
    pending = serializers.IntegerField(help_text="Deliveries queued.")
    skipped = serializers.IntegerField(help_text="Recorded as skipped: the connector is deactivated.")
    replaced = serializers.IntegerField(help_text="Older pending deliveries of the same profiles replaced.")
    rows = serializers.IntegerField(help_text="Outbox rows written (pending + skipped).")


class RefreshResultSerializer(serializers.Serializer):
    audience_id = serializers.IntegerField()
    refreshed = serializers.BooleanField(help_text="False when another refresh of this audience was running.")
    skipped = serializers.CharField(help_text='Why nothing was computed ("locked"), else "".')
    enters = serializers.IntegerField()
    exits = serializers.IntegerField()
    size = serializers.IntegerField()
    seconds = serializers.FloatField()
    outbox = OutboxCountsSerializer()


class EntriesUploadSerializer(serializers.Serializer):
    slot = serializers.CharField(help_text=f"Identifier slot of the values: {', '.join(Slot.values)}.")
    values = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        help_text=f"At most {services.MAX_ENTRIES_PER_UPLOAD} values, normalised like profile identifiers.",
    )
    replace = serializers.BooleanField(
        default=False, help_text="Make the slot's entries exactly these values (the other slots are kept)."
    )


class EntriesSummarySerializer(serializers.Serializer):
    total = serializers.IntegerField()
    by_slot = serializers.DictField(child=serializers.IntegerField())


class EntriesResultSerializer(serializers.Serializer):
    added = serializers.IntegerField()
    removed = serializers.IntegerField()
    total = serializers.IntegerField()
    refresh = RefreshResultSerializer()


class MemberSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(source="profile.external_id", allow_null=True)

    class Meta:
        model = AudienceMembership
        fields = ["profile", "external_id", "entered_at"]
        read_only_fields = fields


class ChangeSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(allow_null=True, read_only=True, help_text="None: the profile was deleted.")

    class Meta:
        model = AudienceMembershipChange
        fields = ["profile", "external_id", "kind", "at"]
        read_only_fields = fields


class ConnectorRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()


class PartnerRefSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()


class ConnectionSerializer(serializers.ModelSerializer):
    partner_config_name = serializers.CharField(source="partner_config.name")
    connector = serializers.SerializerMethodField()
    partner = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField(
        help_text="active; removing (deleted with remove_members: removals still going out); connector_deactivated."
    )

    class Meta:
        model = AudienceConnection
        fields = [
            "id",
            "audience",
            "partner_config",
            "partner_config_name",
            "connector",
            "partner",
            "partner_audience_id",
            "profile_variables",
            "status",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(ConnectorRefSerializer)
    def get_connector(self, obj) -> dict:
        c = obj.partner_config.connector
        return {"id": c.pk, "name": c.name, "status": c.status}

    @extend_schema_field(PartnerRefSerializer)
    def get_partner(self, obj) -> dict:
        c = obj.partner_config.connector
        return {"key": c.partner_key, "name": c.partner_name}

    def get_status(self, obj) -> str:
        if obj.removing_since:
            return "removing"
        if not obj.partner_config.connector.is_active:
            return "connector_deactivated"
        return "active"


class ConnectionCreatedSerializer(ConnectionSerializer):
    adds_queued = serializers.IntegerField(read_only=True, help_text="Adds queued for the current members.")
    adds_skipped = serializers.IntegerField(
        read_only=True, help_text="Adds recorded as skipped (the connector is deactivated)."
    )

    class Meta(ConnectionSerializer.Meta):
        fields = [*ConnectionSerializer.Meta.fields, "adds_queued", "adds_skipped"]
        read_only_fields = fields


class ConnectionWriteSerializer(serializers.Serializer):
    partner_config = IdField(help_text="A configuration of a connector whose partner takes audiences.")
    partner_audience_id = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=200,
        help_text="The partner-side audience, segment, list or group: format per partner (its audience_id_field in "
        "GET /api/v1/partners/{key}/).",
    )
    profile_variables = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Attribute names sent with each profile, for partners that take profile variables.",
    )


class ConnectionUpdateSerializer(serializers.Serializer):
    partner_audience_id = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=200)
    profile_variables = serializers.ListField(child=serializers.CharField(), required=False)


class ConnectionRemovingSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["removing"])
    removes_queued = serializers.IntegerField()


# --- views ----------------------------------------------------------------------------------------------------------


def _bool_param(request, name: str) -> bool:
    raw = request.query_params.get(name, "false").strip().lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no", ""):
        return False
    raise ValidationError({name: ["Enter true or false."]})


REMOVE_MEMBERS = OpenApiParameter(
    "remove_members",
    bool,
    description="Queue a removal for every current member first (in the same transaction); the connection is "
    "listed as removing until they are sent.",
)


@extend_schema_view(
    list=extend_schema(
        summary="Audiences with their size and connections",
        parameters=[
            OpenApiParameter("search", str, description="Part of the name"),
            OpenApiParameter("kind", str, enum=Audience.Kind.values),
        ],
    ),
    retrieve=extend_schema(summary="An audience"),
    create=extend_schema(
        summary="Create a rule-based audience or a static list",
        request=AudienceCreateSerializer,
        responses={201: AudienceSerializer},
    ),
    update=extend_schema(
        summary="Edit an audience (a new rule is refreshed at once)", request=AudienceUpdateSerializer
    ),
    partial_update=extend_schema(summary="Edit an audience", request=AudienceUpdateSerializer),
    destroy=extend_schema(
        summary="Delete an audience (refused while it is connected)",
        responses={204: None, 400: refused("The audience is still connected: delete its connections first.")},
    ),
)
class AudienceViewSet(viewsets.ModelViewSet):
    serializer_class = AudienceSerializer

    def get_queryset(self):
        if self.action == "list":
            filters = AudienceFilterSerializer(data=self.request.query_params)
            filters.is_valid(raise_exception=True)
            return selectors.audience_list(**filters.validated_data)
        return selectors.audience_list()

    def get_permissions(self):
        perms = {
            "refresh": ("audiences.change_audience",),
            "members": ("audiences.view_audiencemembership",),
            "changes": ("audiences.view_audiencemembershipchange",),
        }
        if self.action in perms:
            return [requires(*perms[self.action])()]
        if self.action == "entries":
            needed = "audiences.change_audience" if self.request.method == "POST" else "audiences.view_audience"
            return [requires(needed)()]
        return super().get_permissions()

    def _detail(self, audience, code=status.HTTP_200_OK):
        return Response(AudienceSerializer(selectors.audience_get(pk=audience.pk)).data, status=code)

    def create(self, request, *args, **kwargs):
        body = AudienceCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        audience = services.audience_create(actor=request.user, **body.validated_data)
        return self._detail(audience, status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        audience = self.get_object()
        body = AudienceUpdateSerializer(data=request.data, partial=kwargs.get("partial", False))
        body.is_valid(raise_exception=True)
        services.audience_update(audience=audience, actor=request.user, **body.validated_data)
        return self._detail(audience)

    def destroy(self, request, *args, **kwargs):
        services.audience_delete(audience=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Refresh now: compute the members and queue an add per enter and a remove per exit",
        request=None,
        responses={200: RefreshResultSerializer, 400: refused("The audience has no rule yet.")},
    )
    @action(detail=True, methods=["post"])
    def refresh(self, request, pk=None):
        result = services.audience_refresh(audience=self.get_object())
        return Response(RefreshResultSerializer(result.as_dict()).data)

    @extend_schema(
        methods=["GET"],
        summary="A static list's uploaded entries, counted per slot",
        responses=EntriesSummarySerializer,
    )
    @extend_schema(
        methods=["POST"],
        summary="Upload identifier values to a static list (its members are the profiles holding one)",
        request=EntriesUploadSerializer,
        responses=EntriesResultSerializer,
    )
    @action(detail=True, methods=["get", "post"])
    def entries(self, request, pk=None):
        audience = self.get_object()
        if request.method == "GET":
            return Response(selectors.audience_entry_summary(audience=audience))
        body = EntriesUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = services.audience_entries_upload(audience=audience, actor=request.user, **body.validated_data)
        return Response(EntriesResultSerializer(result.as_dict()).data)

    @extend_schema(summary="Members, in profile id order (paginated)", responses=MemberSerializer(many=True))
    @action(detail=True, methods=["get"])
    def members(self, request, pk=None):
        page = self.paginate_queryset(selectors.audience_members(audience=self.get_object()))
        return self.get_paginated_response(MemberSerializer(page, many=True).data)

    @extend_schema(
        summary="Recent enters or exits, newest first (paginated; kept for DAP_AUDIENCE_CHANGE_RETENTION_DAYS)",
        parameters=[OpenApiParameter("kind", str, enum=AudienceMembershipChange.Kind.values, required=True)],
        responses=ChangeSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def changes(self, request, pk=None):
        kind = request.query_params.get("kind", "")
        if kind not in AudienceMembershipChange.Kind.values:
            raise ValidationError({"kind": ["Choose enter or exit."]})
        queryset = selectors.audience_recent_changes(audience=self.get_object(), kind=kind)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(ChangeSerializer(page, many=True).data)


@extend_schema_view(
    list=extend_schema(summary="The audience's connections to partner configurations"),
    retrieve=extend_schema(summary="One connection"),
    create=extend_schema(
        summary="Connect the audience to a configuration (the current members are queued as adds)",
        request=ConnectionWriteSerializer,
        responses={201: ConnectionCreatedSerializer},
    ),
    update=extend_schema(summary="Edit the partner-side settings", request=ConnectionUpdateSerializer),
    partial_update=extend_schema(summary="Edit the partner-side settings", request=ConnectionUpdateSerializer),
    destroy=extend_schema(
        summary="Stop sending the audience to this configuration",
        parameters=[REMOVE_MEMBERS],
        responses={
            204: None,
            202: OpenApiResponse(ConnectionRemovingSerializer, description="Removals queued; connection removing."),
        },
    ),
)
class AudienceConnectionViewSet(viewsets.ModelViewSet):
    serializer_class = ConnectionSerializer
    queryset = AudienceConnection.objects.none()

    def get_audience(self) -> Audience:
        return get_object_or_404(Audience, pk=self.kwargs["audience_pk"])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AudienceConnection.objects.none()
        return (
            AudienceConnection.objects.filter(audience=self.get_audience())
            .select_related("partner_config__connector")
            .order_by("id")
        )

    def create(self, request, *args, **kwargs):
        audience = self.get_audience()
        body = ConnectionWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        conn, queued = services.audience_connection_create(
            audience=audience,
            partner_config=data["partner_config"],
            partner_audience_id=data.get("partner_audience_id") or "",
            profile_variables=data.get("profile_variables"),
            actor=request.user,
        )
        conn = self.get_queryset().get(pk=conn.pk)
        conn.adds_queued, conn.adds_skipped = queued.pending, queued.skipped
        return Response(ConnectionCreatedSerializer(conn).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        conn = self.get_object()
        body = ConnectionUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        if "partner_audience_id" in data:
            data["partner_audience_id"] = data["partner_audience_id"] or ""
        services.audience_connection_update(audience_connection=conn, actor=request.user, **data)
        return Response(ConnectionSerializer(self.get_queryset().get(pk=conn.pk)).data)

    def destroy(self, request, *args, **kwargs):
        remove_members = _bool_param(request, "remove_members")
        result = services.audience_connection_delete(
            audience_connection=self.get_object(), remove_members=remove_members, actor=request.user
        )
        if result.removing:
            return Response(
                {"status": "removing", "removes_queued": result.removes_queued}, status=status.HTTP_202_ACCEPTED
            )
        return Response(status=status.HTTP_204_NO_CONTENT)
