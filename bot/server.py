"""Serving: uvicorn around the app, graceful stop, and the welcome on the built-in default."""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from bot.app import AppOptions, build_runtime
from bot.http import build_http_app
from bot.reload import ConfigReloader
from bot.runtime import Runtime
from config import LoadedConfig

log = logging.getLogger(__name__)

GRACEFUL_STOP_SECONDS = 10
BOOTSTRAP_PERSON = "admin"
BOOTSTRAP_AGENT = "local-agent"


class SignoffServer(uvicorn.Server):
    """uvicorn's server, answering parked long-polls at once when told to stop."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime, *, welcome: bool) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.welcome = welcome

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Only once the port is bound: a failed start must not use up the one-time welcome.
        if self.started and self.welcome:
            await _print_welcome(self.runtime)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.runtime.waiters.release_all()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Stop on SIGINT/SIGTERM. Unlike uvicorn's own handling, the signal is not raised
        again after the graceful stop: a stop that completed is a clean exit (status 0)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        stop_signals = (signal.SIGINT, signal.SIGTERM)
        previous = {signum: signal.signal(signum, self.handle_exit) for signum in stop_signals}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def signoff_command() -> str:
    """How to run signoff again from where it was started: ``signoff`` when that is what
    the PATH finds, else the path it was started by (relative to the working directory
    when inside it, such as ``.venv/bin/signoff`` after ``make run``)."""
    started = Path(sys.argv[0])
    if started.name != "signoff":
        return "signoff"
    on_path = shutil.which("signoff")
    if on_path is not None and Path(on_path).resolve() == started.resolve():
        return "signoff"
    try:
        return str(started.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(started.resolve())


@dataclass(frozen=True)
class Welcome:
    """What a newcomer needs on the first start with the built-in default."""

    login_url: str
    api_key: str
    base_url: str
    command: str = "signoff"

    def text(self) -> str:
        return (
            "\n"
            "  signoff is ready. This is shown once; keep the key.\n\n"
            f"  Sign in to the web inbox as {BOOTSTRAP_PERSON} (link valid for 1 hour):\n"
            f"    {self.login_url}\n\n"
            f"  API key for the agent {BOOTSTRAP_AGENT}, for the shell your agent runs in:\n"
            f"    export SIGNOFF_URL={self.base_url}\n"
            f"    export SIGNOFF_API_KEY={self.api_key}\n\n"
            "  Ask for an approval:\n"
            '    curl -s -X POST "$SIGNOFF_URL/v1/approvals" \\\n'
            '      -H "Authorization: Bearer $SIGNOFF_API_KEY" \\\n'
            '      -H "Content-Type: application/json" \\\n'
            '      -d \'{"action": "db.drop_table", "title": "Drop table users",'
            ' "params": {"table": "users"}}\'\n\n'
            f"  New sign-in link later: {self.command} login-link {BOOTSTRAP_PERSON}\n"
        )


def later_start_text(base_url: str, command: str) -> str:
    """What every later start on the built-in default says: where signoff is, and how to
    sign in and reach it again (the key was shown once, on the first start)."""
    return (
        "\n"
        f"  signoff is running at {base_url}.\n"
        f"  Sign in to the web inbox: {command} login-link {BOOTSTRAP_PERSON}\n"
        f"  For agents (the key was printed on the first start; "
        f"{command} agents add {BOOTSTRAP_AGENT} makes another):\n"
        f"    export SIGNOFF_URL={base_url}\n"
        "    export SIGNOFF_API_KEY=<the key>\n"
    )


async def first_start_welcome(runtime: Runtime) -> Welcome | None:
    """On a fresh database with the built-in default, make the first key and sign-in link."""
    from datetime import timedelta

    settings = runtime.config.settings
    if BOOTSTRAP_AGENT not in settings.agents or BOOTSTRAP_PERSON not in settings.people:
        return None
    if await runtime.access.list_agent_keys():
        return None
    api_key = await runtime.access.create_agent_key(BOOTSTRAP_AGENT)
    token = await runtime.access.create_login_token(BOOTSTRAP_PERSON, ttl=timedelta(hours=1))
    base = str(settings.server.public_url).rstrip("/")
    return Welcome(
        login_url=f"{base}/login?token={token}",
        api_key=api_key,
        base_url=base,
        command=signoff_command(),
    )


async def serve(
    config: LoadedConfig, *, builtin_default: bool, options: AppOptions | None = None
) -> None:
    """Run signoff until SIGINT or SIGTERM."""
    runtime = build_runtime(config, options)
    if config.file_sha256 is not None:  # the built-in default has no file to reload
        runtime.on_started.append(ConfigReloader(runtime, config.source).start)
    app = build_http_app(runtime)
    server_settings = config.settings.server
    uvicorn_config = uvicorn.Config(
        app,
        host=server_settings.host,
        port=server_settings.port,
        # uvicorn's own lines go through signoff's handler, in the configured format.
        log_config=None,
        log_level=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_STOP_SECONDS,
        lifespan="on",
        **proxy_options(server_settings.trusted_proxies),
    )
    server = SignoffServer(uvicorn_config, runtime, welcome=builtin_default)
    await server.serve()


def proxy_options(trusted_proxies: list[str]) -> dict[str, Any]:
    """uvicorn's forwarding-header settings: believed only from ``server.trusted_proxies``
    (uvicorn itself would believe any proxy on 127.0.0.1)."""
    if not trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(trusted_proxies)}


async def _print_welcome(runtime: Runtime) -> None:
    welcome = await first_start_welcome(runtime)
    if welcome is not None:
        print(welcome.text(), flush=True)
        return
    settings = runtime.config.settings
    if BOOTSTRAP_AGENT in settings.agents and BOOTSTRAP_PERSON in settings.people:
        base = str(settings.server.public_url).rstrip("/")
        print(later_start_text(base, signoff_command()), flush=True)
