"""Operations endpoints and the alerts API."""

from django.urls import include, path

from monitoring import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("api/v1/", include("monitoring.api.urls")),
]
