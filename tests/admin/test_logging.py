"""The `log` config section: level and format; JSON lines carry the request id."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from approvals.access import AccessStore
from approvals.clock import SystemClock
from approvals.log_context import about_request
from approvals.model import CreateCommand, Verdict, VoteCommand
from approvals.outbox import OutboxDispatcher
from approvals.ports import DeliveryError
from approvals.store import SqlStore
from bot import logging_setup
from bot.logging_setup import (
    HANDLER_NAME,
    SecretRedactingFilter,
    SecretSet,
    build_handler,
    configure_logging,
    remember_config_secrets,
    remember_secret,
)
from config.schema import LogSettings
from tests.admin.serving import free_port, start_serve
from tests.config.helpers import MINIMAL, load, problems
from tests.fakes.recording import RecordingAdapter


@pytest.fixture
def captured():
    """Records from the approvals, adapters and test loggers, as JSON lines in a buffer."""
    stream = io.StringIO()
    handler = build_handler(LogSettings(format="json"), stream)
    loggers = [logging.getLogger(name) for name in ("approvals", "adapters", "signoff.test")]
    previous = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    yield stream
    for lg, level in previous:
        lg.removeHandler(handler)
        lg.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_log_section_defaults_to_info_text_and_checks_its_values():
    assert load(MINIMAL).settings.log == LogSettings(level="info", format="text")
    assert load(MINIMAL + "log: {level: debug, format: json}\n").settings.log == LogSettings(
        level="debug", format="json"
    )
    found = problems(MINIMAL + "log:\n  format: yaml\n")
    assert [(p.line, p.key_path) for p in found] == [(8, "log.format")]
    assert "'text' or 'json'" in found[0].message


def test_json_line_has_time_level_logger_message_and_the_request_id(captured):
    log = logging.getLogger("signoff.test")
    log.info("about %s", "nothing")
    log.warning("passed in extra", extra={"request_id": "req-extra"})
    with about_request("req-context"):
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            log.exception("failed")

    first, second, third = lines(captured)
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["level"] == "info"
    assert first["logger"] == "signoff.test"
    assert first["message"] == "about nothing"
    assert first["time"].endswith("Z")
    assert second["request_id"] == "req-extra"
    assert third["request_id"] == "req-context"
    assert "ValueError: boom\nsecond line" in third["exception"]
    assert len(captured.getvalue().splitlines()) == 3  # the traceback stayed on its line


def test_text_lines_name_the_request_after_the_message():
    stream = io.StringIO()
    log = logging.getLogger("signoff.test.text")
    log.addHandler(build_handler(LogSettings(), stream))
    log.propagate = False
    try:
        with about_request("r1"):
            log.warning("slow")
        log.warning("plain")
    finally:
        log.handlers.clear()
        log.propagate = True
    first, second = stream.getvalue().splitlines()
    assert first.endswith("WARNING signoff.test.text: slow [request r1]")
    assert second.endswith("WARNING signoff.test.text: plain")


def test_configure_logging_twice_keeps_one_handler():
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging(LogSettings(format="json"), io.StringIO())
        configure_logging(LogSettings(level="warning"), io.StringIO())
        ours = [h for h in root.handlers if h.get_name() == HANDLER_NAME]
        assert len(ours) == 1
        assert root.level == logging.WARNING
        assert logging.getLogger("apscheduler").level == logging.WARNING
    finally:
        for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
            root.removeHandler(handler)
        root.setLevel(level)


class ChattyAdapter(RecordingAdapter):
    """Logs from inside send, as a platform library would, then fails."""

    async def send(self, card, destination):
        logging.getLogger("adapters.chatty").warning("platform said no")
        raise DeliveryError("try later")


async def test_service_and_outbox_lines_about_a_request_carry_its_id(
    sqlite_service, clock, captured
):
    created = await sqlite_service.create(
        CreateCommand(agent="bot", action="db.migrate", title="t", params={"env": "prod"})
    )
    request_id = created.request.id
    await sqlite_service.vote(VoteCommand(request_id, "slack", "U0ALICE", Verdict.APPROVE))
    dispatcher = OutboxDispatcher(
        sqlite_service.store,
        {"slack": ChattyAdapter("slack"), "telegram": ChattyAdapter("telegram")},
        clock,
        recent_cards=sqlite_service.recent_cards,
    )
    await dispatcher.run_once()
    await sqlite_service.vote(VoteCommand(request_id, "slack", "U0BOB", Verdict.APPROVE))

    records = lines(captured)
    about = [r for r in records if request_id in r["message"] or r.get("request_id")]
    messages = [r["message"] for r in about]
    assert f"request {request_id} pending at level 0 (policy prod-db, 0 of 2 approvals)" in (
        messages
    )
    assert f"request {request_id} approved by bob (policy prod-db)" in messages
    assert messages.count("platform said no") == 2  # logged inside the adapter
    assert any(m.startswith("delivery of outbox row") for m in messages)
    assert all(r.get("request_id") == request_id for r in about), about


CONFIG = """\
version: 1
server: {{listen: "127.0.0.1:{port}", public_url: "http://127.0.0.1:{port}"}}
database: {{url: "sqlite:///{db}"}}
people: {{alice: {{}}}}
agents: {{deploy-bot: {{}}}}
policies:
  - name: default
    levels: [{{approvers: [alice], notify: [web], timeout: 30m}}]
log: {{level: info, format: json}}
"""


async def test_serve_with_json_logs_writes_one_object_per_line(tmp_path: Path):
    db = tmp_path / "logs.db"
    config = tmp_path / "signoff.yaml"
    port = free_port()
    config.write_text(CONFIG.format(port=port, db=db), encoding="utf-8")
    store = SqlStore(f"sqlite:///{db}")
    await store.migrate()
    key = await AccessStore(store, SystemClock()).create_agent_key("deploy-bot")
    await store.close()
    served = await start_serve(config, tmp_path, port)
    try:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=served.base, trust_env=False) as agent:
            created = await agent.post(
                "/v1/approvals", headers=headers, json={"action": "deploy.web", "title": "Go"}
            )
            request_id = created.json()["id"]
            cancelled = await agent.post(f"/v1/approvals/{request_id}/cancel", headers=headers)
            assert cancelled.status_code == 200, cancelled.text
        assert served.stop() == 0
    finally:
        served.kill()

    records = [json.loads(line) for line in served.stderr.read_text().splitlines()]
    assert records, served.output()
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
    messages = [r["message"] for r in records]
    assert any(m.startswith("Uvicorn running on") for m in messages)  # uvicorn's lines too
    about = [r for r in records if request_id in r["message"]]
    assert [r["message"] for r in about] == [
        f"request {request_id} pending at level 0 (policy default, 0 of 1 approvals)",
        f"request {request_id} cancelled by deploy-bot (policy default)",
    ]
    assert all(r["request_id"] == request_id for r in about)


def _redacting_logger(secret: str, fmt: str) -> tuple[logging.Logger, io.StringIO]:
    secrets = SecretSet()
    secrets.add(secret)
    stream = io.StringIO()
    handler = build_handler(LogSettings(level="debug", format=fmt), stream)
    handler.filters = [
        SecretRedactingFilter(secrets) if isinstance(f, SecretRedactingFilter) else f
        for f in handler.filters
    ]
    logger = logging.getLogger(f"tests.redaction.{fmt}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_B17_secrets_are_redacted_in_messages_args_and_tracebacks(fmt):
    secret = "123456:AAE-secret/token"
    logger, stream = _redacting_logger(secret, fmt)
    logger.info("HTTP Request: POST %s", f"http://127.0.0.1/bot{secret}/getMe")
    logger.debug("as a dict %(url)s", {"url": secret})
    logger.warning("percent-encoded: /%s/", "123456%3AAAE-secret%2Ftoken")
    logger.error(f"in the message itself {secret}")
    try:
        raise RuntimeError(f"failed with {secret}")
    except RuntimeError:
        logger.exception("boom")
    out = stream.getvalue()
    assert secret not in out
    assert "123456%3AAAE-secret%2Ftoken" not in out
    assert out.count("[redacted]") == 5
    assert "RuntimeError" in out


def test_B17_the_config_secrets_and_accepted_keys_are_remembered(monkeypatch):
    secrets = SecretSet()
    monkeypatch.setattr(logging_setup, "SECRETS", secrets)
    text = MINIMAL + 'platforms: {telegram: {bot_token: "${TELEGRAM_BOT_TOKEN}"}}\n'
    config = load(text, {"TELEGRAM_BOT_TOKEN": "123456:config-token"})
    remember_config_secrets(config.settings)
    remember_secret("sk-agent-key-example")
    assert secrets.redact("GET /bot123456:config-token/getMe") == "GET /bot[redacted]/getMe"
    assert secrets.redact("Bearer sk-agent-key-example") == "Bearer [redacted]"
