"""The live server the client tests talk to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client.server import ServedSignoff, serve_signoff


@pytest.fixture(scope="session")
def signoff_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSignoff]:
    """One ``signoff serve`` process for the whole test session."""
    with serve_signoff(tmp_path_factory.mktemp("signoff-serve")) as served:
        yield served
