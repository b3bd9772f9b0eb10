"""The running process: scheduler wake-ups, a lost job, and graceful shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from approvals.machine import Status
from approvals.model import CreateCommand
from approvals.outcomes import Created
from bot.app import AppOptions, build_runtime
from config import load_config_text
from tests.fakes.recording import RecordingAdapter
from tests.waiting import wait_for

SIGNOFF = Path(sys.executable).with_name("signoff")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def config_text(db: Path, port: int = 0) -> str:
    listen = f"server: {{listen: '127.0.0.1:{port}'}}\n" if port else ""
    return (
        "version: 1\n" + listen + f"database: {{url: 'sqlite:///{db}'}}\n"
        "people: {alice: {}, bob: {}}\n"
        "policies:\n"
        "  - name: default\n"
        "    levels: [{approvers: [alice, bob], notify: [web], timeout: 30m}]\n"
        "    min_timeout: 1s\n"
    )


async def test_exact_wakeup_times_out_a_request_at_its_deadline(tmp_path):
    config = load_config_text(config_text(tmp_path / "s.db"), "test.yaml")
    # A long interval: only the exact wake-up can be this punctual.
    runtime = build_runtime(config, AppOptions(sweep_interval=60))
    await runtime.start()
    try:
        created = await runtime.service.create(
            CreateCommand(agent="a", action="x", title="t", timeout=timedelta(seconds=1))
        )
        assert isinstance(created, Created), created
        request = created.request
        assert runtime.scheduler.wakeup_at == request.deadline

        async def timed_out():
            current = await runtime.service.get(request.id)
            assert current is not None
            return current if current.status is Status.DENIED else None

        final = await wait_for(timed_out, within=5)
        assert final.decided_at >= request.deadline
        assert final.decided_at - request.deadline < timedelta(seconds=2)
    finally:
        await runtime.stop()


async def test_lost_wakeup_job_is_covered_by_the_interval_sweep(tmp_path):
    config = load_config_text(config_text(tmp_path / "s.db"), "test.yaml")
    runtime = build_runtime(config, AppOptions(sweep_interval=0.5))
    await runtime.start()
    try:
        created = await runtime.service.create(
            CreateCommand(agent="a", action="x", title="t", timeout=timedelta(seconds=1))
        )
        assert isinstance(created, Created), created
        runtime.scheduler.drop_wakeup()

        async def timed_out():
            current = await runtime.service.get(created.request.id)
            assert current is not None
            return current.status is Status.DENIED

        await wait_for(timed_out, within=5)
    finally:
        await runtime.stop()


async def test_start_records_config_and_stop_closes_adapters(tmp_path):
    config = load_config_text(config_text(tmp_path / "s.db"), "test.yaml")
    stopped = []

    class StopRecordingAdapter(RecordingAdapter):
        async def stop(self) -> None:
            stopped.append(True)

    adapter = StopRecordingAdapter("slack")
    runtime = build_runtime(config, AppOptions(adapters={"slack": adapter}))
    await runtime.start()
    assert adapter.sink is runtime.service
    async with runtime.store.read() as reader:
        entries = await reader.audit_entries()
    assert [e.kind for e in entries] == ["config_loaded"]
    assert '"source":"test.yaml"' in entries[0].data
    await runtime.stop()
    assert stopped == [True]


def test_serve_stops_gracefully_on_sigterm(tmp_path):
    config = tmp_path / "signoff.yaml"
    config.write_text(config_text(tmp_path / "serve.db", free_port()), encoding="utf-8")
    process = subprocess.Popen(
        [str(SIGNOFF), "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None  # stdout=PIPE
    try:
        first = process.stdout.readline()
        assert "signoff: config" in first
        deadline = time.monotonic() + 20
        # The audit entry for the loaded config shows the runtime finished starting.
        import sqlite3

        while True:
            try:
                with sqlite3.connect(tmp_path / "serve.db") as conn:
                    rows = conn.execute("SELECT kind FROM audit_log").fetchall()
                if rows:
                    break
            except sqlite3.OperationalError:
                pass
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output
        assert "signoff: stopped" in output
        assert "Traceback" not in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
