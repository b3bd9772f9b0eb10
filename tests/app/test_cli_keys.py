"""``signoff receipt-keys list|rotate|remove`` and ``signoff agents webhook-secret``."""

from __future__ import annotations

import json

from tests.app.test_cli_agents import config_file, signoff

__all__ = ["config_file"]


def test_keys_are_listed_rotated_and_removed(config_file):
    first = signoff("receipt-keys", "list", "--json", "--config", str(config_file))
    assert first.returncode == 0, first.stderr
    [original] = json.loads(first.stdout)["keys"]
    assert original["active"] is True

    rotated = signoff("receipt-keys", "rotate", "--json", "--config", str(config_file))
    assert rotated.returncode == 0, rotated.stderr
    new_key = json.loads(rotated.stdout)
    listed = json.loads(
        signoff("receipt-keys", "list", "--json", "--config", str(config_file)).stdout
    )
    assert [(k["key_id"], k["active"]) for k in listed["keys"]] == [
        (new_key["key_id"], True),
        (original["key_id"], False),
    ]

    removed = signoff("receipt-keys", "remove", original["key_id"], "--config", str(config_file))
    assert removed.returncode == 0, removed.stderr
    again = signoff("receipt-keys", "remove", original["key_id"], "--config", str(config_file))
    assert again.returncode == 1
    assert new_key["key_id"] in again.stdout
    table = signoff("receipt-keys", "list", "--config", str(config_file))
    assert new_key["key_id"] in table.stdout
    assert original["key_id"] not in table.stdout


def test_agents_add_prints_the_webhook_secret_that_webhook_secret_repeats(config_file):
    added = signoff("agents", "add", "deploy-bot", "--json", "--config", str(config_file))
    secret = json.loads(added.stdout)["webhook_secret"]
    assert secret.startswith("whsec_")

    shown = signoff(
        "agents", "webhook-secret", "deploy-bot", "--json", "--config", str(config_file)
    )
    rotated = signoff(
        "agents", "webhook-secret", "deploy-bot", "--rotate", "--config", str(config_file)
    )

    assert json.loads(shown.stdout) == {"agent": "deploy-bot", "secret": secret}
    assert rotated.returncode == 0, rotated.stderr
    assert "whsec_" in rotated.stdout
    assert secret not in rotated.stdout
    assert "previous secret also signs" in rotated.stdout


def test_webhook_secret_of_an_unconfigured_agent_is_a_usage_error(config_file):
    result = signoff("agents", "webhook-secret", "ghost-bot", "--config", str(config_file))
    assert result.returncode == 2
    assert "agent 'ghost-bot' is not configured" in result.stderr
