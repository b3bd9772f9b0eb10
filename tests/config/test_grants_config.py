"""A policy's ``grants``: read into the core's rule, and errors that name the key and line."""

from __future__ import annotations

from datetime import timedelta

import pytest

from approvals.grants import GrantRule
from tests.config.helpers import load, problem_at, problems
from tests.config.test_cross_checks import PEOPLE, POLICY, config_with


def test_grants_are_read_into_the_policy() -> None:
    policy = POLICY + "    grants: {max: 2h, match: [params.table, params.db.name]}\n"

    loaded = load(config_with(PEOPLE, "  oncall: [alice]\n", policy))

    default = loaded.policy_set().named("default")
    assert default is not None
    assert default.grants == GrantRule(
        max=timedelta(hours=2), match=("params.table", "params.db.name")
    )
    assert default.grants.choices() == (
        timedelta(minutes=15),
        timedelta(hours=1),
        timedelta(hours=2),
    )


def test_grants_without_match_cover_the_whole_params() -> None:
    loaded = load(config_with(PEOPLE, "  oncall: [alice]\n", POLICY + "    grants: {max: 30m}\n"))

    default = loaded.policy_set().named("default")
    assert default is not None
    assert default.grants == GrantRule(max=timedelta(minutes=30))
    assert default.grants.choices() == (timedelta(minutes=15), timedelta(minutes=30))


@pytest.mark.parametrize(
    ("written", "key", "says"),
    [
        pytest.param("    grants: {max: soon}\n", "grants.max", "expected a duration", id="max"),
        pytest.param("    grants: {max: 8d}\n", "grants.max", "at most 7d, not 8d", id="too long"),
        pytest.param("    grants: {}\n", "grants.max", "", id="no max"),
        pytest.param(
            "    grants: {max: 1h, match: [table]}\n",
            "grants.match[0]",
            "is not a params path",
            id="not under params",
        ),
        pytest.param(
            "    grants: {max: 1h, match: []}\n",
            "grants.match",
            "name at least one params path",
            id="empty match",
        ),
        pytest.param("    grants: {max: 1h, when: later}\n", "grants.when", "", id="unknown key"),
        pytest.param(
            "    decision: approve\n    grants: {max: 1h}\n",
            "grants",
            "only for a policy that asks people",
            id="policy decides itself",
        ),
        pytest.param(
            "    confirm: true\n    grants: {max: 1h}\n",
            "grants",
            "not with confirm",
            id="approvals confirmed",
        ),
        pytest.param(
            "    risk: critical\n    grants: {max: 1h}\n",
            "grants",
            "set confirm: false to allow grants",
            id="critical risk confirms by default",
        ),
    ],
)
def test_grants_errors_name_the_key_and_line(written: str, key: str, says: str) -> None:
    found = problems(config_with(PEOPLE, "  oncall: [alice]\n", POLICY + written))

    problem = problem_at(found, f"policies[0].{key}")
    assert problem.line == 10 + written.count("\n")
    assert says in problem.message


def test_a_critical_policy_may_have_grants_when_it_says_confirm_false() -> None:
    policy = POLICY + "    risk: critical\n    confirm: false\n    grants: {max: 1h}\n"

    loaded = load(config_with(PEOPLE, "  oncall: [alice]\n", policy))

    default = loaded.policy_set().named("default")
    assert default is not None
    assert default.grants == GrantRule(max=timedelta(hours=1))
    assert not default.needs_confirmation
