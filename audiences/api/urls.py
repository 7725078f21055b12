from django.urls import include, path
from rest_framework.routers import SimpleRouter

from audiences.api import audiences as views

router = SimpleRouter()
router.register("audiences", views.AudienceViewSet, basename="audience")

connections = views.AudienceConnectionViewSet
urlpatterns = [
    path("", include(router.urls)),
    path(
        "audiences/<int:audience_pk>/connections/",
        connections.as_view({"get": "list", "post": "create"}),
        name="audience-connection-list",
    ),
    path(
        "audiences/<int:audience_pk>/connections/<int:pk>/",
        connections.as_view({"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}),
        name="audience-connection-detail",
    ),
]
