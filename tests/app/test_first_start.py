"""`make run` for a newcomer: `signoff serve` with no config file at all.

The first start on the built-in default prints a sign-in link for admin, an agent API key
and a curl example, once; the key creates a request that admin then sees in the inbox.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.world import missing_prerequisite

SIGNOFF = Path(sys.executable).with_name("signoff")
DEFAULT_BASE = "http://127.0.0.1:8080"  # the built-in default's address


def port_8080_is_free() -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8080))
        except OSError:
            return False
    return True


class ServeProcess:
    """`signoff serve` in a directory of its own; a thread collects its output lines."""

    def __init__(self, workdir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "SIGNOFF_CONFIG"}
        self.process = subprocess.Popen(
            [str(SIGNOFF), "serve"],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._fresh: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None  # stdout=PIPE
        with stdout:
            for line in stdout:
                self._fresh.put(line)
        self._fresh.put(None)

    def read_until(self, pattern: str, within: float = 30) -> re.Match[str]:
        """The first line from here on that matches ``pattern``, within ``within`` s."""
        deadline = time.monotonic() + within
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._fresh.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"never printed {pattern!r}:\n{''.join(self.lines)}")

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=30) == 0, "".join(self.lines)
        while (line := self._fresh.get(timeout=10)) is not None:
            self.lines.append(line)
        return "".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_first_start_prints_link_key_and_curl_once(tmp_path):
    if not port_8080_is_free():
        missing_prerequisite("port 8080 (the built-in default's port) is in use")
    serve = ServeProcess(tmp_path)
    try:
        link = serve.read_until(r"(http://127\.0\.0\.1:8080/login\?token=\S+)").group(1)
        serve.read_until(r"^\s+export SIGNOFF_URL=http://127\.0\.0\.1:8080\s*$")
        key = serve.read_until(r"^\s+export SIGNOFF_API_KEY=(so_\S+)\s*$").group(1)
        # The welcome is printed once the port is bound, so the service is reachable now.
        serve.read_until(r'curl -s -X POST "\$SIGNOFF_URL/v1/approvals"')
        command = serve.read_until(r"New sign-in link later: (\S+) login-link admin").group(1)
        assert command == "signoff" or Path(command).resolve() == SIGNOFF.resolve()

        with httpx.Client(base_url=DEFAULT_BASE, timeout=30) as agent:
            created = agent.post(
                "/v1/approvals",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "action": "db.drop_table",
                    "title": "Drop table users",
                    "params": {"table": "users"},
                },
            )
            assert created.status_code == 201, created.text
        with httpx.Client(base_url=DEFAULT_BASE, timeout=30, follow_redirects=True) as admin:
            page = admin.get(link.removeprefix(DEFAULT_BASE))
            assert "Sign in" in page.text
            token = link.split("token=", 1)[1]
            inbox = admin.post("/login", data={"token": token})
            assert inbox.status_code == 200
            assert "Drop table users" in inbox.text
        output = serve.stop()
    finally:
        serve.kill()
    assert (tmp_path / "signoff.db").exists()
    assert output.count("login?token=") == 1

    again = ServeProcess(tmp_path)
    try:
        command = again.read_until(r"Sign in to the web inbox: (\S+) login-link admin").group(1)
        again.read_until(r"^\s+export SIGNOFF_URL=http://127\.0\.0\.1:8080\s*$")
        second = again.stop()
    finally:
        again.kill()
    assert command == "signoff" or Path(command).resolve() == SIGNOFF.resolve()
    assert "login?token=" not in second
    assert "so_" not in second


@pytest.mark.parametrize("command", [["serve", "--config", "missing.yaml"]])
def test_serve_with_a_missing_config_file_exits_2(tmp_path, command):
    result = subprocess.run(
        [str(SIGNOFF), *command], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "missing.yaml" in result.stderr
    assert "Traceback" not in result.stderr
