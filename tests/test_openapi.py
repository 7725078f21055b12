from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_openapi_generates_without_warnings_and_the_committed_copy_is_current(tmp_path):
    out = tmp_path / "openapi.yaml"
    # --fail-on-warn raises on any warning; --validate checks against the OpenAPI 3 meta-schema.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    committed = (ROOT / "docs" / "openapi.yaml").read_text()
    assert out.read_text() == committed, (
        "docs/openapi.yaml is stale: run `.venv/bin/python manage.py spectacular --file docs/openapi.yaml`"
    )


@pytest.mark.django_db
def test_schema_and_swagger_ui_are_served(marketer_client):
    assert marketer_client.get("/api/schema/").status_code == 200
    page = marketer_client.get("/api/docs/")
    assert page.status_code == 200
    assert b"swagger-ui" in page.content
    assert b"cdn.jsdelivr" not in page.content  # served from our own static files
