"""F3: signoff is down for longer than every timeout; at restart, one action per request.

The whole application (built from a config file, as ``signoff serve`` builds it) posts its
cards to the fake Slack, stops, stays down for :data:`DOWNTIME` of manual-clock time while
reminders, escalations and deadlines fall due, and starts again on the same database. Each
overdue request gets exactly one coalesced action (no reminder or escalation replayed for
the time it was down), and a late click on an expired request is refused with "expired".
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import httpx

from approvals.audit import AuditKind
from approvals.clock import ManualClock
from bot.app import AppOptions, build_runtime
from bot.http import build_http_app
from bot.runtime import Runtime
from config import load_config_text
from tests.adapters.slack.conftest import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET
from tests.fakes.slack import FakeSlack
from tests.reliability.invariants import check_invariants, rendered_cards, slack_reader
from tests.waiting import wait_for

DOWNTIME = timedelta(hours=2)
SWEEP_SECONDS = 0.2
OPS, LEADS = "C0OPS", "C0LEADS"

CONFIG = """\
version: 1
database: {{url: "sqlite:///{db}"}}
people:
  alice: {{slack: U0ALICE}}
  bob: {{slack: U0BOB}}
  carol: {{slack: U0CAROL}}
channels:
  ops: {{slack: {ops}}}
  leads: {{slack: {leads}}}
platforms:
  slack:
    bot_token: "${{SLACK_BOT_TOKEN}}"
    signing_secret: "${{SLACK_SIGNING_SECRET}}"
    mode: http
    api_url: "{api_url}"
  web: {{enabled: false}}
agents:
  ops-bot: {{}}
policies:
  - name: nagging
    match: {{action: "cache.*"}}
    levels: [{{approvers: [alice, bob], notify: [ops], timeout: 30m, remind_every: 5m}}]
    on_timeout: expire
  - name: two-levels
    match: {{action: "db.*"}}
    levels:
      - {{approvers: [alice, bob], notify: [ops], timeout: 30m, remind_every: 10m}}
      - {{approvers: [carol], notify: [leads], timeout: 30m}}
    on_timeout: deny
  - name: long-second-level
    match: {{action: "infra.*"}}
    levels:
      - {{approvers: [alice], notify: [ops], timeout: 30m, remind_every: 10m}}
      - {{approvers: [carol], notify: [leads], timeout: 4h, remind_every: 1h}}
  - name: default
    levels: [{{approvers: [alice, bob], notify: [ops], timeout: 1h}}]
    on_timeout: approve
"""

EXPECTED = {
    # action -> (status after the restart, level, audit entries written after the restart)
    "cache.flush": ("expired", 0, {AuditKind.EXPIRED: 1}),
    "db.migrate": ("denied", 0, {AuditKind.DECIDED: 1}),
    "infra.resize": ("pending", 1, {AuditKind.ESCALATED: 1}),
    "docs.publish": ("approved", 0, {AuditKind.DECIDED: 1}),
}


async def _running(
    tmp_path, fake: FakeSlack, clock: ManualClock
) -> tuple[Runtime, httpx.AsyncClient]:
    config = load_config_text(
        CONFIG.format(db=tmp_path / "f3.db", ops=OPS, leads=LEADS, api_url=fake.api_url),
        "signoff.yaml",
        environ={"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET},
    )
    runtime = build_runtime(config, AppOptions(clock=clock, sweep_interval=SWEEP_SECONDS))
    await runtime.start()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_http_app(runtime)), base_url="http://127.0.0.1"
    )
    return runtime, client


async def _outbox_empty(runtime: Runtime, clock: ManualClock) -> bool:
    """Whether everything queued went out. Moves the clock a second at each look: Slack
    takes one post a second per channel, and the dispatcher paces by the service's clock."""
    async with runtime.store.read() as reader:
        empty = not (await reader.outbox_counts()).get("pending")
    if not empty:
        clock.advance(timedelta(seconds=1))
        runtime.dispatcher.wake()
    return empty


async def test_F3_down_past_every_timeout_each_request_gets_one_action_and_late_clicks_hear_expired(
    tmp_path,
):
    """F3: two hours down; one coalesced action each; a late click is told "expired"."""
    fake = FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN, signing_secret=SIGNING_SECRET)
    await fake.start()
    clock = ManualClock()
    runtime, client = await _running(tmp_path, fake, clock)
    ids: dict[str, str] = {}
    try:
        key = await runtime.access.create_agent_key("ops-bot")
        for action in EXPECTED:
            created = await client.post(
                "/v1/approvals",
                json={"action": action, "title": f"Run {action}"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert created.status_code == 201, created.text
            ids[action] = created.json()["id"]
        await wait_for(lambda: _outbox_empty(runtime, clock), poll=0.1)
        async with runtime.store.read() as reader:
            seq_at_shutdown = (await reader.audit_head())[0]
    finally:
        await client.aclose()
        await runtime.stop()

    clock.advance(DOWNTIME)  # nobody sweeps, reminds or escalates meanwhile
    runtime, client = await _running(tmp_path, fake, clock)
    fake.events = client
    try:

        async def settled() -> bool:
            statuses = []
            async with runtime.store.read() as reader:
                for action in EXPECTED:
                    request = await reader.get_request(ids[action])
                    assert request is not None
                    statuses.append(request.status.value)
            expected = [status for status, _, _ in EXPECTED.values()]
            return statuses == expected and await _outbox_empty(runtime, clock)

        await wait_for(settled, within=20, poll=0.1)
        # A few more sweeps: nothing else may happen to these requests.
        sweeps = runtime.scheduler.sweeps
        await wait_for(_after(runtime, sweeps + 3), within=10)

        async with runtime.store.read() as reader:
            after = await reader.audit_entries(after_seq=seq_at_shutdown)
        for action, (status, level, kinds) in EXPECTED.items():
            request = await runtime.service.get(ids[action])
            assert request is not None
            assert (request.status.value, request.level) == (status, level), action
            written = Counter(
                entry.kind
                for entry in after
                if entry.request_id == ids[action] and entry.kind != AuditKind.DELIVERED
            )
            assert written == Counter(kinds), (action, written)
        escalated = next(e for e in after if e.kind == AuditKind.ESCALATED)
        assert json.loads(escalated.data)["to_level"] == 1
        assert len(fake.posts_in(LEADS)) == 1  # the escalation's card, once

        expired_card = next(m for m in fake.posts_in(OPS) if "Run cache.flush" in m.all_text)
        ack = await fake.click(expired_card, user="U0ALICE", action_id="signoff_approve")
        assert ack["status"] == 200

        async def told() -> str | None:
            notices = [e.text for e in fake.ephemerals_for("U0ALICE")]
            return notices[-1] if notices else None

        notice = await wait_for(told)
        assert "expired" in notice
        assert "Nothing changed" in notice
        current = await runtime.service.get(ids["cache.flush"])
        assert current is not None
        assert current.votes == ()

        cards = await rendered_cards(runtime.store, slack_reader(fake))
        report = await check_invariants(
            runtime.store,
            now=clock.now(),
            sweep_interval=timedelta(seconds=SWEEP_SECONDS),
            accepted=list(ids.values()),
            cards=cards,
        )
        assert (report.final, report.pending) == (3, 1)
        print(
            f"F3: down {DOWNTIME}; {len(after)} audit entries after the restart, one action per "
            f"request ({', '.join(f'{a}: {s}' for a, (s, _, _) in EXPECTED.items())}); "
            f"late click told: {notice!r}"
        )
    finally:
        fake.events = None
        await client.aclose()
        await runtime.stop()
        await fake.close()


def _after(runtime: Runtime, sweeps: int):
    async def swept() -> bool:
        return runtime.scheduler.sweeps >= sweeps

    return swept
