"""Runs the four benchmarks one after another and prints one table with the goals beside
the figures: python -m bench [--quick]. ``make bench`` runs this.

A benchmark that fails still has its rows in the table (saying why), and the exit status
is then 1. bench/README.md explains each benchmark and how to read the table.
"""

from __future__ import annotations

import asyncio
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

from bench import deadlines, decisions, delivery, throughput
from bench.harness import (
    BenchmarkRun,
    Row,
    failed_rows,
    machine_line,
    print_table,
    run_in_scratch,
    standard_arguments,
)


@dataclass(frozen=True)
class Benchmark:
    title: str
    run: BenchmarkRun
    full: Any
    quick: Any
    measures: Any


BENCHMARKS = (
    Benchmark(
        throughput.BENCHMARK,
        throughput.run,
        throughput.FULL,
        throughput.QUICK,
        throughput.measures,
    ),
    Benchmark(
        decisions.BENCHMARK, decisions.run, decisions.FULL, decisions.QUICK, decisions.measures
    ),
    Benchmark(
        deadlines.BENCHMARK, deadlines.run, deadlines.FULL, deadlines.QUICK, deadlines.measures
    ),
    Benchmark(delivery.BENCHMARK, delivery.run, delivery.FULL, delivery.QUICK, delivery.measures),
)


async def run_all(*, quick: bool) -> tuple[list[Row], bool]:
    """Every benchmark's rows, and whether all of them ran."""
    rows: list[Row] = []
    all_ran = True
    for benchmark in BENCHMARKS:
        sizes = benchmark.quick if quick else benchmark.full
        started = time.perf_counter()
        print(f"running {benchmark.title} ...", flush=True)
        try:
            rows += await run_in_scratch(benchmark.run, sizes)
        except Exception as exc:
            traceback.print_exc()
            rows += failed_rows(benchmark.title, benchmark.measures(sizes), exc)
            all_ran = False
        print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    return rows, all_ran


def main(argv: list[str] | None = None) -> None:
    args = standard_arguments(__doc__.splitlines()[0]).parse_args(argv)
    machine = machine_line()
    started = time.perf_counter()
    rows, all_ran = asyncio.run(run_all(quick=args.quick))
    print()
    print(f"Machine: {machine}")
    print(f"All benchmarks took {time.perf_counter() - started:.0f} s.")
    print_table(rows)
    sys.exit(0 if all_ran else 1)


if __name__ == "__main__":
    main()
