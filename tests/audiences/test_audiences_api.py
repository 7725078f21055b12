"""The audiences API: CRUD with clear 400s, refresh, static-list entries, members, changes, connections."""

import pytest
from rest_framework.test import APIClient

from audiences.models import Audience, AudienceConnection, AudienceEntry
from connectors.models import Delivery
from tests.audiences.factories import config_for, connect, make_profile, rule_audience

pytestmark = pytest.mark.django_db

NL = {"all": [{"attribute": "country", "op": "equals", "value": "NL"}]}


@pytest.fixture
def people():
    return [
        make_profile("ann", {"country": "NL"}, email="ann@example.com", customer_id="c-ann"),
        make_profile("bob", {"country": "BE"}, email="bob@example.com", phone="+31612345678"),
        make_profile("cem", {"country": "NL"}),
    ]


def test_create_read_update_delete(api, people):
    answer = api.post("/api/v1/audiences/", {"name": "Dutch", "rule": NL, "description": "NL"}, format="json")
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["kind"] == "rule_based" and body["rule"] == NL and body["size"] == 0 and body["last_refresh"] is None
    assert body["rule_text"] == 'all of (country is "NL")'
    pk = body["id"]

    refreshed = api.post(f"/api/v1/audiences/{pk}/refresh/")
    assert refreshed.status_code == 200
    assert refreshed.json()["enters"] == 2 and refreshed.json()["exits"] == 0 and refreshed.json()["size"] == 2
    assert refreshed.json()["outbox"] == {"pending": 0, "skipped": 0, "replaced": 0, "rows": 0}

    listed = api.get("/api/v1/audiences/", {"search": "dut", "kind": "rule_based"}).json()
    assert listed["count"] == 1 and listed["results"][0]["size"] == 2
    assert listed["results"][0]["last_refresh"]["enters"] == 2

    patched = api.patch(f"/api/v1/audiences/{pk}/", {"name": "Dutch people"}, format="json")
    assert patched.status_code == 200 and patched.json()["name"] == "Dutch people" and patched.json()["rule"] == NL
    put = api.put(f"/api/v1/audiences/{pk}/", {"name": "Dutch", "rule": NL}, format="json")
    assert put.status_code == 200

    assert api.delete(f"/api/v1/audiences/{pk}/").status_code == 204
    assert not Audience.objects.exists()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"name": "X"}, {"rule": ["A rule-based audience needs a rule."]}),
        ({"name": "X", "rule": {"all": [{"attribute": "9x", "op": "equals", "value": 1}]}},
         {"rule": ["all[0].attribute: a name of letters, digits and single underscores (not starting with a digit)"]}),
        ({"name": "X", "rule": "country = NL"}, {"rule": ['A rule is a group: {"all": [...]} or {"any": [...]}.']}),
        ({"name": "X", "kind": "static", "rule": NL},
         {"rule": ["A static list has no rule: its members are its uploaded entries."]}),
        ({"name": "X", "kind": "segment"}, {"kind": ['"segment" is not a valid choice.']}),
        ({"rule": NL}, {"name": ["This field is required."]}),
    ],
)  # fmt: skip
def test_create_refuses_bad_input_with_field_messages(api, body, errors):
    answer = api.post("/api/v1/audiences/", body, format="json")
    assert answer.status_code == 400
    assert answer.json() == errors
    assert not Audience.objects.exists()


def test_names_are_unique_whatever_the_case(api):
    rule_audience(NL, name="Dutch")
    answer = api.post("/api/v1/audiences/", {"name": "dutch", "rule": NL}, format="json")
    assert answer.status_code == 400 and answer.json() == {"name": ["An audience with this name already exists."]}


def test_every_rule_problem_is_listed_with_its_place(api):
    rule = {"any": [{"attribute": "a", "op": "gt", "value": [1]}, {"all": [{"attribute": "b", "op": "in"}]}]}
    answer = api.post("/api/v1/audiences/", {"name": "X", "rule": rule}, format="json")
    assert answer.status_code == 400
    assert answer.json()["rule"] == ["any[0].value: a number or an ISO date", "any[1].all[0].value: required"]


def test_delete_is_refused_while_connected(api, people):
    audience = rule_audience(NL)
    connect(audience, config_for("webhook"))
    answer = api.delete(f"/api/v1/audiences/{audience.pk}/")
    assert answer.status_code == 400 and "Delete its connections first" in answer.json()["non_field_errors"][0]


def test_refresh_of_an_audience_without_rule_is_a_400(api):
    audience = Audience.objects.create(name="Legacy")
    answer = api.post(f"/api/v1/audiences/{audience.pk}/refresh/")
    assert answer.status_code == 400 and "rule" in answer.json()


def test_static_list_upload_members_and_changes(api, people):
    audience = api.post("/api/v1/audiences/", {"name": "List", "kind": "static"}, format="json").json()
    pk = audience["id"]
    config = config_for("webhook")
    created = api.post(f"/api/v1/audiences/{pk}/connections/", {"partner_config": config.pk}, format="json")
    assert created.status_code == 201 and created.json()["adds_queued"] == 0

    upload = api.post(
        f"/api/v1/audiences/{pk}/entries/",
        {"slot": "email", "values": [" ANN@example.com", "nobody@example.com", "ann@example.com"]},
        format="json",
    )
    assert upload.status_code == 200, upload.json()
    result = upload.json()
    assert (result["added"], result["removed"], result["total"]) == (2, 0, 2)
    assert result["refresh"]["enters"] == 1 and result["refresh"]["outbox"]["pending"] == 1
    phones = api.post(
        f"/api/v1/audiences/{pk}/entries/", {"slot": "phone", "values": ["+31 6 1234 5678"]}, format="json"
    )
    assert phones.json()["refresh"]["enters"] == 1
    assert api.get(f"/api/v1/audiences/{pk}/entries/").json() == {"total": 3, "by_slot": {"email": 2, "phone": 1}}

    members = api.get(f"/api/v1/audiences/{pk}/members/", {"limit": 1}).json()
    assert members["count"] == 2 and len(members["results"]) == 1
    assert members["results"][0]["external_id"] == "ann" and members["next"]

    replaced = api.post(
        f"/api/v1/audiences/{pk}/entries/", {"slot": "email", "values": [], "replace": True}, format="json"
    ).json()
    assert (replaced["removed"], replaced["refresh"]["exits"]) == (2, 1)
    assert list(AudienceEntry.objects.values_list("slot", flat=True)) == ["phone"]
    assert set(Delivery.objects.values_list("action", flat=True)) == {"add", "remove"}

    exits = api.get(f"/api/v1/audiences/{pk}/changes/", {"kind": "exit"}).json()
    assert [c["external_id"] for c in exits["results"]] == ["ann"]
    assert api.get(f"/api/v1/audiences/{pk}/changes/").status_code == 400


def test_upload_refuses_bad_values_with_their_index_and_writes_nothing(api, people):
    audience = api.post("/api/v1/audiences/", {"name": "List", "kind": "static"}, format="json").json()
    url = f"/api/v1/audiences/{audience['id']}/entries/"
    answer = api.post(url, {"slot": "email", "values": ["ann@example.com", "not an email", ""]}, format="json")
    assert answer.status_code == 400
    assert set(answer.json()["values"]) == {"1", "2"}
    assert not AudienceEntry.objects.exists()
    assert api.post(url, {"slot": "shoe_size", "values": ["42"]}, format="json").json() == {
        "slot": ["Choose one of: email, phone, customer_id, mobile_ad_id, xandr_uid, google_id, ttd_id, meta_fbp, "
                 "gclid, partner_number."]
    }  # fmt: skip
    assert api.post(url, {"slot": "email", "values": []}, format="json").status_code == 400
    assert api.post(url, {"slot": "email", "values": "a@b.c"}, format="json").status_code == 400
    rule_based = rule_audience(NL)
    answer = api.post(
        f"/api/v1/audiences/{rule_based.pk}/entries/", {"slot": "email", "values": ["a@b.co"]}, format="json"
    )
    assert answer.status_code == 400 and "Only static lists" in answer.json()["non_field_errors"][0]


def test_connections_crud(api, people):
    audience = rule_audience(NL)
    api.post(f"/api/v1/audiences/{audience.pk}/refresh/")
    meta = config_for("meta_custom_audiences")
    base = f"/api/v1/audiences/{audience.pk}/connections/"

    bad = api.post(base, {"partner_config": meta.pk, "partner_audience_id": "act_1"}, format="json")
    assert bad.status_code == 400
    assert bad.json() == {"partner_audience_id": ["Enter the custom audience ID (digits only)."]}
    bad = api.post(base, {"partner_config": meta.pk, "partner_audience_id": "1", "profile_variables": ["x"]},
                   format="json")  # fmt: skip
    assert bad.json() == {"profile_variables": ["Meta Custom Audiences does not receive profile variables."]}
    assert api.post(base, {"partner_config": 99999}, format="json").json() == {
        "partner_config": ["Choose an existing connector configuration."]
    }

    created = api.post(base, {"partner_config": meta.pk, "partner_audience_id": "23850001"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["adds_queued"] == 2 and body["status"] == "active" and body["partner"]["key"] == "meta_custom_audiences"
    assert body["connector"]["id"] == meta.connector_id
    detail = f"{base}{body['id']}/"

    assert api.get(base).json()["count"] == 1
    assert api.patch(detail, {"partner_audience_id": "x"}, format="json").status_code == 400
    assert api.patch(detail, {"partner_audience_id": "23850002"}, format="json").json()["partner_audience_id"] == (
        "23850002"
    )
    assert api.get(f"/api/v1/audiences/{audience.pk}/").json()["connection_count"] == 1

    assert api.delete(f"{detail}?remove_members=maybe").status_code == 400
    removing = api.delete(f"{detail}?remove_members=true")
    assert removing.status_code == 202 and removing.json() == {"status": "removing", "removes_queued": 2}
    assert api.get(detail).json()["status"] == "removing"
    assert api.get(f"/api/v1/audiences/{audience.pk}/").json()["connection_count"] == 0
    assert api.delete(detail).status_code == 204
    assert not AudienceConnection.objects.exists()


def test_viewers_read_and_cannot_change(viewer_api, people):
    audience = rule_audience(NL)
    connect(audience, config_for("webhook"))
    assert viewer_api.get("/api/v1/audiences/").status_code == 200
    assert viewer_api.get(f"/api/v1/audiences/{audience.pk}/members/").status_code == 200
    assert viewer_api.get(f"/api/v1/audiences/{audience.pk}/changes/?kind=enter").status_code == 200
    assert viewer_api.get(f"/api/v1/audiences/{audience.pk}/connections/").status_code == 200
    assert viewer_api.get(f"/api/v1/audiences/{audience.pk}/entries/").status_code == 200
    for method, url, body in [
        ("post", "/api/v1/audiences/", {"name": "X", "rule": NL}),
        ("patch", f"/api/v1/audiences/{audience.pk}/", {"name": "Y"}),
        ("delete", f"/api/v1/audiences/{audience.pk}/", None),
        ("post", f"/api/v1/audiences/{audience.pk}/refresh/", None),
        ("post", f"/api/v1/audiences/{audience.pk}/entries/", {"slot": "email", "values": ["a@b.co"]}),
        ("post", f"/api/v1/audiences/{audience.pk}/connections/", {"partner_config": 1}),
    ]:
        assert getattr(viewer_api, method)(url, body, format="json").status_code == 403, (method, url)
    assert APIClient().get("/api/v1/audiences/").status_code in (401, 403)
