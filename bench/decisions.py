"""Benchmark 2: decision latency, from an approver's click to the waiting agent's answer.

``signoff serve`` runs as its own process (through :mod:`bench.launcher`, so that neither the
agent API's rate limits nor the platforms' send limits slow down setting the scene) with the
web inbox and the three chat platforms, each pointed at its fake server from ``tests/`` on
127.0.0.1. In each of two rounds, 200 agents (each with its own API key) create one request
each and long-poll it (``GET /v1/approvals/{id}?wait=60``); the agents take the four paths
in turn, so 50 requests go to each. Once every card is posted and every long-poll is in,
an approver clicks Approve on each, 20 clicks a second, the paths interleaved:

- web inbox: a signed-in browser session posts the Approve form;
- Slack: the fake sends the signed ``block_actions`` interaction to ``/slack/events``;
- Telegram: the fake hands a ``callback_query`` update to the bot's long poll;
- Discord: the fake dispatches ``INTERACTION_CREATE`` over the gateway.

Latency is the time from the click leaving the client to the agent's long-poll answer
arriving, both seen from this process. Goal: p99 < 50 ms on every path.

Run alone: .venv/bin/python -m bench.decisions [--quick]
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    HOST,
    Row,
    ServerProcess,
    bearer,
    bench_launcher,
    child_environment,
    free_port,
    local_client,
    ms,
    percentile,
    run_alone,
    running,
    seed_agent_keys,
    seed_login_token,
    standard_arguments,
    until,
)
from tests.fakes import FakeBotApi, FakeDiscord, FakeSlack

BENCHMARK = "2 Decision latency"
GOAL_P99 = 0.050
PATHS = ("web inbox", "Slack", "Telegram", "Discord")
ACTIONS = {"web inbox": "web", "Slack": "slack", "Telegram": "telegram", "Discord": "discord"}
"""Each path has a policy of its own, matched by action."""
APPROVER = "approver"
SLACK_USER, TELEGRAM_USER, DISCORD_USER = "U0APPROVER", 100001, "200001"
SLACK_CHANNEL, TELEGRAM_GROUP, DISCORD_CHANNEL = "C0OPS", -1001234, "300001"
SLACK_TOKEN, SLACK_APP_TOKEN = "xoxb-bench", "xapp-1-bench"
SLACK_SECRET = "bench-signing-secret-0123456789ab"
TELEGRAM_TOKEN = "123456:BENCH-token"
DISCORD_TOKEN = "bench-discord-token"
REQUEST_LINK = re.compile(r"/requests/([A-Za-z0-9_-]{16,64})")
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
LONG_POLL_SECONDS = 60
"""Sending every long-poll now and clicking soon after would not be a long-poll."""

CONFIG = """\
version: 1
server: {{listen: "{host}:{port}", public_url: "http://{host}:{port}"}}
database: {{url: "sqlite:///{db}"}}
people:
  approver: {{slack: {slack_user}, telegram: {telegram_user}, discord: "{discord_user}"}}
channels:
  ops-slack: {{slack: {slack_channel}}}
  ops-telegram: {{telegram: {telegram_group}}}
  ops-discord: {{discord: "{discord_channel}"}}
platforms:
  slack:
    bot_token: "${{SLACK_BOT_TOKEN}}"
    signing_secret: "${{SLACK_SIGNING_SECRET}}"
    mode: http
    api_url: "{slack_api}"
  telegram:
    bot_token: "${{TELEGRAM_BOT_TOKEN}}"
    mode: polling
    api_url: "{telegram_api}"
  discord:
    bot_token: "${{DISCORD_BOT_TOKEN}}"
    api_url: "{discord_api}"
    gateway_url: "{discord_gateway}"
agents:
{agents}
policies:
  - name: slack
    match: {{action: "slack.*"}}
    levels: [{{approvers: [approver], notify: [ops-slack], timeout: 30m}}]
  - name: telegram
    match: {{action: "telegram.*"}}
    levels: [{{approvers: [approver], notify: [ops-telegram], timeout: 30m}}]
  - name: discord
    match: {{action: "discord.*"}}
    levels: [{{approvers: [approver], notify: [ops-discord], timeout: 30m}}]
  - name: default
    levels: [{{approvers: [approver], notify: [web], timeout: 30m}}]
"""

# Setting the scene fast: no pacing between cards (the send limits are benchmark 4's topic).
NO_SEND_LIMITS = {
    "lift_api_limits": True,
    "slack": {"send_interval_seconds": 0},
    "discord": {"send_interval_seconds": 0},
    "telegram": {
        "send_interval_seconds": 0,
        "group": {"count": 1_000_000, "period_seconds": 1},
        "overall": {"count": 1_000_000, "period_seconds": 1},
    },
}


@dataclass(frozen=True)
class Sizes:
    agents: int = 200
    rounds: int = 2
    clicks_per_second: float = 20.0


FULL = Sizes()
QUICK = Sizes(agents=8, rounds=1)


def measures(_sizes: Sizes) -> list[str]:
    return [f"click to answer: {path}" for path in PATHS]


@dataclass
class Fakes:
    slack: FakeSlack
    telegram: FakeBotApi
    discord: FakeDiscord

    @classmethod
    async def start(cls) -> Fakes:
        slack = FakeSlack(
            bot_token=SLACK_TOKEN, app_token=SLACK_APP_TOKEN, signing_secret=SLACK_SECRET
        )
        telegram = FakeBotApi(TELEGRAM_TOKEN)
        telegram.add_group(TELEGRAM_GROUP, "ops")
        telegram.add_user(TELEGRAM_USER, "approver")
        discord = FakeDiscord(bot_token=DISCORD_TOKEN)
        for fake in (slack, telegram, discord):
            await fake.start()
        return cls(slack, telegram, discord)

    async def close(self) -> None:
        if self.slack.events is not None:
            await self.slack.events.aclose()
        for fake in (self.slack, self.telegram, self.discord):
            await fake.close()


Click = Callable[[str], Awaitable[Any]]
"""Clicks Approve on the card of the request with the given id."""


class Scene:
    """The running service, its fakes, the agents' keys and the approver's clicks."""

    def __init__(self, server: ServerProcess, fakes: Fakes, keys: dict[str, str]) -> None:
        self.server = server
        self.fakes = fakes
        self.keys = keys
        self.agents = sorted(keys)
        self.web: httpx.AsyncClient | None = None
        self.csrf = ""
        self.rounds_created = 0

    async def sign_in(self, login_token: str) -> None:
        """Sign the approver in to the web inbox, as the sign-in link's page does."""
        self.web = local_client(base_url=self.server.base_url, timeout=30.0)
        signed_in = await self.web.post("/login", data={"token": login_token})
        if signed_in.status_code != 303:
            raise RuntimeError(f"web sign-in answered {signed_in.status_code}")
        inbox = await self.web.get("/")
        found = CSRF_FIELD.search(inbox.text)
        if found is None:
            raise RuntimeError("no CSRF token on the inbox page")
        self.csrf = found.group(1)

    async def create_requests(self, client: httpx.AsyncClient) -> dict[str, tuple[str, str]]:
        """One request per agent, the agents taking the paths in turn; its params name the
        round and the agent's place, so no two requests of a run are alike (an identical ask
        would be answered with the request still pending, not stored).

        Returns request id -> (agent, path), in the agents' order.
        """
        created: dict[str, tuple[str, str]] = {}
        gate = asyncio.Semaphore(16)
        self.rounds_created += 1
        round_number = self.rounds_created

        async def create(index: int, agent: str) -> tuple[str, str, str]:
            path = PATHS[index % len(PATHS)]
            action = f"{ACTIONS[path]}.deploy"
            params = {"round": round_number, "n": index}
            body = {"action": action, "title": f"{action} for {agent}", "params": params}
            async with gate:
                response = await client.post(
                    "/v1/approvals", json=body, headers=bearer(self.keys[agent])
                )
            if response.status_code != 201:
                raise RuntimeError(f"create answered {response.status_code}: {response.text}")
            return response.json()["id"], agent, path

        for request_id, agent, path in await asyncio.gather(
            *(create(index, agent) for index, agent in enumerate(self.agents))
        ):
            created[request_id] = (agent, path)
        return created

    async def cards(self, path: str, request_ids: set[str]) -> Click:
        """Wait for every card to be posted; the click that approves a request on ``path``."""
        fakes = self.fakes
        if path == "web inbox":
            return self._web_click
        found: dict[str, Any] = {}

        def scan() -> bool:
            if path == "Slack":
                messages: list[tuple[str, Any]] = [
                    (m.all_text, m) for m in fakes.slack.posts_in(SLACK_CHANNEL)
                ]
            elif path == "Telegram":
                messages = [(m.html or "", m) for m in fakes.telegram.bot_messages(TELEGRAM_GROUP)]
            else:
                messages = [(m.all_text, m) for m in fakes.discord.cards_in(DISCORD_CHANNEL)]
            for text, message in messages:
                link = REQUEST_LINK.search(text)
                if link is not None and link.group(1) in request_ids:
                    found[link.group(1)] = message
            return len(found) == len(request_ids)

        await until(scan, within=120, poll=0.05, what=f"every {path} card posted")

        async def click(request_id: str) -> Any:
            card = found[request_id]
            if path == "Slack":
                return await fakes.slack.click(card, user=SLACK_USER, action_id="signoff_approve")
            if path == "Telegram":
                return await fakes.telegram.click(TELEGRAM_USER, card, card.button_data("Approve"))
            return await fakes.discord.click(card, user=DISCORD_USER, label="Approve")

        return click

    async def _web_click(self, request_id: str) -> Any:
        assert self.web is not None
        response = await self.web.post(
            f"/requests/{request_id}/approve", data={"csrf_token": self.csrf}
        )
        if response.status_code != 303:
            raise RuntimeError(f"web approve answered {response.status_code}")
        return response


async def measure_round(scene: Scene, sizes: Sizes) -> dict[str, list[float]]:
    """One round: every agent's request decided once. Click-to-answer latencies per path."""
    limits = httpx.Limits(max_connections=len(scene.agents) + 10)
    async with (
        local_client(base_url=scene.server.base_url, limits=limits, timeout=120.0) as agents,
        local_client(base_url=scene.server.base_url, timeout=30.0) as checks,
    ):
        created = await scene.create_requests(checks)
        clicks: dict[str, Click] = {}
        for path in PATHS:
            ids = {rid for rid, (_agent, on) in created.items() if on == path}
            clicks[path] = await scene.cards(path, ids)
        answered: dict[str, float] = {}

        async def long_poll(request_id: str) -> None:
            agent, _path = created[request_id]
            response = await agents.get(
                f"/v1/approvals/{request_id}",
                params={"wait": LONG_POLL_SECONDS},
                headers=bearer(scene.keys[agent]),
            )
            answered[request_id] = time.perf_counter()
            status = response.json().get("status") if response.status_code == 200 else None
            if status != "approved":
                raise RuntimeError(f"long-poll answered {response.status_code} {status}")

        polls = [asyncio.create_task(long_poll(request_id)) for request_id in created]
        # Every long-poll is in: the server has answered a later read of each request.
        await asyncio.gather(
            *(
                checks.get(f"/v1/approvals/{rid}", headers=bearer(scene.keys[agent]))
                for rid, (agent, _path) in created.items()
            )
        )
        if any(poll.done() for poll in polls):
            raise RuntimeError("a long-poll was answered before any click")
        clicked: dict[str, float] = {}
        interval = 1.0 / sizes.clicks_per_second
        started = time.perf_counter()

        async def click_at(index: int, request_id: str) -> None:
            await asyncio.sleep(max(0.0, started + index * interval - time.perf_counter()))
            clicked[request_id] = time.perf_counter()
            await clicks[created[request_id][1]](request_id)

        await asyncio.gather(*(click_at(i, rid) for i, rid in enumerate(created)))
        await asyncio.wait_for(asyncio.gather(*polls), LONG_POLL_SECONDS)
    latencies: dict[str, list[float]] = {path: [] for path in PATHS}
    for request_id, (_agent, path) in created.items():
        latencies[path].append(answered[request_id] - clicked[request_id])
    return latencies


async def run(sizes: Sizes, workdir: Path) -> list[Row]:
    fakes = await Fakes.start()
    try:
        port = free_port()
        db = workdir / "signoff.db"
        agents = [f"agent-{i:03d}" for i in range(sizes.agents)]
        config = workdir / "signoff.yaml"
        config.write_text(
            CONFIG.format(
                host=HOST,
                port=port,
                db=db,
                slack_user=SLACK_USER,
                telegram_user=TELEGRAM_USER,
                discord_user=DISCORD_USER,
                slack_channel=SLACK_CHANNEL,
                telegram_group=TELEGRAM_GROUP,
                discord_channel=DISCORD_CHANNEL,
                slack_api=fakes.slack.api_url,
                telegram_api=fakes.telegram.base_url,
                discord_api=fakes.discord.api_url,
                discord_gateway=fakes.discord.gateway_url,
                agents="\n".join(f"  {agent}: {{}}" for agent in agents),
            ),
            encoding="utf-8",
        )
        url = f"sqlite:///{db}"
        keys = await seed_agent_keys(url, agents)
        login_token = await seed_login_token(url, APPROVER)
        server = bench_launcher(
            config,
            json.dumps(NO_SEND_LIMITS),
            log_path=workdir / "signoff.log",
            base_url=f"http://{HOST}:{port}",
            env=child_environment(
                SLACK_BOT_TOKEN=SLACK_TOKEN,
                SLACK_SIGNING_SECRET=SLACK_SECRET,
                TELEGRAM_BOT_TOKEN=TELEGRAM_TOKEN,
                DISCORD_BOT_TOKEN=DISCORD_TOKEN,
            ),
        )
        rows = []
        async with running(server):
            await server.wait_ready()
            fakes.slack.events = local_client(base_url=server.base_url, timeout=30.0)
            scene = Scene(server, fakes, keys)
            await scene.sign_in(login_token)
            try:
                latencies: dict[str, list[float]] = {path: [] for path in PATHS}
                for _round in range(sizes.rounds):
                    for path, seen in (await measure_round(scene, sizes)).items():
                        latencies[path] += seen
                for path, seen in latencies.items():
                    p50, p99 = percentile(seen, 0.5), percentile(seen, 0.99)
                    rows.append(
                        Row(
                            BENCHMARK,
                            f"click to answer: {path}",
                            f"p50 {ms(p50)} · p99 {ms(p99)} · max {ms(max(seen))}"
                            f" ({len(seen)} decisions)",
                            f"p99 < {GOAL_P99 * 1000:.0f} ms",
                            p99 < GOAL_P99,
                        )
                    )
            finally:
                if scene.web is not None:
                    await scene.web.aclose()
        return rows
    finally:
        await fakes.close()


def main(argv: list[str] | None = None) -> None:
    args = standard_arguments(__doc__.splitlines()[0]).parse_args(argv)
    run_alone(run, QUICK if args.quick else FULL)


if __name__ == "__main__":
    main()
