"""Whole-config checks: names resolve, platforms exist, policies fit together."""

from __future__ import annotations

from datetime import timedelta

import pytest

from approvals.policy import Risk
from tests.config.helpers import MINIMAL, load, problem_at, problems


def config_with(people: str, groups: str, policies: str, extra: str = "") -> str:
    """A config document from its people, groups and policies sections."""
    return f"version: 1\npeople:\n{people}groups:\n{groups}{extra}policies:\n{policies}"


PEOPLE = "  alice: {slack: U0ALICE}\n  bob: {telegram: 100002}\n  carol: {}\n"
POLICY = "  - name: default\n    levels: [{approvers: [oncall], notify: [web], timeout: 30m}]\n"


def test_group_member_must_be_a_person() -> None:
    found = problems(config_with(PEOPLE, "  oncall: [alice, bobb]\n", POLICY))

    problem = problem_at(found, "groups.oncall[1]")
    assert problem.line == 7
    assert "did you mean 'bob'?" in problem.message


def test_groups_cannot_contain_groups() -> None:
    found = problems(config_with(PEOPLE, "  oncall: [alice]\n  all: [oncall, carol]\n", POLICY))

    assert "is a group" in problem_at(found, "groups.all[0]").message


def test_group_and_person_with_one_name_is_ambiguous() -> None:
    found = problems(config_with(PEOPLE, "  oncall: [alice]\n  carol: [bob]\n", POLICY))

    problem = problem_at(found, "groups.carol")
    assert problem.line == 8
    assert "both a person and a group" in problem.message


def test_approvers_expand_groups_in_order_without_repeats() -> None:
    policy = (
        "  - name: default\n"
        "    levels: [{approvers: [carol, oncall, alice, bob], notify: [web], timeout: 30m}]\n"
    )

    loaded = load(config_with(PEOPLE, "  oncall: [bob, alice]\n", policy))

    assert loaded.policy_set().policies[0].levels[0].approvers == ("carol", "bob", "alice")


def test_approver_must_be_a_person_or_group() -> None:
    policy = POLICY.replace("[oncall]", "[oncall, leads]")

    found = problems(config_with(PEOPLE, "  oncall: [alice]\n", policy))

    problem = problem_at(found, "policies[0].levels[0].approvers[1]")
    assert problem.line == 10
    assert "unknown approver 'leads'" in problem.message


def test_notify_entries_are_channels_dm_or_web() -> None:
    channels = "channels:\n  ops: {slack: C0OPS}\n"
    platforms = 'platforms:\n  slack: {bot_token: "${T}", signing_secret: "${S}"}\n'
    policy = POLICY.replace("[web]", "[web, dm, ops, opps]")

    found = problems(
        config_with(PEOPLE, "  oncall: [alice]\n", policy, channels + platforms),
        {"T": "t", "S": "s"},
    )

    assert [p.key_path for p in found] == ["policies[0].levels[0].notify[3]"]
    assert "did you mean 'ops'?" in found[0].message


def test_web_in_notify_needs_the_web_inbox() -> None:
    found = problems(MINIMAL + "platforms:\n  web: {enabled: false}\n")

    assert "web inbox is disabled" in problem_at(found, "policies[0].levels[0].notify[0]").message
    assert "nobody can be asked" in problem_at(found, "platforms.web.enabled").message


def test_channel_on_an_unconfigured_platform_is_an_error() -> None:
    found = problems(MINIMAL + "channels:\n  ops: {slack: C0OPS, discord: '300001'}\n")

    assert [(p.line, p.key_path) for p in found] == [
        (8, "channels.ops.discord"),
        (8, "channels.ops.slack"),
    ]


def test_channels_cannot_take_reserved_notify_names() -> None:
    text = MINIMAL + (
        'platforms:\n  discord: {bot_token: "${D}"}\nchannels:\n  dm: {discord: "300001"}\n'
    )

    found = problems(text, {"D": "d"})

    assert "reserved" in problem_at(found, "channels.dm").message


def test_two_people_cannot_share_a_platform_identity() -> None:
    people = PEOPLE + "  dave: {slack: U0ALICE}\n"

    found = problems(config_with(people, "  oncall: [alice]\n", POLICY))

    problem = problem_at(found, "people.dave.slack")
    assert problem.line == 6
    assert "already alice's" in problem.message


def test_only_the_last_policy_catches_all() -> None:
    policies = POLICY + POLICY.replace("default", "fallback")

    found = problems(config_with(PEOPLE, "  oncall: [alice]\n", policies))

    assert [(p.line, p.key_path) for p in found] == [(9, "policies[0].match")]


def test_the_last_policy_must_catch_all() -> None:
    policy = POLICY.replace("    levels", '    match: {agent: "deploy-*"}\n    levels')

    found = problems(config_with(PEOPLE, "  oncall: [alice]\n", policy))

    problem = problem_at(found, "policies[0].match")
    assert problem.line == 10
    assert "last policy must match every request" in problem.message


def test_policy_names_are_unique() -> None:
    first = POLICY.replace("    levels", "    match: {action: 'db.*'}\n    levels")

    found = problems(config_with(PEOPLE, "  oncall: [alice]\n", first + POLICY))

    assert problem_at(found, "policies[1].name").line == 12


def test_quorum_counts_distinct_people_across_levels() -> None:
    policy = (
        "  - name: default\n"
        "    quorum: 3\n"
        "    levels:\n"
        "      - {approvers: [oncall, alice], notify: [web], timeout: 15m}\n"
        "      - {approvers: [bob, oncall], notify: [web], timeout: 1h}\n"
    )
    enough = policy.replace("[bob, oncall]", "[carol]")

    found = problems(config_with(PEOPLE, "  oncall: [alice, bob]\n", policy))

    problem = problem_at(found, "policies[0].quorum")
    assert problem.line == 10
    assert "only 2" in problem.message
    assert load(config_with(PEOPLE, "  oncall: [alice, bob]\n", enough))


def test_min_timeout_cannot_exceed_max_timeout() -> None:
    policy = POLICY + "    min_timeout: 1h\n    max_timeout: 30m\n"

    found = problems(config_with(PEOPLE, "  oncall: [alice]\n", policy))

    assert problem_at(found, "policies[0].max_timeout").line == 12


def test_cross_checks_wait_for_the_schema() -> None:
    """Checks between sections run once every section is valid on its own."""
    text = config_with(PEOPLE, "  oncall: [nobody]\n", POLICY.replace("30m", "soon"))

    assert [p.key_path for p in problems(text)] == ["policies[0].levels[0].timeout"]


def test_deny_repeat_is_read_into_the_policy() -> None:
    policy = POLICY + "    deny_repeat: 30m\n"

    loaded = load(config_with(PEOPLE, "  oncall: [alice]\n", policy))

    default = loaded.policy_set().named("default")
    assert default is not None
    assert default.deny_repeat == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("written", "says"),
    [
        pytest.param("    deny_repeat: soon\n", "expected a duration", id="not a duration"),
        pytest.param("    deny_repeat: 31d\n", "at most 30d, not 31d", id="too long"),
        pytest.param(
            "    decision: deny\n    deny_repeat: 30m\n",
            "only for a policy that asks people",
            id="policy decides itself",
        ),
    ],
)
def test_deny_repeat_errors_name_the_key_and_line(written: str, says: str) -> None:
    found = problems(config_with(PEOPLE, "  oncall: [alice]\n", POLICY + written))

    problem = problem_at(found, "policies[0].deny_repeat")
    assert problem.line == 10 + written.count("\n")
    assert says in problem.message


def test_risk_and_describe_are_read_into_the_policy() -> None:
    policy = POLICY + '    risk: high\n    describe: "Pay {params.amount} to {params.payee.name}"\n'

    loaded = load(config_with(PEOPLE, "  oncall: [alice]\n", policy))

    default = loaded.policy_set().named("default")
    assert default is not None
    assert default.risk is Risk.HIGH
    assert default.describe is not None
    assert default.describe.source == "Pay {params.amount} to {params.payee.name}"


@pytest.mark.parametrize(
    ("written", "key", "says"),
    [
        pytest.param(
            "    risk: severe\n", "risk", "'low', 'medium', 'high' or 'critical'", id="risk"
        ),
        pytest.param(
            '    describe: "Pay {params.amount"\n',
            "describe",
            "the '{' at character 5 is never closed",
            id="describe unclosed",
        ),
        pytest.param(
            '    describe: "Pay {amount}"\n',
            "describe",
            "unknown placeholder {amount}",
            id="describe unknown placeholder",
        ),
    ],
)
def test_risk_and_describe_errors_name_the_key_and_line(written: str, key: str, says: str) -> None:
    found = problems(config_with(PEOPLE, "  oncall: [alice]\n", POLICY + written))

    problem = problem_at(found, f"policies[0].{key}")
    assert problem.line == 11
    assert says in problem.message
