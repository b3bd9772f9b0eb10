"""The live server the integration tests talk to (the same fixture as the client tests)."""

from tests.client.conftest import signoff_server

__all__ = ["signoff_server"]
