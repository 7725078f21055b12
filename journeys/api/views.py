"""REST API: thin views over the journey services and selectors."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from connectors.api.views import requires
from dap.openapi import refused
from journeys import selectors, services
from journeys.api.serializers import (
    EnrollmentFilterSerializer,
    JourneyCreateSerializer,
    JourneyDetailSerializer,
    JourneyEnrollmentSerializer,
    JourneyEventInSerializer,
    JourneyEventOutSerializer,
    JourneyFilterSerializer,
    JourneySerializer,
    JourneyUpdateSerializer,
    JourneyVersionSerializer,
)
from journeys.models import Journey

STATUS_REFUSED = OpenApiResponse(description="The transition is not allowed from the journey's status.")


@extend_schema_view(
    list=extend_schema(
        summary="Journeys with status, unpublished changes and version count",
        parameters=[
            OpenApiParameter("search", str, description="Part of the name"),
            OpenApiParameter("status", str, enum=list(Journey.Status.values)),
        ],
    ),
    retrieve=extend_schema(summary="A journey with its draft and its published definition"),
    create=extend_schema(
        summary="Create a journey (draft)", request=JourneyCreateSerializer, responses={201: JourneyDetailSerializer}
    ),
    update=extend_schema(summary="Rename, describe or replace the draft", request=JourneyUpdateSerializer),
    partial_update=extend_schema(summary="Rename, describe or replace the draft", request=JourneyUpdateSerializer),
    destroy=extend_schema(
        summary="Delete a journey that is not running (draft or stopped)",
        responses={204: None, 400: refused("The journey is live or paused: stop it first.")},
    ),
)
class JourneyViewSet(viewsets.ModelViewSet):
    serializer_class = JourneyDetailSerializer
    queryset = Journey.objects.all()
    lookup_value_regex = r"\d+"

    def get_permissions(self):
        if self.action in {"publish", "pause", "resume", "stop"}:
            return [requires("journeys.change_journey")()]
        return super().get_permissions()

    def get_queryset(self):
        if self.action == "list":
            filters = JourneyFilterSerializer(data=self.request.query_params)
            filters.is_valid(raise_exception=True)
            return selectors.journey_list(**filters.validated_data)
        return selectors.journey_list().select_related("status_changed_by")

    def get_serializer_class(self):
        return JourneySerializer if self.action == "list" else JourneyDetailSerializer

    def _detail(self, journey, code=status.HTTP_200_OK):
        return Response(JourneyDetailSerializer(selectors.journey_list().get(pk=journey.pk)).data, status=code)

    def create(self, request, *args, **kwargs):
        body = JourneyCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        journey = services.journey_create(
            name=data["name"],
            description=data.get("description", ""),
            definition=data.get("definition"),
            actor=request.user,
        )
        return self._detail(journey, status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        journey = self.get_object()
        body = JourneyUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = {k: v for k, v in body.validated_data.items() if k in ("name", "description", "definition")}
        services.journey_update(journey=journey, actor=request.user, **fields)
        return self._detail(journey)

    def destroy(self, request, *args, **kwargs):
        services.journey_delete(journey=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Publish the draft as the next version (a draft journey goes live)",
        request=None,
        responses={200: JourneyDetailSerializer, 400: OpenApiResponse(description="The draft is not publishable.")},
    )
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        journey = self.get_object()
        services.journey_publish(journey=journey, actor=request.user)
        return self._detail(journey)

    @extend_schema(
        summary="Pause a live journey: nothing advances, nobody enters",
        request=None,
        responses={200: JourneyDetailSerializer, 400: STATUS_REFUSED},
    )
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        journey = self.get_object()
        services.journey_pause(journey=journey, actor=request.user)
        return self._detail(journey)

    @extend_schema(
        summary="Resume a paused journey", request=None, responses={200: JourneyDetailSerializer, 400: STATUS_REFUSED}
    )
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        journey = self.get_object()
        services.journey_resume(journey=journey, actor=request.user)
        return self._detail(journey)

    @extend_schema(
        summary="Stop a live or paused journey for good: running enrollments exit",
        request=None,
        responses={200: JourneyDetailSerializer, 400: STATUS_REFUSED},
    )
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        journey = self.get_object()
        services.journey_stop(journey=journey, actor=request.user)
        return self._detail(journey)

    @extend_schema(summary="Published versions, newest first", responses=JourneyVersionSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def versions(self, request, pk=None):
        journey = self.get_object()
        return Response(JourneyVersionSerializer(selectors.journey_versions(journey=journey), many=True).data)

    @extend_schema(
        summary="Enrollments (profiles' positions), newest first",
        parameters=[EnrollmentFilterSerializer],
        responses=JourneyEnrollmentSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def enrollments(self, request, pk=None):
        journey = self.get_object()
        filters = EnrollmentFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = selectors.journey_enrollments(journey=journey, **filters.validated_data)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(JourneyEnrollmentSerializer(page, many=True).data)


class JourneyEventViewSet(viewsets.ViewSet):
    """Profile events posted by the site's backend; they enroll profiles in event-entry journeys."""

    permission_classes = [requires("journeys.add_journeyevent")]

    @extend_schema(
        summary="Post a profile event: enrolls the profile in live journeys entering on it",
        request=JourneyEventInSerializer,
        responses={201: JourneyEventOutSerializer},
    )
    def create(self, request):
        body = JourneyEventInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        event, enrolled = services.journey_event_record(
            event=data["event"],
            external_id=data.get("external_id"),
            profile_id=data.get("profile_id"),
            properties=data.get("properties"),
        )
        names = dict(Journey.objects.filter(pk__in=list(enrolled)).values_list("pk", "name"))
        out = {
            "id": event.pk,
            "event": event.name,
            "profile_id": event.profile_id,
            "received_at": event.received_at,
            "enrolled_in": [{"journey": pk, "name": names.get(pk, "")} for pk in sorted(enrolled)],
        }
        return Response(JourneyEventOutSerializer(out).data, status=status.HTTP_201_CREATED)
