import pytest
from django.core.exceptions import ValidationError

from audiences import profiles
from audiences.models import Profile, ProfileIdentifier
from audiences.profiles import mask_identifier, profile_bulk_upsert

pytestmark = pytest.mark.django_db

# Queries of one bulk call whatever its size: transaction (savepoint + release in tests), read profiles, read
# identifiers, upsert profiles, delete replaced identifiers, insert new identifiers.
BULK_MAX_QUERIES = 7


def idents(external_id: str) -> dict[str, str]:
    return dict(
        ProfileIdentifier.objects.filter(profile__external_id=external_id).order_by("slot").values_list("slot", "value")
    )


def errors_by_index(result) -> dict[int, dict[str, list[str]]]:
    return {e.index: e.errors for e in result.errors}


def test_creates_profiles_with_attributes_identifiers_and_consent():
    result = profile_bulk_upsert(
        rows=[
            {
                "external_id": "crm-1",
                "attributes": {"country": "NL", "orders": 3, "tags": ["vip"], "address": {"city": "Utrecht"}},
                "identifiers": {"email": "  Jan@Example.COM ", "phone": "+31 6 1234-5678", "xandr_uid": "123456789"},
                "consent_ads": False,
            },
            {"external_id": "crm-2"},
        ]
    )
    assert (result.created, result.updated, result.unchanged, result.errors) == (2, 0, 0, [])
    assert result.written
    first = Profile.objects.get(external_id="crm-1")
    assert first.attributes == {"country": "NL", "orders": 3, "tags": ["vip"], "address": {"city": "Utrecht"}}
    assert first.consent_ads is False
    assert Profile.objects.get(external_id="crm-2").consent_ads is True  # the model default for new profiles
    # stored normalised: trimmed, email lower-cased, phone in E.164
    assert idents("crm-1") == {"email": "jan@example.com", "phone": "+31612345678", "xandr_uid": "123456789"}
    assert sorted(result.profile_ids) == sorted(Profile.objects.values_list("id", flat=True))


def test_attributes_merge_given_keys_replace_null_removes_others_kept():
    profile_bulk_upsert(rows=[{"external_id": "p", "attributes": {"a": 1, "b": "x", "c": [1]}}])
    profile = Profile.objects.get(external_id="p")
    before = profile.updated_at

    result = profile_bulk_upsert(rows=[{"external_id": "p", "attributes": {"b": "y", "c": None, "d": True}}])
    assert (result.created, result.updated, result.unchanged) == (0, 1, 0)
    profile.refresh_from_db()
    assert profile.attributes == {"a": 1, "b": "y", "d": True}
    assert profile.updated_at > before

    # the same data again: unchanged, nothing written (updated_at kept)
    stamp = profile.updated_at
    result = profile_bulk_upsert(rows=[{"external_id": "p", "attributes": {"b": "y", "c": None}, "consent_ads": True}])
    assert (result.created, result.updated, result.unchanged) == (0, 0, 1)
    assert not result.written
    profile.refresh_from_db()
    assert profile.updated_at == stamp


def test_json_types_compare_as_json_not_as_python():
    profile_bulk_upsert(rows=[{"external_id": "p", "attributes": {"flag": 1}}])
    result = profile_bulk_upsert(rows=[{"external_id": "p", "attributes": {"flag": True}}])
    assert result.updated == 1
    assert Profile.objects.get(external_id="p").attributes == {"flag": True}
    assert profile_bulk_upsert(rows=[{"external_id": "p", "attributes": {"flag": 1.0}}]).updated == 1
    profile_bulk_upsert(rows=[{"external_id": "p", "attributes": {"obj": {"a": [1, {"b": 2}], "c": None}}}])
    same = {"external_id": "p", "attributes": {"flag": 1.0, "obj": {"c": None, "a": [1, {"b": 2}]}}}
    assert profile_bulk_upsert(rows=[same]).unchanged == 1  # object key order does not matter
    assert profile_bulk_upsert(rows=[{"external_id": "p", "attributes": {"obj": {"a": [1, {"b": 3}]}}}]).updated == 1


def test_consent_change_alone_is_an_update():
    profile_bulk_upsert(rows=[{"external_id": "p"}])
    result = profile_bulk_upsert(rows=[{"external_id": "p", "consent_ads": False}])
    assert result.updated == 1
    assert Profile.objects.get(external_id="p").consent_ads is False
    # omitted consent keeps the stored one
    profile_bulk_upsert(rows=[{"external_id": "p", "attributes": {"x": 1}}])
    assert Profile.objects.get(external_id="p").consent_ads is False


def test_identifiers_replace_remove_and_keep():
    profile_bulk_upsert(
        rows=[{"external_id": "p", "identifiers": {"email": "a@example.com", "customer_id": "C-1", "gclid": "g1"}}]
    )
    result = profile_bulk_upsert(
        rows=[{"external_id": "p", "identifiers": {"email": "b@example.com", "customer_id": None, "gclid": "g1"}}]
    )
    assert result.updated == 1
    assert idents("p") == {"email": "b@example.com", "gclid": "g1"}
    # the same identifiers again (as the stored normal form or not): unchanged
    result = profile_bulk_upsert(rows=[{"external_id": "p", "identifiers": {"email": " B@example.com", "gclid": "g1"}}])
    assert result.unchanged == 1
    # removing what is not there is no change either
    assert profile_bulk_upsert(rows=[{"external_id": "p", "identifiers": {"phone": None}}]).unchanged == 1


def test_hashed_email_and_phone_are_accepted_lower_cased():
    digest = "A" * 64
    profile_bulk_upsert(rows=[{"external_id": "p", "identifiers": {"email": digest, "phone": "b" * 64}}])
    assert idents("p") == {"email": "a" * 64, "phone": "b" * 64}


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({}, "external_id"),
        ({"external_id": ""}, "external_id"),
        ({"external_id": 42}, "external_id"),
        ({"external_id": "x" * 201}, "external_id"),
        ({"external_id": " padded"}, "external_id"),
        ({"external_id": "tab\there"}, "external_id"),
        ({"external_id": "p", "attributes": ["a"]}, "attributes"),
        ({"external_id": "p", "attributes": {"a__b": 1}}, "attributes.a__b"),
        ({"external_id": "p", "attributes": {"1st": 1}}, "attributes.1st"),
        ({"external_id": "p", "attributes": {"with space": 1}}, "attributes.with space"),
        ({"external_id": "p", "attributes": {"n": float("nan")}}, "attributes.n"),
        ({"external_id": "p", "attributes": {"deep": [[[[[[[[[[1]]]]]]]]]]}}, "attributes.deep"),
        ({"external_id": "p", "attributes": {"when": object()}}, "attributes.when"),
        ({"external_id": "p", "identifiers": "a@example.com"}, "identifiers"),
        ({"external_id": "p", "identifiers": {"fax": "123"}}, "identifiers.fax"),
        ({"external_id": "p", "identifiers": {"email": "not-an-email"}}, "identifiers.email"),
        ({"external_id": "p", "identifiers": {"email": ""}}, "identifiers.email"),
        ({"external_id": "p", "identifiers": {"phone": "0612345678"}}, "identifiers.phone"),
        ({"external_id": "p", "identifiers": {"phone": "+31-abc"}}, "identifiers.phone"),
        ({"external_id": "p", "identifiers": {"xandr_uid": "12ab"}}, "identifiers.xandr_uid"),
        ({"external_id": "p", "identifiers": {"xandr_uid": "0"}}, "identifiers.xandr_uid"),
        ({"external_id": "p", "identifiers": {"mobile_ad_id": "not-a-uuid"}}, "identifiers.mobile_ad_id"),
        (
            {"external_id": "p", "identifiers": {"mobile_ad_id": "00000000-0000-0000-0000-000000000000"}},
            "identifiers.mobile_ad_id",
        ),
        ({"external_id": "p", "identifiers": {"customer_id": 12}}, "identifiers.customer_id"),
        ({"external_id": "p", "identifiers": {"customer_id": "x" * 321}}, "identifiers.customer_id"),
        ({"external_id": "p", "consent_ads": "yes"}, "consent_ads"),
        ({"external_id": "p", "consent": True}, "consent"),
    ],
)
def test_invalid_rows_are_reported_by_index_and_field_and_nothing_is_written(row, field):
    result = profile_bulk_upsert(rows=[{"external_id": "ok", "attributes": {"a": 1}}, row])
    assert not result.written
    errors = errors_by_index(result)
    assert list(errors) == [1]
    assert field in errors[1], errors
    assert all(isinstance(m, str) and m for m in errors[1][field])
    assert not Profile.objects.exists()


def test_a_row_that_is_not_an_object():
    result = profile_bulk_upsert(rows=["crm-1"])
    assert list(errors_by_index(result)[0]) == ["non_field_errors"]


def test_every_problem_of_a_row_is_reported():
    row = {"external_id": "", "attributes": {"a__b": 1}, "identifiers": {"email": "x", "phone": "1"}}
    errors = errors_by_index(profile_bulk_upsert(rows=[row]))[0]
    assert set(errors) == {"external_id", "attributes.a__b", "identifiers.email", "identifiers.phone"}


def test_partial_writes_the_valid_rows_and_reports_the_others():
    result = profile_bulk_upsert(
        rows=[
            {"external_id": "a", "identifiers": {"email": "a@example.com"}},
            {"external_id": "b", "identifiers": {"email": "broken"}},
            {"external_id": "c"},
        ],
        partial=True,
    )
    assert (result.created, result.updated, result.unchanged) == (2, 0, 0)
    assert list(errors_by_index(result)) == [1]
    assert set(Profile.objects.values_list("external_id", flat=True)) == {"a", "c"}


def test_dry_run_validates_and_counts_but_writes_nothing():
    result = profile_bulk_upsert(rows=[{"external_id": "a"}], dry_run=True)
    assert result.created == 1 and not result.written
    assert not Profile.objects.exists()


def test_the_same_external_id_twice_in_one_call_refuses_every_occurrence():
    result = profile_bulk_upsert(
        rows=[{"external_id": "a"}, {"external_id": "b"}, {"external_id": "a", "attributes": {"x": 1}}], partial=True
    )
    errors = errors_by_index(result)
    assert sorted(errors) == [0, 2]
    assert "also row 2" in errors[0]["external_id"][0]
    assert "also row 0" in errors[2]["external_id"][0]
    assert list(Profile.objects.values_list("external_id", flat=True)) == ["b"]


def test_the_same_identifier_on_two_rows_refuses_both():
    result = profile_bulk_upsert(
        rows=[
            {"external_id": "a", "identifiers": {"email": "same@example.com"}},
            {"external_id": "b", "identifiers": {"email": "SAME@example.com "}},  # equal once normalised
        ],
        partial=True,
    )
    assert sorted(errors_by_index(result)) == [0, 1]
    assert "identifiers.email" in result.errors[0].errors
    assert not Profile.objects.exists()


def test_an_identifier_held_by_another_profile_is_refused_not_moved():
    profile_bulk_upsert(rows=[{"external_id": "owner", "identifiers": {"email": "x@example.com", "xandr_uid": "77"}}])
    result = profile_bulk_upsert(
        rows=[
            {"external_id": "thief", "identifiers": {"email": "x@example.com"}},  # a new profile
            {"external_id": "owner", "attributes": {"kept": True}},
        ]
    )
    errors = errors_by_index(result)
    assert list(errors) == [0]
    assert 'external id "owner"' in errors[0]["identifiers.email"][0]
    assert not Profile.objects.filter(external_id="thief").exists()
    assert Profile.objects.get(external_id="owner").attributes == {}  # the call wrote nothing

    # an existing profile cannot take it either, even when the holder releases it in the same call
    profile_bulk_upsert(rows=[{"external_id": "other"}])
    result = profile_bulk_upsert(
        rows=[
            {"external_id": "owner", "identifiers": {"email": None}},
            {"external_id": "other", "identifiers": {"email": "x@example.com"}},
        ]
    )
    assert list(errors_by_index(result)) == [1]
    assert idents("owner") == {"email": "x@example.com", "xandr_uid": "77"}

    # released first, then taken: the move done in two calls
    assert profile_bulk_upsert(rows=[{"external_id": "owner", "identifiers": {"email": None}}]).updated == 1
    assert profile_bulk_upsert(rows=[{"external_id": "other", "identifiers": {"email": "x@example.com"}}]).updated == 1
    assert idents("other") == {"email": "x@example.com"}
    assert idents("owner") == {"xandr_uid": "77"}


def test_a_slot_holding_several_values_is_replaced_by_the_given_one():
    profile = Profile.objects.create(external_id="p")
    ProfileIdentifier.objects.create(profile=profile, slot="customer_id", value="A")
    ProfileIdentifier.objects.create(profile=profile, slot="customer_id", value="B")
    assert profile_bulk_upsert(rows=[{"external_id": "p", "identifiers": {"customer_id": "B"}}]).updated == 1
    assert list(profile.identifiers.values_list("value", flat=True)) == ["B"]


def test_merged_attributes_have_a_size_limit(monkeypatch):
    monkeypatch.setattr(profiles, "MAX_ATTRIBUTES_BYTES", 100)
    profile_bulk_upsert(rows=[{"external_id": "p", "attributes": {"a": "x" * 60}}])
    result = profile_bulk_upsert(rows=[{"external_id": "p", "attributes": {"b": "y" * 60}}])
    assert "attributes" in errors_by_index(result)[0]
    assert Profile.objects.get(external_id="p").attributes == {"a": "x" * 60}


def test_the_call_itself_must_be_a_list_of_at_most_10000_rows():
    with pytest.raises(ValidationError) as info:
        profile_bulk_upsert(rows={"external_id": "a"})
    assert "profiles" in info.value.message_dict
    with pytest.raises(ValidationError) as info:
        profile_bulk_upsert(rows=[{"external_id": str(i)} for i in range(profiles.MAX_BULK_ROWS + 1)])
    assert "At most 10000" in info.value.message_dict["profiles"][0]
    assert profile_bulk_upsert(rows=[]).as_dict() == {"created": 0, "updated": 0, "unchanged": 0, "errors": []}


def test_a_concurrent_claim_of_an_identifier_rolls_everything_back(monkeypatch):
    profile_bulk_upsert(rows=[{"external_id": "owner", "identifiers": {"email": "x@example.com"}}])
    # what a concurrent call committing between our check and our write looks like: the check saw nothing
    monkeypatch.setattr(profiles, "_fetch_identifiers", lambda profile_ids, claims: [])
    with pytest.raises(profiles.ProfileWriteConflict):
        profile_bulk_upsert(
            rows=[{"external_id": "new", "attributes": {"a": 1}, "identifiers": {"email": "x@example.com"}}]
        )
    assert not Profile.objects.filter(external_id="new").exists()


def _rows(count: int, *, version: int) -> list[dict]:
    return [
        {
            "external_id": f"crm-{i}",
            "attributes": {"n": i, "version": version},
            "identifiers": {"email": f"p{i}.v{version}@example.com", "customer_id": f"C{i}", "gclid": None},
            "consent_ads": bool(i % 2),
        }
        for i in range(count)
    ]


@pytest.mark.parametrize("count", [1, 1000])
def test_the_number_of_queries_does_not_depend_on_the_number_of_rows(count, django_assert_max_num_queries):
    with django_assert_max_num_queries(BULK_MAX_QUERIES):
        created = profile_bulk_upsert(rows=_rows(count, version=1))
    assert created.created == count
    with django_assert_max_num_queries(BULK_MAX_QUERIES):
        updated = profile_bulk_upsert(rows=_rows(count, version=2))  # attributes and an identifier replaced
    assert updated.updated == count
    with django_assert_max_num_queries(BULK_MAX_QUERIES):
        unchanged = profile_bulk_upsert(rows=_rows(count, version=2))
    assert unchanged.unchanged == count
    assert ProfileIdentifier.objects.count() == 2 * count
    last = Profile.objects.get(external_id=f"crm-{count - 1}")
    assert last.attributes == {"n": count - 1, "version": 2}
    assert idents(f"crm-{count - 1}")["email"] == f"p{count - 1}.v2@example.com"


@pytest.mark.parametrize(
    ("slot", "value", "masked"),
    [
        ("email", "jan@example.com", "j•••@example.com"),
        ("phone", "+31612345678", "+31•••••678"),
        ("xandr_uid", "1234567890", "12•••90"),
        ("mobile_ad_id", "6D92078A-8246-4BA4-AE5B-000000000001", "6D•••01"),
        ("customer_id", "C-1", "•••"),
        ("email", "a" * 64, "aa•••aa"),
    ],
)
def test_masks(slot, value, masked):
    assert mask_identifier(slot, value) == masked
