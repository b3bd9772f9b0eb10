"""A config reload that changes a platform's pacing: the adapter is rebuilt with the new
values; one that would send faster than the platform allows is refused and changes nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from approvals.clock import ManualClock
from bot.app import AppOptions, build_runtime
from bot.reload import SIGHUP_REASON, ConfigReloader
from config import load_config
from tests.fakes.slack import FakeSlack

ENVIRON = {"SLACK_TOKEN": "xoxb-pacing", "SLACK_SECRET": "pacing-secret"}

CONFIG = """\
version: 1
database: {url: "sqlite:///@DB@"}
people: {alice: {slack: U0ALICE}}
channels: {ops: {slack: C0OPS}}
platforms:
  slack:
    bot_token: "${SLACK_TOKEN}"
    signing_secret: "${SLACK_SECRET}"
    api_url: "@API@"
    pacing: {per_channel: @PACE@}
  web: {enabled: false}
policies:
  - name: default
    levels: [{approvers: [alice], notify: [ops], timeout: 30m}]
"""


async def test_a_reload_applies_slower_pacing_and_refuses_faster_than_slack_allows(
    tmp_path: Path,
) -> None:
    fake = FakeSlack(
        bot_token=ENVIRON["SLACK_TOKEN"], app_token="xapp-unused", signing_secret="unused"
    )
    await fake.start()
    path = tmp_path / "signoff.yaml"

    def write(pace: str) -> None:
        text = CONFIG.replace("@DB@", str(tmp_path / "signoff.db")).replace("@API@", fake.api_url)
        path.write_text(text.replace("@PACE@", pace), encoding="utf-8")

    write("2s")
    runtime = build_runtime(
        load_config(path, environ=ENVIRON), AppOptions(clock=ManualClock(), web_inbox=False)
    )
    await runtime.start()
    reloader = ConfigReloader(runtime, str(path), poll_interval=3600, environ=ENVIRON)
    try:
        first = runtime.adapters["slack"]
        assert first.min_send_interval == timedelta(seconds=2)

        write("0.5s")
        refused = await reloader.reload(SIGHUP_REASON)
        assert refused is not None
        assert not refused.applied
        line = CONFIG.splitlines().index("    pacing: {per_channel: @PACE@}") + 1
        assert refused.problems == (
            f"{path}:{line}: platforms.slack.pacing.per_channel: 0.5s would send faster than "
            "Slack allows (about one message a second per channel)",
        )
        assert runtime.adapters["slack"] is first

        write("5s")
        applied = await reloader.reload(SIGHUP_REASON)
        assert applied is not None
        assert applied.applied
        assert applied.adapters_restarted == ("slack",)
        slack = runtime.adapters["slack"]
        assert slack is not first
        assert slack.min_send_interval == timedelta(seconds=5)
    finally:
        await runtime.stop()
        await fake.close()
