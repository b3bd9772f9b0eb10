"""The shipped configs: config/example.yaml and the built-in default."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import config
from approvals.directory import Destination, DestinationKind
from approvals.policy import AutoDecision, PredicateOp, TimeoutOutcome
from config import ConfigError, default_config, load_config, load_config_text
from tests.config.helpers import EXAMPLE_ENVIRON

EXAMPLE = Path(config.__file__).parent / "example.yaml"


def test_example_loads_with_its_documented_variables() -> None:
    loaded = load_config(EXAMPLE, environ=EXAMPLE_ENVIRON)

    assert loaded.source == str(EXAMPLE)
    slack = loaded.settings.platforms.slack
    assert slack is not None
    assert slack.bot_token.get_secret_value() == "xoxb-test-bot-token"
    assert slack.mode == "http"
    assert slack.api_url == "https://slack.com/api/"
    assert loaded.settings.platforms.discord is not None
    assert loaded.settings.platforms.discord.gateway_url == "wss://gateway.discord.gg"
    assert loaded.settings.agents["deploy-bot"].allow == ["deploy.*", "db.*"]
    assert loaded.settings.agents["deploy-bot"].max_open == 50


def test_example_without_its_variables_names_each_one() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(EXAMPLE, environ={})

    messages = [problem.message for problem in caught.value.problems]
    for variable in EXAMPLE_ENVIRON:
        assert f"environment variable {variable} is not set" in messages


def test_example_policy_set_keeps_order_and_expands_groups() -> None:
    policies = load_config(EXAMPLE, environ=EXAMPLE_ENVIRON).policy_set().policies

    assert [policy.name for policy in policies] == [
        "read-only",
        "never",
        "prod-db",
        "large-payments",
        "default",
    ]
    read_only, never, prod_db, payments, default = policies
    assert read_only.decision is AutoDecision.APPROVE
    assert read_only.levels == ()
    assert never.decision is AutoDecision.DENY
    assert never.match.actions == ("db.drop_database", "*.delete_backups")

    assert prod_db.match.actions == ("db.*",)
    assert prod_db.quorum == 2
    assert prod_db.require_reason is True
    assert prod_db.levels[0].approvers == ("alice", "bob", "dave")  # oncall + dbas, bob once
    assert prod_db.levels[0].notify == ("ops-slack", "ops-telegram")
    assert prod_db.levels[0].timeout == timedelta(minutes=15)
    assert prod_db.levels[0].remind_every == timedelta(minutes=5)
    assert prod_db.levels[1].approvers == ("carol", "erin")
    assert prod_db.levels[1].notify == ("dm", "ops-discord")
    assert prod_db.levels[1].remind_every is None
    assert prod_db.min_timeout == timedelta(minutes=5)
    assert prod_db.max_timeout == timedelta(hours=4)

    predicates = {predicate.path: predicate for predicate in payments.match.params}
    assert predicates["amount"].op is PredicateOp.GT
    assert predicates["amount"].operand == 1000
    assert predicates["currency"].op is PredicateOp.IN
    assert payments.on_timeout is TimeoutOutcome.EXPIRE

    assert default.match.is_catch_all
    assert default.on_timeout is TimeoutOutcome.DENY


def test_example_policy_set_routes_requests() -> None:
    policy_set = load_config(EXAMPLE, environ=EXAMPLE_ENVIRON).policy_set()

    def chosen(action: str, params: dict[str, object]) -> str:
        return policy_set.select(action, "deploy-bot", params).name

    assert chosen("users.read", {}) == "read-only"
    assert chosen("db.drop_database", {"environment": "production"}) == "never"
    assert chosen("db.drop_table", {"environment": "production"}) == "prod-db"
    assert chosen("db.drop_table", {"environment": "staging"}) == "default"
    assert chosen("payments.send", {"amount": 5000, "currency": "EUR"}) == "large-payments"
    assert chosen("payments.send", {"amount": 50, "currency": "EUR"}) == "default"


def test_example_directory_has_people_channels_and_platforms() -> None:
    directory = load_config(EXAMPLE, environ=EXAMPLE_ENVIRON).directory()

    assert directory.platforms == frozenset({"slack", "telegram", "discord"})
    assert dict(directory.people["alice"].identities) == {
        "slack": "U0ALICE",
        "telegram": "100001",
        "discord": "200001",
    }
    assert dict(directory.people["erin"].identities) == {}
    assert directory.channels["ops-telegram"] == (
        Destination("telegram", DestinationKind.CHANNEL, "-1001234"),
    )
    person = directory.person_for("telegram", "100002")
    assert person is not None
    assert person.name == "bob"
    assert directory.person_for("discord", "999") is None


def test_default_config_is_web_only_with_admin() -> None:
    loaded = default_config()

    assert loaded.source == "<built-in default>"
    assert loaded.settings.database.url == "sqlite:///signoff.db"
    assert loaded.settings.server.listen == "127.0.0.1:8080"
    assert loaded.settings.platforms.web.enabled is True
    assert loaded.settings.platforms.chat_platforms == frozenset()
    assert list(loaded.settings.agents) == ["local-agent"]
    assert loaded.settings.agents["local-agent"].allow == ["*"]
    assert list(loaded.settings.people) == ["admin"]

    (policy,) = loaded.policy_set().policies
    assert policy.name == "default"
    assert policy.match.is_catch_all
    assert policy.levels[0].approvers == ("admin",)
    assert policy.levels[0].notify == ("web",)
    assert policy.levels[0].timeout == timedelta(minutes=30)
    assert policy.on_timeout is TimeoutOutcome.DENY
    assert loaded.directory().platforms == frozenset()


DESIGN_CONFIG = """\
version: 1
server:   {listen: "127.0.0.1:8080", public_url: "http://127.0.0.1:8080"}
database: {url: "sqlite:///signoff.db"}
people:
  alice: {slack: U0ALICE, telegram: 100001, discord: "200001"}
  bob:   {slack: U0BOB, telegram: 100002}
  carol: {discord: "200003"}
groups:
  oncall: [alice, bob]
  leads:  [carol]
channels:
  ops-slack:    {slack: C0OPS}
  ops-telegram: {telegram: -1001234}
  ops-discord:  {discord: "300001"}
platforms:
  slack:    {bot_token: "${SLACK_BOT_TOKEN}", signing_secret: "${SLACK_SIGNING_SECRET}",
             mode: http, app_token: "${SLACK_APP_TOKEN}", api_url: "https://slack.com/api/"}
  telegram: {bot_token: "${TELEGRAM_BOT_TOKEN}", mode: polling,
             webhook_secret: "${TELEGRAM_WEBHOOK_SECRET}", api_url: "https://api.telegram.org/bot"}
  discord:  {bot_token: "${DISCORD_BOT_TOKEN}", api_url: "https://discord.com/api/v10",
             gateway_url: "wss://gateway.discord.gg"}
  web:      {enabled: true}
agents:
  deploy-bot: {allow: ["deploy.*", "db.*"], max_open: 50}
policies:
  - name: prod-db
    match: {action: "db.*"}
    quorum: 2
    require_reason: true
    levels:
      - {approvers: [oncall], notify: [ops-slack, ops-telegram], timeout: 15m, remind_every: 5m}
      - {approvers: [leads], notify: [dm], timeout: 1h}
    on_timeout: deny
  - name: default
    match: {}
    levels: [{approvers: [oncall], notify: [web], timeout: 30m}]
"""


def test_the_config_in_the_design_document_loads() -> None:
    environ = {
        **EXAMPLE_ENVIRON,
        "SLACK_APP_TOKEN": "xapp-test",
        "TELEGRAM_WEBHOOK_SECRET": "webhook-secret",
    }

    loaded = load_config_text(DESIGN_CONFIG, "design.yaml", environ=environ)

    prod_db = loaded.policy_set().policies[0]
    assert prod_db.approvers_through(1) == frozenset({"alice", "bob", "carol"})
    assert loaded.directory().destinations(["dm"], ["carol"]) == [
        Destination("discord", DestinationKind.USER, "200003")
    ]
