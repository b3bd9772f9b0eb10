"""The live server the examples talk to (the same fixture as the client tests)."""

from tests.client.conftest import signoff_server

__all__ = ["signoff_server"]
