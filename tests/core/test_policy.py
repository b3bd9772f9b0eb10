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
from tests.world import make_policies

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
        (PredicateOp.GT, 1000, {"env": 1500.5}, True),
        (PredicateOp.EQ, 10, {"env": 10.0}, True),
        (PredicateOp.IN, [1, "a"], {"env": "a"}, True),
        (PredicateOp.NOT_IN, [1, "a"], {"env": 2}, True),
        (PredicateOp.EQ, [1, "a"], {"env": [1, "a"]}, True),
        (PredicateOp.EQ, [1], {"env": [True]}, False),
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


B11_WRONG_TYPES = [
    # text that looks like a number is text
    (PredicateOp.LTE, 50, "10"),
    (PredicateOp.LTE, 50, "1e1"),
    (PredicateOp.LTE, 50, " 10 "),
    (PredicateOp.LTE, 50, "\uff15\uff10"),  # fullwidth 50
    (PredicateOp.LTE, 50, "\u0665\u0660"),  # Arabic-Indic 50
    (PredicateOp.GT, 0, "NaN"),
    # a bool is not a number, though Python's bool is an int
    (PredicateOp.LTE, 50, True),
    (PredicateOp.GTE, 0, False),
    (PredicateOp.EQ, 1, True),
    (PredicateOp.NE, 0, True),
    (PredicateOp.IN, [0, 1], True),
    (PredicateOp.NOT_IN, [5], False),
    # a number is not text, and text is not a number
    (PredicateOp.EQ, "10", 10),
    (PredicateOp.NE, "prod", 10),
    (PredicateOp.IN, ["10", "20"], 10),
    (PredicateOp.NOT_IN, ["prod"], 10),
    (PredicateOp.EQ, 10, "10"),
    (PredicateOp.NE, 5, "10"),
    (PredicateOp.IN, [10, 20], "10"),
    (PredicateOp.NOT_IN, [10, 20], "30"),
    (PredicateOp.GLOB, "1*", 10),
    (PredicateOp.EQ, True, "true"),
    (PredicateOp.EQ, None, "null"),
    (PredicateOp.NE, None, 0),
]


@pytest.mark.parametrize(("op", "operand", "value"), B11_WRONG_TYPES)
def test_b11_a_value_of_the_wrong_json_type_cannot_be_judged(op, operand, value):
    predicate = ParamPredicate("refund.amount", op, operand)
    params = {"refund": {"amount": value}}
    with pytest.raises(_Undecidable):
        predicate.evaluate(params)
    assert "params.refund.amount is" in predicate.describe_value(params)


@pytest.mark.parametrize(("op", "operand", "value"), B11_WRONG_TYPES)
def test_b11_a_value_of_the_wrong_json_type_never_auto_approves(op, operand, value):
    predicate = ParamPredicate("refund.amount", op, operand)
    policies = PolicySet(
        (
            policy("auto-small", Match(params=(predicate,)), AutoDecision.APPROVE),
            policy("default"),
        )
    )
    selection = policies.explain("refund", "a", {"refund": {"amount": value}})
    assert selection.policy.name == "default"
    assert selection.skipped[0].mismatch.undecidable


def test_b11_values_of_the_right_type_still_match():
    small = Match(params=(ParamPredicate("refund.amount", PredicateOp.LTE, 50),))
    policies = PolicySet((policy("auto-small", small, AutoDecision.APPROVE), policy("default")))
    for amount in (10, 10.0, 50, -1, 0.5):
        assert policies.select("refund", "a", {"refund": {"amount": amount}}).name == "auto-small"
    assert policies.select("refund", "a", {"refund": {"amount": 51}}).name == "default"


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
