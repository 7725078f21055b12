"""The browser tests' Chromium: Debian's system package driven by Playwright for Python (never a downloaded browser).
Without it installed the tests skip and say why; `.ci/run` installs it."""

import os
import shutil
from pathlib import Path

import pytest
from django.db import connections

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
# Screenshots are the browser tests' artifacts: test-results/ in the checkout unless DAP_TEST_ARTIFACTS says where.
ARTIFACTS = Path(os.environ.get("DAP_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-results")
PASSWORD = "pass-word-123"  # UserFactory's


@pytest.fixture
def page():
    if CHROMIUM is None:
        pytest.skip("Chromium not installed (Debian package chromium): browser test skipped")
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(10_000)
        sync_api.expect.set_options(timeout=10_000)
        try:
            yield page
        finally:
            # ORM calls made while Playwright's loop runs get their own connection (asgiref context);
            # close it here, in that context, so the test database can be dropped.
            connections.close_all()
            context.close()
            browser.close()
