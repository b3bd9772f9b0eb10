"""The agent API's limits from the config: each agent's `rate`, and `server.api_rate`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.app import OVERALL_LIMIT, PER_AGENT_LIMIT, AppOptions, api_limits, build_runtime
from bot.http import build_http_app
from bot.limits import RateLimit, RateLimiter, rate_limit
from bot.runtime import Runtime
from config import ConfigError, load_config_text

CONFIG = """\
version: 1
database: {{url: "sqlite:///{db}"}}
server: {{api_rate: {{per_minute: 6000, burst: 100}}}}
people:
  alice: {{}}
agents:
  slow-bot: {{rate: {{per_minute: 60, burst: 2}}}}
  other-bot: {{}}
policies:
  - name: default
    levels: [{{approvers: [alice], notify: [web], timeout: 30m}}]
"""


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    config = load_config_text(CONFIG.format(db=tmp_path / "api.db"), "signoff.yaml")
    runtime = build_runtime(config, AppOptions(web_inbox=False))
    await runtime.start()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_http_app(runtime)), base_url="http://127.0.0.1"
    )
    yield runtime, client
    await client.aclose()
    await runtime.stop()


async def create(client: httpx.AsyncClient, key: str, n: int) -> httpx.Response:
    """Request ``n``: a payload of its own (``n`` is a param), so each is a new request."""
    return await client.post(
        "/v1/approvals",
        json={"action": "deploy.web", "title": "Deploy", "params": {"n": n}},
        headers={"Authorization": f"Bearer {key}"},
    )


async def test_an_agents_own_rate_holds_it_and_no_other(
    served: tuple[Runtime, httpx.AsyncClient],
) -> None:
    runtime, client = served
    slow = await runtime.access.create_agent_key("slow-bot")
    other = await runtime.access.create_agent_key("other-bot")
    assert [(await create(client, slow, n)).status_code for n in range(2)] == [201, 201]
    refused = await create(client, slow, 2)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"]
    # The other agent has the default limit (bursts of 50).
    assert [(await create(client, other, n)).status_code for n in range(5)] == [201] * 5


def test_the_limits_read_from_the_config(tmp_path: Path) -> None:
    config = load_config_text(CONFIG.format(db=tmp_path / "api.db"), "signoff.yaml")
    default, overall, agents = api_limits(config.settings)
    assert default == PER_AGENT_LIMIT == RateLimit(rate=10, burst=50)
    assert overall == rate_limit(6000, 100) == RateLimit(rate=100, burst=100)
    assert agents == {"slow-bot": RateLimit(rate=1, burst=2), "other-bot": PER_AGENT_LIMIT}
    plain = load_config_text(
        CONFIG.format(db=tmp_path / "api.db").replace(
            "server: {api_rate: {per_minute: 6000, burst: 100}}\n", ""
        ),
        "signoff.yaml",
    )
    assert api_limits(plain.settings)[1] == OVERALL_LIMIT


@pytest.mark.parametrize(
    ("rate", "problem"),
    [
        ("{per_minute: 0, burst: 2}", "per_minute"),
        ("{per_minute: true, burst: 2}", "per_minute"),
        ("{per_minute: 60}", "burst"),
        ("60", "rate"),
    ],
)
def test_a_bad_rate_names_its_key_and_line(tmp_path: Path, rate: str, problem: str) -> None:
    text = CONFIG.format(db=tmp_path / "api.db").replace(
        "{rate: {per_minute: 60, burst: 2}}", f"{{rate: {rate}}}"
    )
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "signoff.yaml")
    [found] = caught.value.problems
    assert found.line == 7
    assert "agents.slow-bot.rate" in found.key_path
    assert problem in found.key_path or problem in found.message


def test_a_reload_changes_the_limits_and_options_pin_them(tmp_path: Path) -> None:
    ticks = [0.0]
    limiter = RateLimiter(
        RateLimit(rate=1, burst=1), RateLimit(rate=100, burst=100), monotonic=lambda: ticks[0]
    )
    assert limiter.check("a") == 0
    assert limiter.check("a") >= 1
    limiter.configure(
        RateLimit(rate=1, burst=1), RateLimit(rate=100, burst=100), {"a": RateLimit(1, 3)}
    )
    assert [limiter.check("a") for _ in range(3)] == [0, 0, 0]  # a new, fuller bucket
    assert limiter.check("a") >= 1

    config = load_config_text(CONFIG.format(db=tmp_path / "api.db"), "signoff.yaml")
    follows = build_runtime(config, AppOptions(web_inbox=False))
    pinned = build_runtime(
        config, AppOptions(web_inbox=False, per_agent_limit=RateLimit(rate=1e9, burst=10**9))
    )
    assert follows.agent_api.limiter.follows_config
    assert not pinned.agent_api.limiter.follows_config
    assert pinned.agent_api.limiter.limit_of("slow-bot") == RateLimit(rate=1e9, burst=10**9)
