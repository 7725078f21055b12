"""The documented production shape runs: gunicorn serving dap.wsgi with DEBUG off, static files from collectstatic
(WhiteNoise), the health check and the pages' security headers (docs/deployment.md)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.utils import timezone

from connectors.management.commands.bench_delivery import free_port
from monitoring.models import WorkerHeartbeat

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = shutil.which("gunicorn", path=str(Path(sys.executable).parent))


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_gunicorn_serves_the_platform_with_debug_off(tmp_path):
    if GUNICORN is None:
        pytest.skip("gunicorn is not installed in this environment (requirements.txt installs it)")
    WorkerHeartbeat.objects.create(host="worker-1", pid=1, beat_at=timezone.now())
    env = {
        **os.environ,
        "DAP_DEBUG": "false",
        "DAP_SECRET_KEY": "deployment-test-secret-key-0123456789-abcdefghijklmnop",
        "DAP_ENCRYPTION_KEYS": "Zm9yLXRoZS1kZXBsb3ltZW50LXRlc3Qtb25seS0wMDA=",
        "DAP_ALLOWED_HOSTS": "127.0.0.1",
        "DAP_STATIC_ROOT": str(tmp_path / "static"),
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "dap.settings",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, str(ROOT / "manage.py"), "collectstatic", "--noinput", "-v0"], env=env, check=True, cwd=ROOT
    )
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - the installed gunicorn
        [GUNICORN, "dap.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--preload"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = requests.get(f"{base}/healthz", timeout=5)
                break
            except requests.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(server.stderr.read().decode()[-2000:]) from None
                time.sleep(0.2)
        body = health.json()
        assert body["checks"]["database"]["status"] == "ok" and body["checks"]["worker"]["status"] == "ok", body
        login = requests.get(f"{base}/accounts/login/", timeout=5)
        assert login.status_code == 200 and "csrftoken" in login.cookies
        assert login.headers["X-Frame-Options"] == "DENY" and login.headers["X-Content-Type-Options"] == "nosniff"
        css = requests.get(f"{base}/{settings.STATIC_URL.strip('/')}/css/app.css", timeout=5)
        assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
        chart = requests.get(f"{base}/static/vendor/chartjs/chart.umd.min.js", timeout=5)
        assert chart.status_code == 200 and b"Chart.js v4.6.1" in chart.content[:200]
        # With DEBUG off an unknown page is a plain 404, not Django's debug page.
        missing = requests.get(f"{base}/nowhere/", timeout=5)
        assert missing.status_code == 404 and "Traceback" not in missing.text and "DEBUG" not in missing.text
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
