"""B13: a person who approves nothing opens every inbox page and sees nothing of others'.

The audit log names requests, actions, reasons, deciders and callback URLs (with any
secret in their query string). Each person sees only the requests they approve at some
level, on every page (inbox, history, request pages, the audit log); people listed under
``admins`` see everything. The service's own entries (config loads) are for admins only.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outcomes import Created
from approvals.policy import Level, Match, Policy, PolicySet
from approvals.service import Rules
from config import load_config_text
from config.problems import ConfigError
from tests.web.conftest import inbox_harness
from tests.world import build_test_runtime, make_directory, make_policies

SECRET = "cb-secret-0f9e8d"
CAROL_ONLY = Policy(
    name="carol-only",
    match=Match(actions=("secret.*",)),
    levels=(Level(approvers=("carol",), notify=("web",), timeout=timedelta(minutes=30)),),
)


def rules_with_admins(*admins: str) -> Rules:
    policies = PolicySet((CAROL_ONLY, *make_policies().policies))
    return Rules(policies=policies, directory=replace(make_directory(), admins=frozenset(admins)))


async def _world(store, clock, *admins: str):
    inbox = await inbox_harness(build_test_runtime(store, clock, rules_with_admins(*admins)))
    await inbox.store.run(
        lambda tx: tx.append_audit("config_loaded", at=clock.now(), actor="signoff", data={})
    )

    async def create(action: str, title: str) -> str:
        outcome = await inbox.service.create(
            CreateCommand(
                agent="deploy-bot",
                action=action,
                title=title,
                callback_url=f"https://hooks.example.com/cb?token={SECRET}",
            )
        )
        assert isinstance(outcome, Created)
        return outcome.request.id

    carols = await create("secret.rotate", "Rotate the vault key")
    await inbox.service.vote(
        VoteCommand(carols, "web", "carol", Verdict.DENY, reason="vault frozen until Monday")
    )
    alices = await create("deploy.web", "Deploy web")
    return inbox, carols, alices


@pytest.mark.parametrize("page", ["/audit", "/history", "/"])
async def test_B13_someone_who_approves_nothing_sees_nothing_of_others(store, clock, page):
    inbox, carols, alices = await _world(store, clock)
    erin = await inbox.signed_in("erin")  # in the directory, approves nothing
    shown = (await erin.get(page)).text
    for hidden in (carols, alices, SECRET, "secret.rotate", "vault frozen until Monday", "carol"):
        assert hidden not in shown, f"{page} shows {hidden!r}"
    for request_id in (carols, alices):
        assert (await erin.get(f"/requests/{request_id}")).status_code == 404
    await inbox.close()


async def test_B13_an_approver_sees_the_entries_of_their_requests_only(store, clock):
    inbox, carols, alices = await _world(store, clock)
    alice = await inbox.signed_in("alice")
    audit = (await alice.get("/audit")).text
    assert alices in audit
    assert carols not in audit
    assert "vault frozen until Monday" not in audit
    assert "config_loaded" not in audit  # the service's own entries are for admins
    history = (await alice.get("/history")).text
    assert carols not in history
    assert (await alice.get(f"/requests/{carols}")).status_code == 404
    await inbox.close()


async def test_B13_admins_see_everything(store, clock):
    inbox, carols, alices = await _world(store, clock, "erin")
    erin = await inbox.signed_in("erin")
    audit = (await erin.get("/audit")).text
    for shown in (carols, alices, "vault frozen until Monday", "config_loaded"):
        assert shown in audit, shown
    assert carols in (await erin.get("/history")).text
    page = await erin.get(f"/requests/{carols}")
    assert page.status_code == 200
    assert "vault frozen until Monday" in page.text
    await inbox.close()


async def test_B13_paging_back_skips_what_the_viewer_may_not_see(store, clock):
    inbox, _carols, _alices = await _world(store, clock)
    for n in range(60):  # Carol's requests fill more than a page of the log
        await inbox.service.create(
            CreateCommand(
                agent="deploy-bot",
                action="secret.rotate",
                title=f"Rotate {n}",
                params={"secret": f"key-{n}"},
            )
        )
    alice = await inbox.signed_in("alice")
    newest = (await alice.get("/audit")).text
    assert "Deploy web" in newest or "deploy.web" in newest  # found behind 60 hidden entries
    assert "Rotate 5" not in newest
    await inbox.close()


def test_B13_admins_must_be_configured_people():
    text = """\
version: 1
people: {alice: {}, bob: {}}
admins: [alice, bobb]
policies:
  - name: default
    levels: [{approvers: [alice, bob], notify: [web], timeout: 30m}]
"""
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "admins.yaml")
    message = str(caught.value)
    assert "admins.yaml:3" in message
    assert "admins" in message
    assert "unknown person 'bobb' (did you mean 'bob'?)" in message
    loaded = load_config_text(text.replace("bobb", "bob"), "admins.yaml")
    assert loaded.directory().admins == frozenset({"alice", "bob"})
