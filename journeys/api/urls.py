from django.urls import include, path
from rest_framework.routers import SimpleRouter

from journeys.api import views

router = SimpleRouter()
# Before "journeys": its detail route would otherwise take "events" for an id.
router.register("journeys/events", views.JourneyEventViewSet, basename="journey-event")
router.register("journeys", views.JourneyViewSet, basename="journey")

urlpatterns = [path("", include(router.urls))]
