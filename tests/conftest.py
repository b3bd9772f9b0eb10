"""Fixtures every test gets automatically: no proxies, and a fresh set of log secrets.

The test world (stores, clock, rules, runtime, service) is the plugin :mod:`tests.world`.
"""

from __future__ import annotations

import pytest

from bot import logging_setup


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests talk to 127.0.0.1 only; some client libraries ignore NO_PROXY.
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _fresh_log_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    # The secrets kept out of logs are process-wide; each test knows only its own, so a
    # placeholder secret such as "x" in one test cannot blank letters in another's log.
    monkeypatch.setattr(logging_setup, "SECRETS", logging_setup.SecretSet())
