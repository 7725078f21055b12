"""REST API: thin views over the connector services and selectors."""

from django.conf import settings
from django.db.models import Count
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response

from audiences.models import Profile
from connectors import cookie_sync, selectors, services
from connectors.api.serializers import (
    ConnectionTestSerializer,
    ConnectorCreateSerializer,
    ConnectorDetailSerializer,
    ConnectorFilterSerializer,
    ConnectorSerializer,
    ConnectorStatsSerializer,
    ConnectorUpdateSerializer,
    DeliveryAttemptFilterSerializer,
    DeliveryAttemptSerializer,
    DeliveryFilterSerializer,
    DeliverySerializer,
    InUseSerializer,
    PartnerConfigSerializer,
    PartnerConfigStatsSerializer,
    PartnerConfigUpdateSerializer,
    PartnerConfigWriteSerializer,
    PartnerSerializer,
    ReplayResultSerializer,
    ReplaySerializer,
    StatsOverviewSerializer,
    StatsQuerySerializer,
    StatusChangeSerializer,
    SyncTokenRequestSerializer,
    SyncTokenSerializer,
    UsagesSerializer,
)
from connectors.delivery import outbox
from connectors.models import Connector, Delivery, DeliveryAttempt, PartnerConfig
from connectors.partners.registry import UnknownPartner, all_partners, get_partner
from dap.api_filters import FilteredListMixin
from dap.openapi import ErrorSerializer, refused
from dap.permissions import ModelPermissionsWithView


def requires(*perms: str) -> type[BasePermission]:
    """A permission class demanding these Django permissions (on top of being authenticated)."""

    class _Requires(BasePermission):
        def has_permission(self, request, view):
            return bool(request.user and request.user.is_authenticated and request.user.has_perms(perms))

    return _Requires


def _stats_days(request) -> int:
    query = StatsQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data["days"]


IN_USE = OpenApiResponse(InUseSerializer, description="Still used by audiences or journeys; every usage is listed.")


@extend_schema_view(
    list=extend_schema(
        summary="The partner catalogue",
        parameters=[OpenApiParameter("kind", str, enum=["server_to_server", "tag_based"])],
    ),
    retrieve=extend_schema(
        summary="One catalogue partner with its settings schema",
        parameters=[OpenApiParameter("key", str, OpenApiParameter.PATH, description="Partner key")],
    ),
)
class PartnerViewSet(viewsets.ViewSet):
    permission_classes = [IsAuthenticated]
    lookup_field = "key"
    serializer_class = PartnerSerializer

    def list(self, request):
        kind = request.query_params.get("kind") or None
        return Response([p.describe() for p in all_partners(kind=kind)])

    def retrieve(self, request, key=None):
        try:
            return Response(get_partner(key).describe())
        except UnknownPartner:
            raise NotFound(f'Unknown partner "{key}".') from None


@extend_schema_view(
    list=extend_schema(
        summary="Server-to-server connectors with last-7-days totals",
        parameters=[
            OpenApiParameter("search", str, description="Part of the name"),
            OpenApiParameter("status", str, enum=["active", "deactivated"]),
        ],
    ),
    retrieve=extend_schema(summary="A connector with its configurations"),
    create=extend_schema(
        summary="Create a connector with its first configuration",
        request=ConnectorCreateSerializer,
        responses={201: ConnectorDetailSerializer},
    ),
    update=extend_schema(summary="Rename a connector", request=ConnectorUpdateSerializer),
    partial_update=extend_schema(summary="Rename a connector", request=ConnectorUpdateSerializer),
    destroy=extend_schema(summary="Delete a connector (refused while in use)", responses={204: None, 409: IN_USE}),
)
class ConnectorViewSet(viewsets.ModelViewSet):
    queryset = Connector.objects.all()
    serializer_class = ConnectorDetailSerializer

    def get_permissions(self):
        if self.action in {"deactivate", "activate"}:
            return [requires("connectors.change_connector")()]
        return super().get_permissions()

    def get_queryset(self):
        if self.action == "list":
            filters = ConnectorFilterSerializer(data=self.request.query_params)
            filters.is_valid(raise_exception=True)
            return selectors.connector_list(**filters.validated_data)
        return Connector.objects.annotate(config_count=Count("configs")).prefetch_related("configs")

    def get_serializer_class(self):
        return ConnectorSerializer if self.action == "list" else ConnectorDetailSerializer

    def _detail(self, connector, code=status.HTTP_200_OK):
        connector = self.get_queryset().get(pk=connector.pk)
        return Response(ConnectorDetailSerializer(connector).data, status=code)

    def create(self, request, *args, **kwargs):
        body = ConnectorCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        connector = services.connector_create(
            partner_key=data["partner"],
            name=data["name"],
            config_name=data.get("config_name"),
            settings=data.get("settings", {}),
            timeout_seconds=data.get("timeout_seconds"),
            actor=request.user,
        )
        return self._detail(connector, status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        connector = self.get_object()
        body = ConnectorUpdateSerializer(data=request.data, partial=kwargs.get("partial", False))
        body.is_valid(raise_exception=True)
        if "name" in body.validated_data:
            services.connector_update(connector=connector, name=body.validated_data["name"], actor=request.user)
        return self._detail(connector)

    def destroy(self, request, *args, **kwargs):
        services.connector_delete(connector=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Deactivate: nothing more is sent (idempotent)", request=None, responses=StatusChangeSerializer
    )
    @action(detail=True, methods=["post"])
    def deactivate(self, request, pk=None):
        connector = self.get_object()
        changed = services.connector_deactivate(connector=connector, actor=request.user)
        connector.refresh_from_db()
        return Response({"changed": changed, "connector": ConnectorSerializer(connector).data})

    @extend_schema(summary="Activate again (idempotent)", request=None, responses=StatusChangeSerializer)
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        connector = self.get_object()
        changed = services.connector_activate(connector=connector, actor=request.user)
        connector.refresh_from_db()
        return Response({"changed": changed, "connector": ConnectorSerializer(connector).data})

    @extend_schema(
        summary="Delivery statistics of one connector: daily series per outcome and per partner error code, totals",
        parameters=[StatsQuerySerializer],
        responses=ConnectorStatsSerializer,
    )
    @action(detail=True, methods=["get"])
    def stats(self, request, pk=None):
        connector = self.get_object()
        days = _stats_days(request)
        return Response(ConnectorStatsSerializer(selectors.connector_stats(connector=connector, days=days)).data)

    @extend_schema(
        summary="Delivery statistics of every server-to-server connector: totals and daily series per category",
        operation_id="v1_connectors_stats_overview",
        parameters=[StatsQuerySerializer],
        responses=StatsOverviewSerializer,
    )
    @action(detail=False, methods=["get"], url_path="stats")
    def overview(self, request):
        # Plain data already (ints, strings, dates): rendered as is, not walked field by field through the
        # serializer, which documents the shape (200 connectors x 90 days x 4 series are 72,000 numbers).
        return Response(selectors.stats_overview(days=_stats_days(request)))

    @extend_schema(summary="Where the connector is used (audiences, journeys)", responses=UsagesSerializer)
    @action(detail=True, methods=["get"])
    def usages(self, request, pk=None):
        connector = self.get_object()
        usages = selectors.connector_usages(connector=connector)
        live = selectors.connector_live_journeys_with_unpublished_changes(connector=connector)
        return Response(
            {
                "in_use": bool(usages),
                "usages": [u.as_dict() for u in usages],
                "live_journeys_with_unpublished_changes": [j.name for j in live],
            }
        )


@extend_schema_view(
    list=extend_schema(summary="The connector's configurations"),
    retrieve=extend_schema(summary="One configuration (secrets masked)"),
    create=extend_schema(
        summary="Add a configuration (refused for partners that allow one)",
        request=PartnerConfigWriteSerializer,
        responses={201: PartnerConfigSerializer},
    ),
    update=extend_schema(summary="Edit a configuration", request=PartnerConfigUpdateSerializer),
    partial_update=extend_schema(summary="Edit a configuration", request=PartnerConfigUpdateSerializer),
    destroy=extend_schema(
        summary="Delete a configuration (refused while in use)",
        responses={
            204: None,
            400: refused("The connector's only configuration: delete the connector instead."),
            409: IN_USE,
        },
    ),
)
class ConnectorConfigViewSet(viewsets.ModelViewSet):
    serializer_class = PartnerConfigSerializer
    queryset = PartnerConfig.objects.none()

    def get_connector(self) -> Connector:
        return get_object_or_404(Connector, pk=self.kwargs["connector_pk"])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return PartnerConfig.objects.none()
        return PartnerConfig.objects.filter(connector=self.get_connector()).select_related("connector")

    def create(self, request, *args, **kwargs):
        connector = self.get_connector()
        body = PartnerConfigWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        config = services.partner_config_create(
            connector=connector,
            name=data["name"],
            settings=data.get("settings", {}),
            timeout_seconds=data.get("timeout_seconds"),
            actor=request.user,
        )
        return Response(PartnerConfigSerializer(config).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        config = self.get_object()
        body = PartnerConfigUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if not kwargs.get("partial") and "settings" not in data:
            data["settings"] = {}
        fields = {k: data[k] for k in ("name", "settings", "timeout_seconds") if k in data}
        config = services.partner_config_update(partner_config=config, actor=request.user, **fields)
        return Response(PartnerConfigSerializer(config).data)

    def destroy(self, request, *args, **kwargs):
        services.partner_config_delete(partner_config=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Delivery statistics of one configuration: daily series per outcome and per partner error code",
        parameters=[StatsQuerySerializer],
        responses=PartnerConfigStatsSerializer,
    )
    def stats(self, request, *args, **kwargs):
        config = self.get_object()
        stats = selectors.partner_config_stats(partner_config=config, days=_stats_days(request))
        return Response(PartnerConfigStatsSerializer(stats).data)


class PartnerConfigTestViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Configurations by id, for actions that do not need the connector in the path."""

    queryset = PartnerConfig.objects.select_related("connector")
    serializer_class = PartnerConfigSerializer
    permission_classes = [ModelPermissionsWithView]

    def get_permissions(self):
        if self.action in {"test", "resume"}:
            return [requires("connectors.change_partnerconfig")()]
        return super().get_permissions()

    @extend_schema(
        summary="Resume a configuration paused by its health state (credentials invalid, endpoint gone)",
        request=None,
        responses=PartnerConfigSerializer,
    )
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        config = self.get_object()
        services.partner_config_resume(partner_config=config, actor=request.user)
        config.refresh_from_db()
        return Response(PartnerConfigSerializer(config).data)

    @extend_schema(summary="Test the connection of a configuration", request=None, responses=ConnectionTestSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        result = services.partner_config_test_connection(partner_config=self.get_object(), actor=request.user)
        return Response(result.as_dict())


@extend_schema_view(
    list=extend_schema(
        summary="Deliveries in the outbox: pending, in flight, failed, skipped (delivered ones leave it)",
        parameters=[DeliveryFilterSerializer],
    ),
    retrieve=extend_schema(summary="One delivery"),
)
class DeliveryViewSet(FilteredListMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Delivery.objects.select_related("partner_config").order_by("-id")
    serializer_class = DeliverySerializer
    filter_serializer_class = DeliveryFilterSerializer

    def get_permissions(self):
        if self.action == "replay":
            return [requires("connectors.change_delivery")()]
        return super().get_permissions()

    def filter_list(self, queryset, filters):
        return selectors.delivery_filter(queryset, filters)

    @extend_schema(
        summary="Replay failed or skipped deliveries, by ids or by filter",
        request=ReplaySerializer,
        responses=ReplayResultSerializer,
    )
    @action(detail=False, methods=["post"])
    def replay(self, request):
        body = ReplaySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        queryset = selectors.delivery_filter(Delivery.objects.all(), body.validated_data)
        return Response({"replayed": outbox.deliveries_replay(queryset=queryset)})


@extend_schema_view(
    list=extend_schema(
        summary="Partner calls, newest first: status, duration, counts, partner code and a redacted response snippet",
        parameters=[DeliveryAttemptFilterSerializer],
    ),
    retrieve=extend_schema(summary="One partner call"),
)
class DeliveryAttemptViewSet(FilteredListMixin, viewsets.ReadOnlyModelViewSet):
    queryset = DeliveryAttempt.objects.select_related("partner_config").order_by("-at", "-id")
    serializer_class = DeliveryAttemptSerializer
    filter_serializer_class = DeliveryAttemptFilterSerializer

    def filter_list(self, queryset, filters):
        return selectors.attempt_filter(queryset, filters)


class CookieSyncTokenView(viewsets.ViewSet):
    """Signed profile tokens for cookie-sync pixels, minted by the site's backend for its known visitors."""

    permission_classes = [requires("audiences.change_profile")]  # the token lets a browser write to the profile

    @extend_schema(
        summary="A cookie-sync token for one profile",
        request=SyncTokenRequestSerializer,
        responses={201: SyncTokenSerializer, 404: OpenApiResponse(ErrorSerializer, description="No such profile.")},
    )
    def create(self, request):
        data = SyncTokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        lookup = data.validated_data
        profiles = Profile.objects.all()
        if lookup.get("external_id"):
            profile = profiles.filter(external_id=lookup["external_id"]).first()
        else:
            profile = profiles.filter(pk=lookup["profile_id"]).first()
        if profile is None:
            raise NotFound("No such profile.")
        token = cookie_sync.sync_token(profile=profile)
        urls = {
            p.key: f"/sync/{p.key}/?{cookie_sync.TOKEN_PARAM}={token}&{p.sync_param}="
            for p in cookie_sync.sync_partners()
        }
        body = {"token": token, "expires_in": settings.DAP_COOKIE_SYNC_TOKEN_MAX_AGE_SECONDS, "sync_urls": urls}
        return Response(SyncTokenSerializer(body).data, status=status.HTTP_201_CREATED)
