"""`signoff policy explain` against config/example.yaml: which policy, why, and what follows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import config
from bot.explain import STAND_IN, explain, load_for_explain, render
from tests.config.helpers import EXAMPLE_ENVIRON

EXAMPLE = Path(config.__file__).parent / "example.yaml"
SIGNOFF = Path(sys.executable).with_name("signoff")


@pytest.fixture(scope="module")
def example():
    loaded, stand_ins = load_for_explain(str(EXAMPLE), environ=EXAMPLE_ENVIRON)
    assert stand_ins == ()
    return loaded


def signoff(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in EXAMPLE_ENVIRON}
    environment.pop("SIGNOFF_CONFIG", None)
    environment.update(env or {})
    return subprocess.run(
        [str(SIGNOFF), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


def test_read_action_is_approved_at_once_by_read_only(example):
    result = explain(example, action="users.read", agent="deploy-bot")

    assert result.policy == "read-only"
    assert result.decision.value == "approve"
    assert [rule.policy for rule in result.rules] == ["read-only"]
    assert result.rules[0].reason == "action 'users.read' matches '*.read'"
    assert result.levels == ()
    text = render(result)
    assert "decision: auto approve" in text
    assert "approved at once by policy read-only (audited); nobody is asked" in text
    assert "agent 'deploy-bot' may NOT request 'users.read'" in text  # allow: deploy.*, db.*


def test_dropping_a_database_is_denied_at_once_by_never(example):
    result = explain(example, action="db.drop_database", agent="deploy-bot")

    assert result.policy == "never"
    assert result.decision.value == "deny"
    assert [(rule.policy, rule.matched) for rule in result.rules] == [
        ("read-only", False),
        ("never", True),
    ]
    assert result.rules[0].part == "action"
    text = render(result)
    assert "decision: auto deny" in text
    assert "denied at once by policy never (audited)" in text
    assert "agent 'deploy-bot' may request 'db.drop_database' (allow: deploy.*, db.*)" in text


def test_production_database_change_asks_two_levels_with_four_eyes(example):
    result = explain(
        example,
        action="db.migrate",
        agent="deploy-bot",
        params={"environment": "production"},
        requested_by="bob",
    )

    assert result.policy == "prod-db"
    assert [rule.policy for rule in result.rules] == ["read-only", "never", "prod-db"]
    assert result.rules[1].reason == (
        'action \'db.migrate\' matches none of ["db.drop_database", "*.delete_backups"]'
    )
    assert result.quorum == 2
    assert result.require_reason is True
    first, second = result.levels
    assert first.groups == {"oncall": ("alice", "bob"), "dbas": ("bob", "dave")}
    assert first.persons == ("alice", "bob", "dave")
    assert first.may_decide == ("alice", "dave")  # bob asked for it
    assert [(p.name, [t.describe() for t in p.targets]) for p in first.notify] == [
        ("ops-slack", ["slack channel C0OPS"]),
        ("ops-telegram", ["telegram chat -1001234"]),
    ]
    assert first.reminders == 2  # at 5m and 10m; at 15m it escalates instead
    assert first.then == "escalates to level 1 after 15m"
    assert second.persons == ("carol", "erin")
    assert second.may_decide == ("alice", "dave", "carol", "erin")
    dm, discord = second.notify
    assert [t.describe() for t in dm.targets] == ["discord user 200003 (carol)"]
    assert dm.notes == ("erin has no id on a configured chat platform: reached in the web inbox",)
    assert [t.describe() for t in discord.targets] == ["discord channel 300001"]
    assert second.then.startswith("at 1h15m with no decision, on_timeout deny")
    text = render(result)
    assert "level 0 (from the start, for 15m; reminders every 5m, 2 at most)" in text
    assert "asks: oncall (alice, bob), dbas (bob, dave) -> alice, bob, dave" in text
    assert "level 1 (after 15m, for 1h)" in text
    assert "timeout: 1h15m in all; an agent may ask for 5m to 4h" in text
    assert "at the end: with no decision after 1h15m, on_timeout deny: the request is denied" in (
        text
    )
    assert (
        "four-eyes: bob is an approver (level 0) but asked for this request (requested_by), "
        "so bob cannot decide it" in text
    )


def test_large_payment_goes_to_finance_and_expires(example):
    result = explain(
        example,
        action="payments.send",
        agent="billing-agent",
        params={"amount": 5000, "currency": "EUR"},
    )

    assert result.policy == "large-payments"
    matched = result.rules[-1]
    assert matched.reason == (
        "action 'payments.send' matches 'payments.*'; params.amount > 1000 holds "
        '(params.amount is 5000); params.currency in ["EUR", "USD", "GBP"] holds '
        '(params.currency is "EUR")'
    )
    (level,) = result.levels
    assert level.persons == ("dave", "erin")
    finance, dm = level.notify
    assert [t.describe() for t in finance.targets] == ["slack channel C0FINANCE"]
    assert [t.describe() for t in dm.targets] == ["slack user U0DAVE (dave)"]
    assert level.reminders == 3  # every 30m within 2h: at 30m, 1h, 1h30m
    assert result.on_timeout.value == "expire"
    assert "the request expires (neither approved nor denied)" in render(result)


def test_small_payment_skips_large_payments_naming_the_failed_predicate(example):
    result = explain(
        example,
        action="payments.send",
        agent="billing-agent",
        params={"amount": 50, "currency": "EUR"},
    )

    assert result.policy == "default"
    skipped = {rule.policy: rule for rule in result.rules if not rule.matched}
    assert skipped["large-payments"].part == "params"
    assert skipped["large-payments"].reason == (
        "params.amount > 1000 is false (params.amount is 50)"
    )
    assert skipped["prod-db"].reason == "action 'payments.send' matches none of [\"db.*\"]"
    assert result.rules[-1].reason == "matches every request (the catch-all)"


def test_a_payment_without_an_amount_fails_closed_into_the_stricter_policy(example):
    result = explain(
        example, action="payments.send", agent="billing-agent", params={"currency": "USD"}
    )

    # large-payments asks people, so doubt about the amount lets it match.
    assert result.policy == "large-payments"
    assert result.doubts == (
        "params.amount > 1000 cannot be judged (params.amount is missing); on doubt this "
        "policy, which does not auto-approve, still applies",
    )
    assert "params.amount > 1000 cannot be judged (counted as a match)" in result.rules[-1].reason


def test_default_policy_posts_to_web_and_slack(example):
    result = explain(example, action="deploy.web", agent="deploy-bot", requested_by="carol")

    assert result.policy == "default"
    (level,) = result.levels
    assert [(plan.name, [t.describe() for t in plan.targets]) for plan in level.notify] == [
        ("web", ["the web inbox"]),
        ("ops-slack", ["slack channel C0OPS"]),
    ]
    assert level.reminders == 2  # every 10m within 30m
    assert "four-eyes: carol is not an approver of this policy, so it changes nothing" in (
        result.notes
    )


def test_unknown_agent_and_requester_are_called_out(example):
    result = explain(example, action="deploy.web", agent="ghost", requested_by="mallory")

    assert result.agent_notes == (
        "agent 'ghost' is not configured (configured: billing-agent, deploy-bot); the API "
        "refuses it",
    )
    assert any("requested_by 'mallory' is not a person in config" in note for note in result.notes)


def test_a_requester_who_is_needed_for_quorum_makes_it_unreachable():
    from config import load_config_text

    loaded = load_config_text(
        """\
version: 1
people: {alice: {}, bob: {}}
policies:
  - name: default
    quorum: 2
    levels: [{approvers: [alice, bob], notify: [web], timeout: 10m}]
""",
        "two.yaml",
    )
    result = explain(loaded, action="x", requested_by="alice")

    assert (
        "quorum 2 cannot be met: only 1 person(s) may approve (bob); the request ends by "
        "on_timeout deny" in result.notes
    )


def test_cli_explains_the_example_without_its_secrets():
    result = signoff(
        "policy",
        "explain",
        "--config",
        str(EXAMPLE),
        "--action",
        "db.migrate",
        "--agent",
        "deploy-bot",
        "--param",
        "environment=production",
        "--requested-by",
        "bob",
    )

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "policy: prod-db (policies[2])" in out
    assert "skipped read-only (policies[0])" in out
    assert "skipped never (policies[1])" in out
    assert "matched prod-db (policies[2])" in out
    assert "may decide: alice, dave" in out
    assert "not set in the environment" in out
    for variable in EXAMPLE_ENVIRON:
        assert variable in out


def test_cli_json_is_the_structured_explanation():
    result = signoff(
        "policy",
        "explain",
        "--config",
        str(EXAMPLE),
        "--action",
        "payments.send",
        "--param-json",
        "amount=5000",
        "--param",
        "currency=GBP",
        "--json",
        env=EXAMPLE_ENVIRON,
    )

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["policy"] == "large-payments"
    assert data["decision"] == "ask"
    assert data["request"]["params"] == {"currency": "GBP", "amount": 5000}
    assert [rule["matched"] for rule in data["rules"]] == [False, False, False, True]
    assert data["levels"][0]["notify"][1] == {
        "name": "dm",
        "targets": [{"platform": "slack", "kind": "user", "id": "U0DAVE", "person": "dave"}],
        "notes": ["erin has no id on a configured chat platform: reached in the web inbox"],
    }
    assert data["timeout"] == {"default_seconds": 7200.0, "min_seconds": None, "max_seconds": None}
    assert data["on_timeout"] == "expire"
    assert data["stand_ins"] == []


def test_cli_reports_a_broken_config_with_file_and_line(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\npolicies:\n  - name: x\n    decision: maybe\n")

    result = signoff("policy", "explain", "--config", str(broken), "--action", "a")

    assert result.returncode == 2
    assert f"{broken}:4: policies[0].decision" in result.stderr
    assert "Traceback" not in result.stderr


def test_stand_in_is_used_only_for_unset_variables():
    loaded, stand_ins = load_for_explain(str(EXAMPLE), environ={"SLACK_BOT_TOKEN": "xoxb-1"})

    assert "SLACK_BOT_TOKEN" not in stand_ins
    assert set(stand_ins) == set(EXAMPLE_ENVIRON) - {"SLACK_BOT_TOKEN"}
    slack = loaded.settings.platforms.slack
    assert slack is not None
    assert slack.bot_token.get_secret_value() == "xoxb-1"
    assert slack.signing_secret is not None
    assert slack.signing_secret.get_secret_value() == STAND_IN
