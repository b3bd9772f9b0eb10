"""What every benchmark shares: server processes, sizes, percentiles and the results table.

Benchmarks start real server processes on 127.0.0.1 (``signoff serve``, the bench launcher
in :mod:`bench.launcher`, the baseline in :mod:`bench.baseline`), drive them from this
process, and report :class:`Row` values that :func:`print_table` shows with the goals beside
the figures. Benchmarks measure; they never assert.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
from rich import box
from rich.console import Console
from rich.table import Table

from approvals.access import AccessStore
from approvals.clock import SystemClock
from approvals.store import SqlStore

SIGNOFF = Path(sys.executable).with_name("signoff")
HOST = "127.0.0.1"
READY_WITHIN = 60.0
STOP_WITHIN = 15.0
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")
PROFILE_ENV = "SIGNOFF_BENCH_PROFILE"
"""A directory: profile every server process with py-spy (``pip install py-spy``) into it."""


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the results table.

    Attributes:
        benchmark: the benchmark's title, shown once per group of rows.
        measure: what was measured; stable text that the smoke test looks for.
        figure: the measured figures, formatted.
        goal: the goal from the issue, or "" when the row has none.
        met: whether the goal was met; ``None`` for rows without a goal.
    """

    benchmark: str
    measure: str
    figure: str
    goal: str = ""
    met: bool | None = None


def failed_rows(benchmark: str, measures: Sequence[str], error: BaseException) -> list[Row]:
    """Rows that say a benchmark could not run, so the table still lists every measure."""
    why = f"failed: {type(error).__name__}: {error}"
    return [Row(benchmark, measure, why[:120], "", False) for measure in measures]


def print_table(rows: Sequence[Row], *, title: str = "signoff benchmarks") -> None:
    """The results as one table: figures, goals and whether each goal was met."""
    table = Table(title=title, box=box.SIMPLE_HEAVY, header_style="bold", title_justify="left")
    for column in ("Benchmark", "Measure", "Figure", "Goal", "Met"):
        table.add_column(column, no_wrap=True)
    shown = None
    for row in rows:
        verdict = {True: "yes", False: "NO", None: ""}[row.met]
        table.add_row(
            row.benchmark if row.benchmark != shown else "",
            row.measure,
            row.figure,
            row.goal,
            verdict,
        )
        shown = row.benchmark
    # Wide and without colour: the table is read in terminals, logs and reports alike.
    Console(width=240, no_color=True, highlight=False, soft_wrap=False).print(table)


BenchmarkRun = Callable[[Any, Path], Awaitable[list[Row]]]
"""A benchmark's ``run(sizes, workdir)``: measures and returns its rows."""


async def run_in_scratch(run: BenchmarkRun, sizes: object) -> list[Row]:
    """Run one benchmark in a scratch directory of its own (databases, configs, logs)."""
    with tempfile.TemporaryDirectory(prefix="signoff-bench-") as folder:
        return await run(sizes, Path(folder))


def run_alone(run: BenchmarkRun, sizes: object) -> None:
    """What ``python -m bench.<benchmark>`` does: the machine, then the benchmark's table."""
    print(machine_line(), flush=True)
    print_table(asyncio.run(run_in_scratch(run, sizes)))


def machine_line() -> str:
    """Cores, CPU model, Python version and the load average when the run started."""
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"{os.cpu_count()} cores, {model}, Python {python}, load average {load}"


def percentile(samples: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def standard_arguments(description: str) -> argparse.ArgumentParser:
    """A parser with ``--quick`` (the tiny sizes the smoke test runs)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the benchmark runs, in seconds"
    )
    return parser


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def child_environment(**extra: str) -> dict[str, str]:
    """The environment for server processes: no proxies (everything is on 127.0.0.1)."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env.pop("SIGNOFF_CONFIG", None)
    env.update(
        PYTHONUNBUFFERED="1",
        NO_PROXY=HOST,
        # python-telegram-bot's retry_after in seconds is deprecated; signoff reads the
        # timedelta form.
        PTB_TIMEDELTA="1",
    )
    env.update(extra)
    return env


def local_client(**options: Any) -> httpx.AsyncClient:
    """An HTTP client that ignores proxy settings (benchmarks talk to 127.0.0.1 only)."""
    return httpx.AsyncClient(trust_env=False, **options)


class ServerProcess:
    """A server started as its own process, its output in a log file.

    ``started_at`` is taken just before the process is spawned, so :meth:`wait_ready`
    measures the whole start: interpreter, imports, migrations, adapters, listening.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        base_url: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        ready_path: str = "/readyz",
    ) -> None:
        self.argv = list(argv)
        self.base_url = base_url
        self.log_path = log_path
        self.ready_path = ready_path
        self._env = env or child_environment()
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._profiler: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=self._env
        )
        profile_dir = os.environ.get(PROFILE_ENV)
        if profile_dir:
            self._start_profiler(Path(profile_dir))

    def _start_profiler(self, directory: Path) -> None:
        """Sample the process with py-spy into ``<log name>-<pid>.txt``: collapsed stacks of
        the moments a thread held the GIL (Python running, not waiting); ``python -m
        bench.hotspots FILE`` summarizes one."""
        directory.mkdir(parents=True, exist_ok=True)
        output = directory / f"{self.log_path.stem}-{self.pid}.txt"
        py_spy = str(Path(sys.executable).with_name("py-spy"))
        sampling = ["--gil", "--pid", str(self.pid), "--format", "raw", "-o", str(output)]
        self._profiler = subprocess.Popen(
            [py_spy, "record", *sampling],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, within: float = READY_WITHIN) -> float:
        """Seconds from spawning the process to its first 200 on the readiness path."""
        assert self.process is not None
        deadline = time.monotonic() + within
        async with local_client(base_url=self.base_url, timeout=2.0) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.argv[0]} exited with {self.process.returncode}; "
                        f"see {self.log_path}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    response = await client.get(self.ready_path)
                    if response.status_code == 200:
                        return time.perf_counter() - self.started_at
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.argv[0]} not ready within {within:.0f} s")
                await asyncio.sleep(0.01)

    def rss_bytes(self) -> int:
        """Resident memory of the process now (Linux)."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    async def stop(self, *, within: float = STOP_WITHIN) -> int | None:
        """SIGTERM, then SIGKILL if the process has not stopped ``within`` seconds.

        The event loop keeps running meanwhile: the process may still be talking to fakes
        served by this one while it stops.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, within)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
        if self._profiler is not None:
            # py-spy writes its file when the process it samples is gone.
            try:
                await asyncio.to_thread(self._profiler.wait, within)
            except subprocess.TimeoutExpired:
                self._profiler.send_signal(signal.SIGINT)
                await asyncio.to_thread(self._profiler.wait)
            self._profiler = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.process.returncode if self.process is not None else None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.asynccontextmanager
async def running(server: ServerProcess) -> AsyncIterator[ServerProcess]:
    """Start ``server`` and stop it on the way out, whatever happens."""
    server.start()
    try:
        yield server
    finally:
        await server.stop()


def signoff_serve(config: Path, *, log_path: Path, base_url: str) -> ServerProcess:
    """The real ``signoff serve --config F``."""
    return ServerProcess(
        [str(SIGNOFF), "serve", "--config", str(config)], base_url=base_url, log_path=log_path
    )


def bench_launcher(
    config: Path, options: str, *, log_path: Path, base_url: str, env: dict[str, str] | None = None
) -> ServerProcess:
    """``signoff serve`` through :mod:`bench.launcher`, with limits set by ``options``."""
    return ServerProcess(
        [sys.executable, "-m", "bench.launcher", "--config", str(config), "--options", options],
        base_url=base_url,
        log_path=log_path,
        env=env,
    )


# -- database seeding -------------------------------------------------------------------------


async def seed_agent_keys(database_url: str, agents: Sequence[str]) -> dict[str, str]:
    """Migrate the database and make one API key per agent (what ``agents add`` does)."""
    store = SqlStore(database_url)
    try:
        await store.migrate()
        access = AccessStore(store, SystemClock())
        return {agent: await access.create_agent_key(agent) for agent in agents}
    finally:
        await store.close()


async def seed_login_token(database_url: str, person: str) -> str:
    """A web-inbox sign-in token for ``person`` (what ``signoff login-link`` makes)."""
    store = SqlStore(database_url)
    try:
        await store.migrate()
        return await AccessStore(store, SystemClock()).create_login_token(person)
    finally:
        await store.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def until(
    predicate: Callable[[], object], *, within: float, poll: float = 0.01, what: str = ""
) -> None:
    """Wait until ``predicate()`` is truthy; a ``TimeoutError`` naming ``what`` after ``within``."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or 'condition'} not reached within {within:.0f} s")
        await asyncio.sleep(poll)
