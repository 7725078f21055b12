from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from connectors import views as connector_views

handler404 = "dap.exceptions.page_not_found"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="connectors:list", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("connectors/", include("connectors.urls")),
    path("audiences/", include("audiences.urls")),
    path("journeys/", include("journeys.urls")),
    path("sync/<slug:partner_key>/", connector_views.cookie_sync_endpoint, name="cookie-sync"),
    path("admin/", admin.site.urls),
    path("", include("monitoring.urls")),
    path("api/v1/", include("connectors.api.urls")),
    path("api/v1/", include("journeys.api.urls")),
    path("api/v1/", include("audiences.api.profile_urls")),
    path("api/v1/", include("audiences.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]
