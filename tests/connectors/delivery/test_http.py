import responses

from connectors.delivery import http


def test_instrumented_transport_is_seen_whatever_the_import_order():
    # The fast path must step aside for mocks/tracing that patch requests' transport, also when this module was
    # first imported while such a patch was active.
    assert http._transport_instrumented() is False
    with responses.RequestsMock():
        assert http._transport_instrumented() is True
    assert http._transport_instrumented() is False


@responses.activate
def test_fast_request_goes_through_a_mocked_transport():
    responses.post("https://receiver.example/hook", status=202, body=b"ok")
    timed = http.fast_request(http.new_session(), "POST", "https://receiver.example/hook", timeout=3, body=b"{}",
                              headers={"content-type": "application/json"})  # fmt: skip
    assert (timed.response.status_code, timed.body) == (202, b"ok")
