from django.urls import include, path
from rest_framework.routers import SimpleRouter

from monitoring.api import views

# SimpleRouter: no API root view (connectors' router serves /api/v1/ itself).
router = SimpleRouter()
router.register("alerts", views.AlertViewSet, basename="alert")

urlpatterns = [path("", include(router.urls))]
