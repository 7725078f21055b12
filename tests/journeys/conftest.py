import pytest


@pytest.fixture(autouse=True)
def no_kick(settings):
    """No dispatcher/engine tasks queued on commit: tests run the engine themselves."""
    settings.DAP_KICK_ON_COMMIT = False
