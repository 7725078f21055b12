"""Shared assertions."""

from tests.factories import ALL_TEST_SECRETS


def assert_no_secret(response, *more_secrets: str) -> None:
    """No test secret appears in the response body (API answer, page or admin page)."""
    body = response.content.decode()
    for secret in (*ALL_TEST_SECRETS, *more_secrets):
        assert secret not in body
