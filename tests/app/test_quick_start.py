"""README's quick start, run exactly as written in a copy of the checkout.

``make run`` serves on the built-in default and prints the ``export`` lines and the curl
command README shows; README's shell block, pasted with the printed key, makes a request;
``.venv/bin/signoff login-link admin`` (as README says) gives a link that signs admin in to
an inbox holding that request; Ctrl-C stops the service. Nothing but ``signoff.db`` is left
in the copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests.app.test_first_start import DEFAULT_BASE, port_8080_is_free
from tests.examples.test_examples import Clone, clone, everything_in
from tests.world import missing_prerequisite

__all__ = ["clone"]  # the fixture, used by name

ROOT = Path(__file__).resolve().parents[2]
SHELL_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"http://127\.0\.0\.1:8080/login\?token=\S+")


def quick_start_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return SHELL_BLOCK.findall(section)


def curl_command(text: str) -> str:
    """The curl command in ``text``, its continuation lines joined and spaces collapsed."""
    start = text.index("curl ")
    lines = []
    for line in text[start:].splitlines():
        lines.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    return " ".join(" ".join(lines).split())


def test_the_quick_start_runs_as_written(clone: Clone):
    make = shutil.which("make")
    if make is None:
        missing_prerequisite("make, which the quick start runs")
    if not port_8080_is_free():
        missing_prerequisite("port 8080 (the built-in default's port) is in use")
    assert make is not None
    setup, paste = quick_start_blocks()
    assert "make run" in [line.split("#")[0].strip() for line in setup.splitlines()]
    planned = subprocess.run(
        [make, "-n", "run"], cwd=clone.path, capture_output=True, text=True, check=False
    )
    if "pip install" in planned.stdout:  # it would install into the tests' own virtualenv
        missing_prerequisite("the tests' .venv is older than pyproject.toml: run make install")

    environ = {k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")}
    serving = subprocess.Popen(
        ["sh", "-c", "make run"],
        cwd=clone.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # its own process group, as a terminal's job is
    )
    lines: queue.Queue[str] = queue.Queue()

    def collect() -> None:
        assert serving.stdout is not None  # stdout=PIPE
        with serving.stdout:
            for line in serving.stdout:
                lines.put(line)

    collecting = threading.Thread(target=collect, daemon=True)
    collecting.start()
    printed: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any("login-link admin" in line for line in printed):  # the banner's end
            remaining = deadline - time.monotonic()
            assert remaining > 0, "\n".join(printed)
            with contextlib.suppress(queue.Empty):
                printed.append(lines.get(timeout=remaining).strip())
        key = next(line for line in printed if line.startswith("export SIGNOFF_API_KEY="))
        link = next(found for line in printed if (found := LINK.search(line))).group(0)
        # What README shows is what the first start prints.
        assert "export SIGNOFF_URL=http://127.0.0.1:8080" in paste.splitlines()
        assert "export SIGNOFF_URL=http://127.0.0.1:8080" in printed
        assert curl_command(paste) == curl_command("\n".join(printed))
        assert re.fullmatch(r"export SIGNOFF_API_KEY=so_\S+", key)

        pasted = paste.replace("export SIGNOFF_API_KEY=so_...", key)
        answer = subprocess.run(
            ["sh", "-c", pasted], cwd=clone.path, capture_output=True, text=True, timeout=30
        )
        assert answer.returncode == 0, answer.stderr
        asked = json.loads(answer.stdout)
        assert (asked["status"], asked["title"]) == ("pending", "Drop table users")

        later_link = subprocess.run(
            ["sh", "-c", ".venv/bin/signoff login-link admin"],
            cwd=clone.path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert later_link.returncode == 0, later_link.stderr
        assert "/login?token=" in later_link.stdout
        with httpx.Client(base_url=DEFAULT_BASE, timeout=30, follow_redirects=True) as admin:
            inbox = admin.post("/login", data={"token": link.split("token=", 1)[1]})
            assert inbox.status_code == 200
            assert asked["id"] in inbox.text

        os.killpg(serving.pid, signal.SIGINT)  # Ctrl-C in the terminal
        serving.wait(timeout=30)
    finally:
        if serving.poll() is None:
            os.killpg(serving.pid, signal.SIGKILL)
            serving.wait()
        collecting.join(timeout=30)
    rest = "".join(lines.queue)
    assert "Traceback" not in rest, rest
    left = everything_in(clone.path) - clone.at_first
    assert "signoff.db" in left
    assert left <= {"signoff.db", "signoff.db-wal", "signoff.db-shm"}
