"""Shared Azure helpers: Storage SAS string-to-sign and signatures against independently computed vectors, SAS times,
Service Bus token parsing, and the XML error reader.

The vectors come from the azure-storage-queue 12.18.1 SDK (`generate_account_sas`, `generate_queue_sas`, which sign with
sv=2026-10-06) and from `openssl dgst -sha256 -mac HMAC` over strings written out by hand for the older layouts; none
were produced with the code under test.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from connectors.partners.azure_sas import (
    make_account_sas,
    make_queue_sas,
    parse_service_bus_token,
    parse_xml,
    sas_time,
    storage_account_string_to_sign,
    storage_queue_string_to_sign,
    storage_sas_fields,
    storage_signature,
    xml_error,
)
from connectors.partners.azure_storage_queue.sandbox import SANDBOX_ACCOUNT_KEY

KEY = base64.b64encode(bytes(range(32))).decode()  # "AAECAwQF…Hh8=", key bytes 0x00..0x1f

SDK_ACCOUNT_SAS = (
    "se=2030-01-01T00%3A00%3A00Z&sp=a&sv=2026-10-06&ss=q&srt=o&sig=bNz8W0Mf191NushgNk9N47vNv155r/0oJrGsYbxo3xg%3D"
)
SDK_ACCOUNT_SAS_FULL = (
    "st=2024-01-01T00%3A00%3A00Z&se=2030-01-01T00%3A00%3A00Z&sp=ra&sip=127.0.0.1&spr=https&sv=2026-10-06&ss=q"
    "&srt=co&sig=Mv77pJVRoDqfxdDVq0efnBsh%2B8RwiMe1Qf2TzUazQu8%3D"
)
SDK_QUEUE_SAS = "se=2030-01-01T00%3A00%3A00Z&sp=ra&sv=2026-10-06&sig=VoQEEo1OlsVMIS9okXuTS6kcPKGZgXYVMvUYZ/%2BiziM%3D"


@pytest.mark.parametrize("token", [SDK_ACCOUNT_SAS, SDK_ACCOUNT_SAS_FULL], ids=["minimal", "start-ip-protocol"])
def test_account_sas_signature_matches_the_sdk(token):
    fields = storage_sas_fields(token)
    assert storage_signature(KEY, storage_account_string_to_sign("dapsandbox", fields)) == fields["sig"]


def test_account_string_to_sign_layout_since_2020_12_06():
    fields = storage_sas_fields(SDK_ACCOUNT_SAS)
    expected = "dapsandbox\na\nq\no\n\n2030-01-01T00:00:00Z\n\n\n2026-10-06\n\n"
    assert storage_account_string_to_sign("dapsandbox", fields) == expected


def test_account_string_to_sign_before_encryption_scope():
    # openssl: printf 'dapsandbox\na\nq\no\n\n2030-01-01T00:00:00Z\n\nhttps\n2019-12-12\n' | HMAC with KEY
    fields = {"sv": "2019-12-12", "ss": "q", "srt": "o", "sp": "a", "se": "2030-01-01T00:00:00Z", "spr": "https"}
    text = storage_account_string_to_sign("dapsandbox", fields)
    assert text == "dapsandbox\na\nq\no\n\n2030-01-01T00:00:00Z\n\nhttps\n2019-12-12\n"
    assert storage_signature(KEY, text) == "DOd2JDjVn9lPtzIzAfQFhhyFbo3fr0hcbshS083m8jI="


def test_queue_sas_signature_matches_the_sdk():
    fields = storage_sas_fields(SDK_QUEUE_SAS)
    text = storage_queue_string_to_sign("dapsandbox", "profile-changes", fields)
    assert text == "ra\n\n2030-01-01T00:00:00Z\n/queue/dapsandbox/profile-changes\n\n\n\n2026-10-06"
    assert storage_signature(KEY, text) == fields["sig"]


def test_made_tokens_verify_and_the_factory_token_is_the_sandbox_one():
    # openssl over 'dapstorage01\nra\nq\nco\n\n2099-12-31T00:00:00Z\n\nhttps\n2022-11-02\n\n' with the sandbox key.
    token = make_account_sas(
        "dapstorage01",
        SANDBOX_ACCOUNT_KEY,
        permissions="ra",
        resource_types="co",
        expiry="2099-12-31T00:00:00Z",
        protocol="https",
    )
    assert token == (
        "sv=2022-11-02&ss=q&srt=co&sp=ra&se=2099-12-31T00%3A00%3A00Z&spr=https"
        "&sig=oX5hjMTdduCNaEyqHw%2FHsKeSQcQsBFy8cF5Xt62pvhc%3D"
    )
    from tests.factories import VALID_SETTINGS

    assert VALID_SETTINGS["azure_storage_queue"]["sas_token"] == token


def test_made_queue_sas_verifies():
    token = make_queue_sas("dapsandbox", "profile-changes", KEY, permissions="ra", expiry="2030-01-01T00:00:00Z",
                           version="2026-10-06")  # fmt: skip
    assert storage_sas_fields(token)["sig"] == storage_sas_fields(SDK_QUEUE_SAS)["sig"]


def test_key_that_is_not_base64_is_refused():
    with pytest.raises(ValueError):
        storage_signature("not base64!", "text")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2030-01-01", datetime(2030, 1, 1, tzinfo=UTC)),
        ("2030-01-01T12:30Z", datetime(2030, 1, 1, 12, 30, tzinfo=UTC)),
        ("2030-01-01T12:30:15Z", datetime(2030, 1, 1, 12, 30, 15, tzinfo=UTC)),
        ("2030-01-01T12:30:15.1234567Z", datetime(2030, 1, 1, 12, 30, 15, tzinfo=UTC)),
        ("2030-02-30", None),
        ("2030-01-01T12:30:15", None),
        ("", None),
    ],
)
def test_sas_time(value, expected):
    assert sas_time(value) == expected


def test_fields_tolerate_a_leading_question_mark():
    assert storage_sas_fields("?sv=1&sig=a%2Bb")["sig"] == "a+b"


def test_service_bus_token_parsing_keeps_values_encoded():
    fields = parse_service_bus_token("SharedAccessSignature sr=https%3A%2F%2Fx&sig=a%2Bb%3D&se=1&skn=send")
    assert fields == {"sr": "https%3A%2F%2Fx", "sig": "a%2Bb%3D", "se": "1", "skn": "send"}
    assert parse_service_bus_token("Bearer abc") is None
    assert parse_service_bus_token("SharedAccessSignature sr=a&sr=b") is None


def test_xml_error_reads_both_azure_shapes():
    assert xml_error(b"<Error><Code>401</Code><Detail>ExpiredToken: x</Detail></Error>") == {
        "Code": "401",
        "Detail": "ExpiredToken: x",
    }
    storage = b'<?xml version="1.0" encoding="utf-8"?><Error><Code>QueueNotFound</Code><Message>m</Message></Error>'
    assert xml_error(storage) == {"Code": "QueueNotFound", "Message": "m"}
    assert xml_error(b"<html>Error</html>") == {} and xml_error(b"") == {} and xml_error(b"<Error>") == {}


def test_documents_with_a_dtd_are_not_parsed():
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><Error><Code>&b;</Code></Error>'
    )
    assert parse_xml(bomb) is None and xml_error(bomb) == {}
    assert parse_xml(b"<a><![CDATA[<x>]]></a>") is not None
