"""Benchmark 1: create throughput and latency, signoff against a hand-written baseline.

Both servers run as their own process on 127.0.0.1 on a SQLite file: ``signoff serve`` (one
process, started through :mod:`bench.launcher` so that the agent API's rate limits are
lifted; ``max_open`` is set high in the config) and :mod:`bench.baseline`. The same
closed-loop generator (:mod:`bench.load`) posts the same create JSON to each at 8 and at 64
concurrent connections. Reported: requests/s, p50 and p99 latency, and signoff / baseline.

Run alone: .venv/bin/python -m bench.throughput [--quick]
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.harness import (
    HOST,
    Row,
    ServerProcess,
    bearer,
    bench_launcher,
    child_environment,
    free_port,
    ms,
    run_alone,
    running,
    seed_agent_keys,
    standard_arguments,
)
from bench.load import LoadResult, closed_loop

BENCHMARK = "1 Create throughput"
AGENT = "bench-agent"
GOAL_RATIO = 1.0
CREATE_BODY = json.dumps(
    {
        "action": "deploy.web",
        "title": "Deploy web 1.2.3 to production",
        "details": "Rolling deploy of the web tier, six replicas.",
        "params": {"env": "prod", "service": "web", "version": "1.2.3", "replicas": 6},
    }
).encode()

CONFIG = """\
version: 1
server: {{listen: "{host}:{port}", public_url: "http://{host}:{port}"}}
database: {{url: "sqlite:///{db}"}}
people:
  approver: {{}}
agents:
  {agent}: {{allow: ["*"], max_open: 1000000000}}
policies:
  - name: default
    levels: [{{approvers: [approver], notify: [web], timeout: 30m}}]
"""


@dataclass(frozen=True)
class Sizes:
    connections: tuple[int, ...] = (8, 64)
    warmup: float = 2.0
    duration: float = 10.0


FULL = Sizes()
QUICK = Sizes(warmup=0.3, duration=1.0)


def measures(sizes: Sizes) -> list[str]:
    names = []
    for connections in sizes.connections:
        names += [
            f"signoff, {connections} connections",
            f"baseline, {connections} connections",
            f"signoff / baseline, {connections} connections",
        ]
    return names


def _figure(result: LoadResult) -> str:
    text = f"{result.rate:7.0f} req/s · p50 {ms(result.p(0.5))} · p99 {ms(result.p(0.99))}"
    if result.errors:
        text += f" · {result.errors} errors ({result.first_error[:60]})"
    return text


async def run(sizes: Sizes, workdir: Path) -> list[Row]:
    signoff_port, baseline_port = free_port(), free_port()
    signoff_db = workdir / "signoff.db"
    config = workdir / "signoff.yaml"
    config.write_text(
        CONFIG.format(host=HOST, port=signoff_port, db=signoff_db, agent=AGENT), encoding="utf-8"
    )
    keys = await seed_agent_keys(f"sqlite:///{signoff_db}", [AGENT])
    signoff = bench_launcher(
        config,
        json.dumps({"lift_api_limits": True}),
        log_path=workdir / "signoff.log",
        base_url=f"http://{HOST}:{signoff_port}",
    )
    baseline = ServerProcess(
        [
            sys.executable,
            "-m",
            "bench.baseline",
            "--db",
            str(workdir / "baseline.db"),
            "--port",
            str(baseline_port),
        ],
        base_url=f"http://{HOST}:{baseline_port}",
        log_path=workdir / "baseline.log",
        env=child_environment(),
    )
    rows: list[Row] = []
    async with running(signoff), running(baseline):
        await signoff.wait_ready()
        await baseline.wait_ready()
        for connections in sizes.connections:
            results = {}
            for name, server, headers in (
                ("signoff", signoff, bearer(keys[AGENT])),
                ("baseline", baseline, {}),
            ):
                result = await closed_loop(
                    server.base_url,
                    "/v1/approvals",
                    CREATE_BODY,
                    connections=connections,
                    warmup=sizes.warmup,
                    duration=sizes.duration,
                    headers=headers,
                )
                results[name] = result
                rows.append(Row(BENCHMARK, f"{name}, {connections} connections", _figure(result)))
            ratio = results["signoff"].rate / results["baseline"].rate
            judged = connections == max(sizes.connections)
            rows.append(
                Row(
                    BENCHMARK,
                    f"signoff / baseline, {connections} connections",
                    f"{ratio:.2f}",
                    f">= {GOAL_RATIO:.1f}" if judged else "",
                    ratio >= GOAL_RATIO if judged else None,
                )
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    args = standard_arguments(__doc__.splitlines()[0]).parse_args(argv)
    run_alone(run, QUICK if args.quick else FULL)


if __name__ == "__main__":
    main()
