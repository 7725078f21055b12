import ipaddress
import socket

import pytest
from rest_framework.test import APIClient

from tests.factories import UserFactory

_real_getaddrinfo = socket.getaddrinfo


def _loopback_only(host, *args, **kwargs):
    """Tests never leave the machine: resolving anything but a loopback name or address fails at once (a partner
    client that forgot its mock or sandbox URL shows up as a connection error instead of a slow real call)."""
    name = host.decode() if isinstance(host, bytes) else str(host)
    try:
        loopback = name == "localhost" or ipaddress.ip_address(name).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise socket.gaierror(socket.EAI_NONAME, f"tests may only reach loopback, not {name}")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _loopback_only)


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


@pytest.fixture(autouse=True)
def fresh_partner_state(settings):
    """Cached partner tokens and quota buckets do not leak from one test into the next (nor between test runs
    sharing a Redis)."""
    from connectors.delivery import ratelimit, tokens

    def clear():
        tokens._local.clear()
        with ratelimit._local.lock:
            ratelimit._local.state.clear()
        if settings.REDIS_URL:
            client = tokens._redis(settings.REDIS_URL)
            for prefix in (tokens.KEY_PREFIX, ratelimit.KEY_PREFIX):
                keys = list(client.scan_iter(match=prefix + "*", count=1000))
                if keys:
                    client.delete(*keys)

    clear()
    yield
    clear()


@pytest.fixture(autouse=True)
def fresh_throttles():
    """API rate-limit counters (dap/throttling.py) start at zero in every test: user ids repeat across tests (and
    runs), so counts would otherwise add up. Only the throttle keys go: a shared Redis keeps everything else."""
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    from dap.throttling import KEY_PREFIX

    def clear():
        backend = caches["default"]
        if isinstance(backend, RedisCache):
            client = backend._cache.get_client(write=True)
            keys = list(client.scan_iter(match=f"*:{KEY_PREFIX}:*", count=1000))
            if keys:
                client.delete(*keys)
        else:
            backend.clear()  # this process's memory only

    clear()
    yield
    clear()
