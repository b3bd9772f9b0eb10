"""B11: params of the wrong JSON type never let an auto-approving policy match.

Through the whole application: policies that auto-approve small refunds, a known currency
and a dry run come first, and the standard asking policy catches the rest. Every value of
the wrong JSON type (numbers written as text, digits from other scripts, bools where a
number or text is expected, numbers where text is expected) is sent by an agent; each
request must be governed by the asking policy and wait for people, never be approved.
"""

from __future__ import annotations

from typing import Any

from tests.reliability.app_world import app_world

AUTO_APPROVING = (
    "- name: auto-small-refund",
    '  match: {action: "refund.*", params: {refund.amount: {lte: 50}}}',
    "  decision: approve",
    "- name: auto-known-currency",
    '  match: {action: "fx.*", params: {currency: {in: ["EUR", "USD"]}}}',
    "  decision: approve",
    "- name: auto-not-production",
    '  match: {action: "deploy.*", params: {environment: {ne: "production"}}}',
    "  decision: approve",
    "- name: auto-dry-run",
    '  match: {action: "sync.*", params: {dry_run: true, batch: {eq: 10}}}',
    "  decision: approve",
)

WRONG_TYPES: list[tuple[str, dict[str, Any]]] = [
    ("refund.issue", {"refund": {"amount": "10"}}),
    ("refund.issue", {"refund": {"amount": "1e1"}}),
    ("refund.issue", {"refund": {"amount": " 10 "}}),
    ("refund.issue", {"refund": {"amount": "\uff15\uff10"}}),  # fullwidth 50
    ("refund.issue", {"refund": {"amount": "\u0665\u0660"}}),  # Arabic-Indic 50
    ("refund.issue", {"refund": {"amount": True}}),
    ("refund.issue", {"refund": {"amount": False}}),
    ("refund.issue", {"refund": {"amount": None}}),
    ("refund.issue", {"refund": {"amount": [10]}}),
    ("refund.issue", {"refund": "10"}),
    ("fx.convert", {"currency": 10}),
    ("fx.convert", {"currency": True}),
    ("deploy.web", {"environment": 10}),
    ("deploy.web", {"environment": False}),
    ("deploy.web", {"environment": ["staging"]}),
    ("sync.run", {"dry_run": 1, "batch": 10}),
    ("sync.run", {"dry_run": "true", "batch": 10}),
    ("sync.run", {"dry_run": True, "batch": "10"}),
    ("sync.run", {"dry_run": True, "batch": True}),
]

RIGHT_TYPES: list[tuple[str, dict[str, Any], str]] = [
    ("refund.issue", {"refund": {"amount": 10}}, "auto-small-refund"),
    ("refund.issue", {"refund": {"amount": 50.0}}, "auto-small-refund"),
    ("fx.convert", {"currency": "EUR"}, "auto-known-currency"),
    ("deploy.web", {"environment": "staging"}, "auto-not-production"),
    ("sync.run", {"dry_run": True, "batch": 10}, "auto-dry-run"),
]


async def test_B11_params_of_the_wrong_type_never_auto_approve(tmp_path):
    async with app_world(tmp_path, first_policies=AUTO_APPROVING) as world:
        problems = []
        for action, params in WRONG_TYPES:
            response = await world.create(action=action, title=f"B11 {action}", params=params)
            assert response.status_code == 201, response.text
            request = await world.get(response.json()["id"])
            if request.policy_name != "default" or request.status.value != "pending":
                problems.append(
                    f"{action} {params}: policy {request.policy_name}, {request.status.value}"
                )
        for action, params, expected in RIGHT_TYPES:
            response = await world.create(action=action, title=f"B11 {action}", params=params)
            assert response.status_code == 201, response.text
            request = await world.get(response.json()["id"])
            if request.policy_name != expected or request.status.value != "approved":
                problems.append(
                    f"{action} {params}: policy {request.policy_name}, {request.status.value}, "
                    f"not {expected} and approved"
                )
        assert not problems, "\n".join(problems)
        await world.check()
