"""Shared helpers for the config tests: minimal documents and problem lookups."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from config import ConfigError, ConfigProblem, LoadedConfig, load_config_text

MINIMAL = """\
version: 1
people:
  alice: {}
policies:
  - name: default
    levels: [{approvers: [alice], notify: [web], timeout: 30m}]
"""
"""The smallest valid config; tests append sections to it or replace parts of it."""

EXAMPLE_ENVIRON = {
    "SLACK_BOT_TOKEN": "xoxb-test-bot-token",
    "SLACK_SIGNING_SECRET": "test-signing-secret",
    "TELEGRAM_BOT_TOKEN": "123456:test-telegram-token",
    "DISCORD_BOT_TOKEN": "test-discord-token",
}
"""The variables config/example.yaml references."""


def load(text: str, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load config text named ``test.yaml`` with an explicit environment."""
    return load_config_text(text, "test.yaml", environ=environ or {})


def problems(text: str, environ: Mapping[str, str] | None = None) -> list[ConfigProblem]:
    """The problems loading ``text`` reports; fails the test if it loads."""
    with pytest.raises(ConfigError) as caught:
        load(text, environ)
    return caught.value.problems


def problem_at(found: list[ConfigProblem], key_path: str) -> ConfigProblem:
    """The one problem reported at ``key_path``; fails the test if there is none."""
    matching = [problem for problem in found if problem.key_path == key_path]
    assert matching, f"no problem at {key_path!r}; got: {[str(p) for p in found]}"
    return matching[0]
