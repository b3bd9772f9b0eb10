"""B10: schemathesis fuzzes the agent API from its own ``/openapi.json`` with an agent key.

A real uvicorn server on 127.0.0.1 answers every generated call; none may be a 5xx or break
the documented schema. The store the fuzzing left behind must still hold the invariants.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Err

from approvals.access import AccessStore
from approvals.clock import SystemClock
from approvals.store import SqlStore
from bot.app import AppOptions, build_runtime
from bot.http import build_http_app
from bot.limits import RateLimit
from config import load_config_text
from tests.reliability.invariants import check_invariants

SWEEP_SECONDS = 1.0
FUZZ_CONFIG = """\
version: 1
database: {{url: "sqlite:///{db}"}}
people: {{alice: {{}}, bob: {{}}}}
agents:
  fuzz-bot: {{max_open: 100000}}
policies:
  - name: default
    levels: [{{approvers: [alice, bob], notify: [web], timeout: 30m}}]
"""


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory) -> Iterator[tuple[str, str, Path]]:
    """A real uvicorn server on 127.0.0.1 (its own thread and loop), and an agent key."""
    db = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    config = load_config_text(FUZZ_CONFIG.format(db=db), "fuzz.yaml")

    async def make_key() -> str:
        store = SqlStore(f"sqlite:///{db}")
        try:
            await store.migrate()
            return await AccessStore(store, SystemClock()).create_agent_key("fuzz-bot")
        finally:
            await store.close()

    key = asyncio.run(make_key())
    unlimited = RateLimit(rate=100_000, burst=100_000)
    runtime = build_runtime(
        config,
        AppOptions(
            per_agent_limit=unlimited,
            overall_limit=unlimited,
            web_inbox=False,
            sweep_interval=SWEEP_SECONDS,
        ),
    )
    server = uvicorn.Server(
        uvicorn.Config(build_http_app(runtime), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        assert thread.is_alive(), "the server thread died"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", key, db
    server.should_exit = True
    thread.join(timeout=20)


def operations(base: str):
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the schema itself is broken
        found.append(result.ok())
    return found


def test_B10_fuzzed_api_calls_never_get_a_5xx_nor_break_the_schema(fuzz_server):
    base, key, db = fuzz_server
    fuzzed = []
    for operation in operations(base):

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        def exercise(case):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
            case.call_and_validate()

        exercise()
        fuzzed.append(operation.label)
    assert "POST /v1/approvals" in fuzzed
    assert "GET /v1/approvals/{request_id}" in fuzzed
    asyncio.run(invariants_hold(db))


async def invariants_hold(db: Path) -> None:
    store = SqlStore(f"sqlite:///{db}")
    try:
        report = await check_invariants(
            store, now=SystemClock().now(), sweep_interval=timedelta(seconds=SWEEP_SECONDS)
        )
    finally:
        await store.close()
    assert report.requests > 0
