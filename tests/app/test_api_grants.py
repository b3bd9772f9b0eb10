"""A request a time-boxed grant approved, through the agent API: the decision names the
grant, and the signed receipt carries it and verifies with the published keys."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from approvals.grants import GrantRule
from approvals.model import Verdict, VoteCommand
from approvals.policy import PolicySet
from signoff_client import verify_receipt

PARAMS = {"version": "1.2.3"}


def allow_grants(api) -> None:
    rules = api.runtime.service.rules
    policies = tuple(
        replace(policy, grants=GrantRule(max=timedelta(hours=1)))
        for policy in rules.policies.policies
    )
    api.runtime.service.reconfigure(replace(rules, policies=PolicySet(policies)))


async def test_a_grant_approval_is_reported_and_receipted_through_the_api(api):
    allow_grants(api)
    first = (await api.create(params=PARAMS)).json()
    vote = VoteCommand(first["id"], "web", "alice", Verdict.APPROVE, grant_for=timedelta(hours=1))
    await api.runtime.service.vote(vote)
    source = (await api.client.get(f"/v1/approvals/{first['id']}", headers=api.auth())).json()
    assert source["votes"][0]["grant_seconds"] == 3600
    grant = source["decision"]["grant"]
    assert grant["given_by"] == ["alice"]

    again = await api.create(params=PARAMS, title="Deploy web again")

    assert again.status_code == 201, again.text
    body = again.json()
    assert body["status"] == "approved"
    assert body["decision"]["by"] == f"grant:{grant['id']}"
    assert body["decision"]["platform"] == "grant"
    assert body["decision"]["grant"] == grant
    receipt = (
        await api.client.get(f"/v1/approvals/{body['id']}/receipt", headers=api.auth())
    ).json()
    assert receipt["receipt"]["deciders"] == ["alice"]
    assert receipt["receipt"]["grant"]["id"] == grant["id"]
    keys = (await api.client.get("/v1/receipt-keys", headers=api.auth())).json()
    signed = verify_receipt(receipt, "deploy.web", PARAMS, keys, request_id=body["id"])
    assert signed["grant"]["given_by"] == ["alice"]


async def test_a_plain_decision_carries_no_grant(api):
    created = (await api.create()).json()
    await api.runtime.service.vote(VoteCommand(created["id"], "web", "alice", Verdict.APPROVE))
    shown = (await api.client.get(f"/v1/approvals/{created['id']}", headers=api.auth())).json()
    assert shown["decision"]["grant"] is None
    receipt = (
        await api.client.get(f"/v1/approvals/{created['id']}/receipt", headers=api.auth())
    ).json()
    assert "grant" not in receipt["receipt"]
