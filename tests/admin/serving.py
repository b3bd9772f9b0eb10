"""A real `signoff serve` process for admin tests: start it on a free port, wait until it
answers, read its output, stop it with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.waiting import wait_for

SIGNOFF = Path(sys.executable).with_name("signoff")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base: str
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text(encoding="utf-8") + self.stderr.read_text(encoding="utf-8")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def start_serve(
    config: Path, workdir: Path, port: int, env: dict[str, str] | None = None
) -> Served:
    """`signoff serve --config config` listening on ``port``, answering /healthz, with
    stdout and stderr in files."""
    stdout, stderr = workdir / "serve.out", workdir / "serve.err"
    environment = {k: v for k, v in os.environ.items() if k != "SIGNOFF_CONFIG"}
    environment.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [str(SIGNOFF), "serve", "--config", str(config)],
            cwd=workdir,
            stdout=out,
            stderr=err,
            env=environment,
        )
    served = Served(process, f"http://127.0.0.1:{port}", stdout, stderr)

    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient(trust_env=False) as client:
                return (await client.get(f"{served.base}/healthz")).status_code == 200
        except httpx.TransportError:
            assert process.poll() is None, served.output()
            return False

    try:
        await wait_for(healthy, within=30, poll=0.05)
    except BaseException:
        served.kill()
        raise
    return served
