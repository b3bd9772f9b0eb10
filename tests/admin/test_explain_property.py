"""Property: an explanation names exactly the policy that routing chooses, for any request."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import config
from approvals.policy import (
    AutoDecision,
    Level,
    Match,
    ParamPredicate,
    Policy,
    PolicySet,
    PredicateOp,
)
from bot.explain import explain, load_for_explain
from tests.config.helpers import EXAMPLE_ENVIRON

LEVEL = Level(approvers=("alice",), notify=("web",), timeout=timedelta(minutes=5))
NAMES = st.sampled_from(["db.drop", "db.read", "deploy.web", "payments.send", "x", ""])
GLOBS = st.sampled_from(["db.*", "*.read", "deploy.*", "payments.*", "*", "x", "?.y"])
KEYS = st.sampled_from(["amount", "env", "db.name", "tags"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2000, 2000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["prod", "staging", "1500", "abc", " 7 ", "prod-eu", ""]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["name", "x"]), inner)
    ),
    max_leaves=5,
)


@st.composite
def predicates(draw: st.DrawFn) -> ParamPredicate:
    op = draw(st.sampled_from(list(PredicateOp)))
    operand: object
    if op in (PredicateOp.IN, PredicateOp.NOT_IN):
        operand = draw(st.lists(SCALARS, max_size=3))
    elif op in (PredicateOp.GT, PredicateOp.GTE, PredicateOp.LT, PredicateOp.LTE):
        operand = draw(st.integers(-2000, 2000))
    elif op is PredicateOp.EXISTS:
        operand = draw(st.booleans())
    elif op is PredicateOp.GLOB:
        operand = draw(st.sampled_from(["prod*", "*", "?", "staging"]))
    else:
        operand = draw(SCALARS)
    return ParamPredicate(path=draw(KEYS), op=op, operand=operand)


@st.composite
def policy_sets(draw: st.DrawFn) -> PolicySet:
    count = draw(st.integers(0, 6))
    policies = []
    for index in range(count):
        match = Match(
            actions=tuple(draw(st.lists(GLOBS, max_size=2))),
            agents=tuple(draw(st.lists(GLOBS, max_size=2))),
            params=tuple(draw(st.lists(predicates(), max_size=3))),
        )
        decision = draw(st.sampled_from(list(AutoDecision)))
        policies.append(Policy(name=f"p{index}", match=match, decision=decision, levels=(LEVEL,)))
    policies.append(Policy(name="default", levels=(LEVEL,)))
    return PolicySet(tuple(policies))


@settings(max_examples=400, deadline=None)
@given(
    policy_set=policy_sets(),
    action=NAMES,
    agent=NAMES,
    params=st.dictionaries(KEYS, VALUES, max_size=4),
)
def test_explain_names_the_policy_select_chooses(policy_set, action, agent, params):
    selection = policy_set.explain(action, agent, params)

    assert selection.policy is policy_set.select(action, agent, params)
    position = policy_set.policies.index(selection.policy)
    assert [skipped.policy for skipped in selection.skipped] == list(policy_set.policies[:position])
    for skipped in selection.skipped:
        strict = skipped.policy.is_strict
        assert not skipped.policy.match.fits(action, agent, params, strict=strict)
        assert skipped.mismatch.reason


EXAMPLE_CONFIG, _ = load_for_explain(
    str(Path(config.__file__).parent / "example.yaml"), environ=EXAMPLE_ENVIRON
)


@settings(max_examples=200, deadline=None)
@given(
    action=st.sampled_from(
        ["db.migrate", "db.drop_database", "users.read", "payments.send", "deploy.web", "a.get"]
    ),
    agent=st.sampled_from(["deploy-bot", "billing-agent", "ghost"]),
    params=st.dictionaries(
        st.sampled_from(["environment", "amount", "currency"]),
        st.one_of(
            st.sampled_from(["production", "staging", "EUR", "JPY", "5000", "lots"]),
            st.integers(-10, 100_000),
            st.none(),
        ),
    ),
    requested_by=st.sampled_from([None, "alice", "bob", "erin", "mallory"]),
)
def test_explain_of_the_example_agrees_with_routing(action, agent, params, requested_by):
    result = explain(
        EXAMPLE_CONFIG, action=action, agent=agent, params=params, requested_by=requested_by
    )

    chosen = EXAMPLE_CONFIG.policy_set().select(action, agent, params)
    assert result.policy == chosen.name
    assert result.decision is chosen.decision
    assert [rule.matched for rule in result.rules] == [False] * (len(result.rules) - 1) + [True]
