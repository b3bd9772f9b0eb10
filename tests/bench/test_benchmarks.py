"""The benchmarks keep running: each one, at its tiny ``--quick`` size, prints every row.

Figures are not judged here (this machine's speed is not the code's behaviour); what is
checked is that each benchmark runs to the end against the real processes and fakes, and
that its table has every row with a figure. Plus the arithmetic behind benchmark 4's
"allowed" rate.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.ratelimits import SendLimits, Window, least_makespan
from tests.world import missing_prerequisite

ROOT = Path(__file__).resolve().parents[2]
ROWS = {
    "throughput": [
        "signoff, 1 connection",
        "baseline, 1 connection",
        "signoff, 8 connections",
        "baseline, 8 connections",
        "signoff / baseline, 8 connections",
        "signoff, 64 connections",
        "baseline, 64 connections",
        "signoff / baseline, 64 connections",
        "auto-decided / create, 8 connections",
        "PostgreSQL, one process, 64 connections",
        "PostgreSQL, two processes, 64 connections",
        "PostgreSQL, two processes / one",
    ],
    "decisions": [
        "click to answer: web inbox",
        "click to answer: Slack",
        "click to answer: Telegram",
        "click to answer: Discord",
    ],
    "deadlines": [
        "lateness, recorded",
        "lateness, seen by a waiting agent",
        "memory per pending request",
        "start to ready",
        "sweep rate, a backlog due at once",
    ],
    "delivery": [
        "send rate / allowed: Slack",
        "send rate / allowed: Telegram",
        "send rate / allowed: Discord",
        "send rate / allowed: Teams",
    ],
}


@pytest.mark.parametrize("benchmark", sorted(ROWS))
def test_benchmark_runs_and_prints_every_row(benchmark):
    if not Path(sys.executable).with_name("signoff").exists():
        missing_prerequisite("the signoff command is not installed in this environment")
    finished = subprocess.run(
        [sys.executable, "-m", f"bench.{benchmark}", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output
    # A table row's cells are separated by runs of spaces.
    rows = [re.split(r"\s{2,}", line.strip()) for line in finished.stdout.splitlines()]
    for measure in ROWS[benchmark]:
        [cells] = [cells for cells in rows if measure in cells]
        figure = cells[cells.index(measure) + 1]
        assert not figure.startswith("failed:"), cells


def test_a_perfect_sender_bursts_each_window_then_waits_for_the_next():
    # One group: 1 message a second, at most 3 in any 10 s. Messages 4-6 wait for the
    # window: sent at 0, 1, 2, then 10, 11, 12.
    limits = SendLimits(interval=1.0, chat_window=Window(3, 10.0))
    assert least_makespan(limits, {"group": 6}) == pytest.approx(12.0)


def test_the_overall_limit_binds_when_chats_together_exceed_it():
    # Four chats at one a second each, but two a second overall: 8 messages need 3 s
    # (two at 0, 1, 2 and 3).
    limits = SendLimits(interval=1.0, overall=Window(2, 1.0))
    assert least_makespan(limits, dict.fromkeys("abcd", 2)) == pytest.approx(3.0)


def test_a_bucket_resets_a_period_after_its_first_message():
    limits = SendLimits(chat_bucket=Window(5, 5.0))
    assert least_makespan(limits, {"channel": 11}) == pytest.approx(10.0)
