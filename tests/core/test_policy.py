"""Policy matching, predicates, timeout bounds and snapshots."""

from datetime import timedelta

import pytest

from approvals.policy import (
    AutoDecision,
    Level,
    Match,
    ParamPredicate,
    Policy,
    PolicySet,
    PredicateOp,
    TimeoutOutcome,
    _Undecidable,
)
from tests.conftest import make_policies

LEVEL = Level(approvers=("alice",), notify=("web",), timeout=timedelta(minutes=5))


def policy(name, match=None, decision=AutoDecision.ASK, **extra):
    return Policy(name=name, match=match or Match(), decision=decision, levels=(LEVEL,), **extra)


def test_first_matching_policy_wins():
    policies = make_policies()
    assert policies.select("db.migrate", "bot", {"env": "prod"}).name == "prod-db"
    assert policies.select("db.migrate", "bot", {"env": "staging"}).name == "default"
    assert policies.select("users.read", "bot", {}).name == "read-only"
    assert policies.select("db.drop_database", "bot", {"env": "prod"}).name == "forbidden"


def test_agent_globs():
    policies = PolicySet((policy("bots", Match(agents=("ci-*",))), policy("default")))
    assert policies.select("x", "ci-runner", {}).name == "bots"
    assert policies.select("x", "deploy-bot", {}).name == "default"


def test_action_glob_is_case_sensitive():
    policies = PolicySet((policy("db", Match(actions=("db.*",))), policy("default")))
    assert policies.select("DB.drop", "a", {}).name == "default"


@pytest.mark.parametrize(
    ("op", "operand", "params", "expected"),
    [
        (PredicateOp.EQ, "prod", {"env": "prod"}, True),
        (PredicateOp.EQ, "prod", {"env": "dev"}, False),
        (PredicateOp.NE, "prod", {"env": "dev"}, True),
        (PredicateOp.IN, ["a", "b"], {"env": "b"}, True),
        (PredicateOp.NOT_IN, ["a", "b"], {"env": "c"}, True),
        (PredicateOp.GLOB, "prod-*", {"env": "prod-eu"}, True),
        (PredicateOp.GT, 1000, {"env": 1500}, True),
        (PredicateOp.GT, 1000, {"env": "1500"}, True),
        (PredicateOp.GT, 1000, {"env": 999.99}, False),
        (PredicateOp.LTE, 10, {"env": 10}, True),
        (PredicateOp.EXISTS, True, {"env": None}, True),
        (PredicateOp.EXISTS, False, {"env": 1}, False),
    ],
)
def test_predicates(op, operand, params, expected):
    assert ParamPredicate("env", op, operand).evaluate(params) is expected


@pytest.mark.parametrize(
    ("op", "operand", "params"),
    [
        (PredicateOp.EQ, "prod", {}),
        (PredicateOp.NE, "prod", {}),
        (PredicateOp.NOT_IN, ["prod"], {}),
        (PredicateOp.NE, "prod", {"env": ["prod"]}),
        (PredicateOp.GT, 10, {"env": "many"}),
    ],
)
def test_missing_or_mismatched_values_cannot_be_judged(op, operand, params):
    with pytest.raises(_Undecidable):
        ParamPredicate("env", op, operand).evaluate(params)


def test_negative_predicate_never_auto_approves_a_request_that_omits_the_value():
    policies = PolicySet(
        (
            policy(
                "auto-nonprod",
                Match(params=(ParamPredicate("env", PredicateOp.NE, "prod"),)),
                AutoDecision.APPROVE,
            ),
            policy("default"),
        )
    )
    assert policies.select("deploy", "a", {"env": "dev"}).name == "auto-nonprod"
    assert policies.select("deploy", "a", {}).name == "default"
    assert policies.select("deploy", "a", {"env": ["prod"]}).name == "default"


def test_dotted_paths_reach_nested_values():
    predicate = ParamPredicate("db.name", PredicateOp.EQ, "users")
    assert predicate.evaluate({"db": {"name": "users"}})
    assert not predicate.evaluate({"db": {"name": "orders"}})
    with pytest.raises(_Undecidable):
        predicate.evaluate({"db": "users"})


def test_undecidable_predicate_fails_closed():
    """A value that cannot be compared never lets an auto-approve policy match, but does
    make a stricter (asking) policy match."""
    big = Match(params=(ParamPredicate("amount", PredicateOp.GT, 1000),))
    small = Match(params=(ParamPredicate("amount", PredicateOp.LT, 100),))
    policies = PolicySet(
        (
            policy("small-auto", small, AutoDecision.APPROVE),
            policy("big-ask", big),
            policy("default", decision=AutoDecision.APPROVE),
        )
    )
    assert policies.select("pay", "a", {"amount": 50}).name == "small-auto"
    assert policies.select("pay", "a", {"amount": "lots"}).name == "big-ask"
    assert policies.select("pay", "a", {"amount": [1]}).name == "big-ask"
    assert policies.select("pay", "a", {}).name == "big-ask"
    assert policies.select("pay", "a", {"amount": 500}).name == "default"


def test_last_policy_must_catch_all():
    with pytest.raises(ValueError, match="last policy"):
        PolicySet((policy("db", Match(actions=("db.*",))),))


def test_asking_policy_needs_levels_and_positive_timeouts():
    with pytest.raises(ValueError, match="level"):
        Policy(name="p", levels=())
    with pytest.raises(ValueError, match="positive"):
        Policy(name="p", levels=(Level(("a",), ("web",), timedelta(0)),))
    assert Policy(name="auto", levels=(), decision=AutoDecision.APPROVE).total_timeout == timedelta(
        0
    )


def test_agent_timeout_is_clamped_to_policy_bounds():
    bounded = policy("p", min_timeout=timedelta(minutes=1), max_timeout=timedelta(hours=1))
    assert bounded.timeout_for(None) == timedelta(minutes=5)
    assert bounded.timeout_for(timedelta(seconds=5)) == timedelta(minutes=1)
    assert bounded.timeout_for(timedelta(days=3)) == timedelta(hours=1)
    assert bounded.timeout_for(timedelta(minutes=20)) == timedelta(minutes=20)


def test_approvers_accumulate_across_levels():
    prod = make_policies().policies[2]
    assert prod.approvers_through(0) == {"alice", "bob", "dave"}
    assert prod.approvers_through(1) == {"alice", "bob", "dave", "carol"}


def test_snapshot_round_trips():
    for original in make_policies().policies:
        assert Policy.from_json(original.to_json()) == original
    assert make_policies().policies[2].on_timeout is TimeoutOutcome.DENY
