from django.urls import include, path
from rest_framework.routers import DefaultRouter

from connectors.api import views

# JSON only: no ".json"-suffixed copies of every route (their actions did not take the `format` argument: 500s).
router = DefaultRouter()
router.include_format_suffixes = False
router.register("partners", views.PartnerViewSet, basename="partner")
router.register("connectors", views.ConnectorViewSet, basename="connector")
router.register("partner-configs", views.PartnerConfigTestViewSet, basename="partner-config")
router.register("deliveries", views.DeliveryViewSet, basename="delivery")
router.register("delivery-attempts", views.DeliveryAttemptViewSet, basename="delivery-attempt")
router.register("cookie-sync/tokens", views.CookieSyncTokenView, basename="cookie-sync-token")

configs = views.ConnectorConfigViewSet
urlpatterns = [
    path("", include(router.urls)),
    path(
        "connectors/<int:connector_pk>/configs/",
        configs.as_view({"get": "list", "post": "create"}),
        name="connector-config-list",
    ),
    path(
        "connectors/<int:connector_pk>/configs/<int:pk>/",
        configs.as_view({"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}),
        name="connector-config-detail",
    ),
    path(
        "connectors/<int:connector_pk>/configs/<int:pk>/stats/",
        configs.as_view({"get": "stats"}),
        name="connector-config-stats",
    ),
]
