"""A policy's ``risk`` and ``describe`` line: parsed once, rendered on every card first."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from approvals.card import build_card
from approvals.describe import MAX_LINE_LENGTH, MAX_VALUE_LENGTH, DescribeTemplate
from approvals.machine import Status
from approvals.model import ApprovalRequest
from approvals.policy import Level, Policy, Risk
from signoff_client.canonical import payload_sha256

PAYMENT = {
    "amount": {"value": 1200.5, "currency": "EUR"},
    "payee": {"name": "ACME GmbH", "iban": "DE02 1203 0000 0000 2020 51"},
    "lines": [{"sku": "A-1"}, {"sku": "B-2"}],
    "urgent": True,
    "note": None,
}


def render(template: str, params: dict[str, Any] = PAYMENT, **request: Any) -> str:
    return DescribeTemplate.parse(template).render(
        action=request.get("action", "pay.invoice"),
        agent=request.get("agent", "pay-bot"),
        title=request.get("title", "Pay invoice 7"),
        requested_by=request.get("requested_by"),
        params=params,
    )


@pytest.mark.parametrize(
    ("template", "line"),
    [
        pytest.param(
            "Pay {params.amount.value} {params.amount.currency} to {params.payee.name}",
            "Pay 1200.5 EUR to ACME GmbH",
            id="nested keys",
        ),
        pytest.param("First line: {params.lines.0.sku}", "First line: A-1", id="list index"),
        pytest.param(
            "{action} by {agent}: {title}", "pay.invoice by pay-bot: Pay invoice 7", id="roots"
        ),
        pytest.param("Urgent: {params.urgent}", "Urgent: true", id="boolean as JSON"),
        pytest.param(
            "{params.amount}", '{"currency": "EUR", "value": 1200.5}', id="object as JSON"
        ),
        pytest.param("To {params.payee.bic}", "To (no params.payee.bic)", id="missing key"),
        pytest.param(
            "Line {params.lines.9.sku}", "Line (no params.lines.9.sku)", id="missing index"
        ),
        pytest.param("Note: {params.note}", "Note: (no params.note)", id="null"),
        pytest.param("For {requested_by}", "For (no requested_by)", id="nobody"),
        pytest.param("{{literal}} {params.urgent}", "{literal} true", id="literal braces"),
        pytest.param("{ params.payee.name }", "ACME GmbH", id="spaces inside"),
    ],
)
def test_a_template_renders_the_requests_values(template, line):
    assert render(template) == line


def test_agent_values_stay_on_one_line_and_are_cut():
    params = {"payee": {"name": "ACME\n\nIgnore the amount, approve"}, "memo": "x" * 1000}
    assert render("To {params.payee.name}", params) == "To ACME Ignore the amount, approve"
    memo = render("Memo: {params.memo}", params)
    assert len(memo) == len("Memo: ") + MAX_VALUE_LENGTH
    assert memo.endswith("…")
    many = render("{params.memo} " * 4, params)
    assert len(many) == MAX_LINE_LENGTH
    assert many.endswith("…")


@pytest.mark.parametrize(
    ("template", "says"),
    [
        pytest.param("Pay {params.amount", "the '{' at character 5 is never closed", id="unclosed"),
        pytest.param("Pay } now", "a '}' at character 5 closes nothing", id="stray close"),
        pytest.param("Pay {}", "the placeholder at character 5 is empty", id="empty"),
        pytest.param(
            "Pay {amount}", "unknown placeholder {amount} at character 5", id="unknown root"
        ),
        pytest.param("{agent.name}", "only params has parts", id="parts of a scalar"),
        pytest.param("{params.a b}", "'a b' is not a key", id="odd key"),
        pytest.param("   ", "must not be empty", id="blank"),
        pytest.param("x" * 501, "at most 500 characters", id="too long"),
    ],
)
def test_a_bad_template_says_what_and_where(template, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        DescribeTemplate.parse(template)


def _request(policy: Policy) -> ApprovalRequest:
    now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    return ApprovalRequest(
        id="r1",
        agent="pay-bot",
        action="pay.invoice",
        title="Pay invoice 7",
        details="",
        params=PAYMENT,
        payload_sha256=payload_sha256("pay.invoice", PAYMENT),
        requested_by=None,
        policy=policy,
        status=Status.PENDING,
        level=0,
        created_at=now,
        deadline=now + timedelta(hours=1),
        next_due_at=None,
        next_remind_at=None,
    )


LEVELS = (Level(approvers=("alice",), notify=("web",), timeout=timedelta(hours=1)),)


def test_the_card_carries_the_risk_and_the_described_line():
    policy = Policy(
        name="payments",
        levels=LEVELS,
        risk=Risk.HIGH,
        describe=DescribeTemplate.parse("Pay {params.amount.value} to {params.payee.name}"),
    )
    card = build_card(_request(policy))
    assert card.risk is Risk.HIGH
    assert card.summary == "Pay 1200.5 to ACME GmbH"


def test_a_policy_without_them_gives_a_card_without_them():
    card = build_card(_request(Policy(name="default", levels=LEVELS)))
    assert card.risk is None
    assert card.summary is None


def test_the_snapshot_on_a_request_keeps_risk_and_describe():
    policy = Policy(
        name="payments",
        levels=LEVELS,
        risk=Risk.CRITICAL,
        describe=DescribeTemplate.parse("Pay {params.amount.value}"),
    )
    again = Policy.from_json(policy.to_json())
    assert again.risk is Risk.CRITICAL
    assert again.describe == policy.describe
