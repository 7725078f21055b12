import pytest
from rest_framework.test import APIClient

from tests.factories import UserFactory


@pytest.fixture
def marketing_admin(db):
    return UserFactory(username="marketer", groups=["Marketing admin"])


@pytest.fixture
def viewer(db):
    return UserFactory(username="viewer", groups=["Viewer"])


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def api(marketing_admin):
    client = APIClient()
    client.force_authenticate(marketing_admin)
    return client


@pytest.fixture
def viewer_api(viewer):
    client = APIClient()
    client.force_authenticate(viewer)
    return client


@pytest.fixture
def marketer_client(client, marketing_admin):
    client.force_login(marketing_admin)
    return client


@pytest.fixture
def admin_site_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def sandbox():
    from connectors.sandbox.server import start

    server = start()
    yield server
    server.stop()
