"""teams.pacing from the config file: the application's Teams adapter keeps the configured
conversation and tenant windows, measured by the times the fake Teams received each card."""

from __future__ import annotations

from datetime import timedelta

from adapters.teams.adapter import TeamsAdapter
from approvals.clock import ManualClock
from bot.app import build_chat_adapters
from bot.runtime import Runtime
from config import load_config_text
from tests.adapters.teams.conftest import CHANNEL, PUBLIC_URL
from tests.adapters.world import numbered_requests
from tests.fakes.teams import FakeTeams

CONFIG = """\
version: 1
people: {alice: {}}
platforms:
  teams:
    app_id: "@APP@"
    tenant_id: "@TENANT@"
    app_password: "${TEAMS_APP_PASSWORD}"
    api_url: "@SERVICE@"
    openid_metadata_url: "@OPENID@"
    login_url: "@LOGIN@"
    pacing:
      per_conversation: {per_hour: 2}
      per_tenant_per_second: 1
policies:
  - name: default
    levels: [{approvers: [alice], notify: [web], timeout: 30m}]
"""


def teams_from_config(fake: FakeTeams) -> TeamsAdapter:
    """The Teams adapter the application builds from ``CONFIG``, pointed at ``fake``."""
    text = (
        CONFIG.replace("@APP@", fake.app_id)
        .replace("@TENANT@", fake.tenant_id)
        .replace("@SERVICE@", fake.service_url)
        .replace("@OPENID@", fake.openid_metadata_url)
        .replace("@LOGIN@", fake.login_endpoint)
    )
    config = load_config_text(
        text, "signoff.yaml", environ={"TEAMS_APP_PASSWORD": fake.app_password}
    )
    adapter = build_chat_adapters(config, PUBLIC_URL)["teams"]
    assert isinstance(adapter, TeamsAdapter)
    return adapter


async def test_slower_pacing_holds_the_tenant_and_each_conversation(
    fake_teams: FakeTeams, sqlite_runtime: Runtime, clock: ManualClock
) -> None:
    adapter = teams_from_config(fake_teams)
    assert adapter.min_send_interval == timedelta(0)  # the adapter keeps the windows itself
    await adapter.start(sqlite_runtime.service)
    dispatcher = sqlite_runtime.dispatcher
    dispatcher.use_adapter("teams", adapter)
    try:
        await numbered_requests(sqlite_runtime.service, 3)
        await dispatcher.drain()
    finally:
        await adapter.stop()

    [times] = fake_teams.send_times.values()
    assert len(fake_teams.posts_in(CHANNEL)) == 2
    assert times[1] - times[0] >= 1.0  # per_tenant_per_second: 1 (Teams allows 30)
    async with sqlite_runtime.store.read() as reader:
        third_due = await reader.next_outbox_ready_at(clock.now())
    assert third_due is not None
    assert third_due - clock.now() > timedelta(minutes=59)  # per_hour: 2 (Teams allows 1,800)
