from django.urls import include, path
from rest_framework.routers import SimpleRouter

from audiences.api.profiles import ProfileViewSet

router = SimpleRouter()
router.register("profiles", ProfileViewSet, basename="profile")

urlpatterns = [path("", include(router.urls))]
