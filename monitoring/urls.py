"""Operations endpoints and the alerts API."""

urlpatterns: list = []
