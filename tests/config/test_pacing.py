"""Send pacing in config: each chat platform's ``pacing`` block, whose defaults are the
platform's documented limits and whose values may only send slower than the platform allows."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.discord.adapter import DEFAULT_SEND_INTERVAL as DISCORD_INTERVAL
from adapters.discord.adapter import OVERALL_LIMIT as DISCORD_OVERALL
from adapters.slack.adapter import DEFAULT_SEND_INTERVAL as SLACK_INTERVAL
from adapters.teams.adapter import CONVERSATION_LIMITS, TENANT_LIMIT
from adapters.telegram.pacing import GROUP_LIMIT, OVERALL_LIMIT, PER_CHAT_INTERVAL
from config.durations import format_interval, parse_interval
from config.schema import (
    DISCORD_OVERALL_PER_SECOND,
    DiscordPacingSettings,
    SlackPacingSettings,
    TeamsPacingSettings,
    TelegramPacingSettings,
)
from tests.config.helpers import load, problem_at, problems

ENV = {"TOKEN": "t0ken", "SECRET": "s3cret"}

PLATFORMS = """\
version: 1
people:
  alice: {}
platforms:
  slack:
    bot_token: "${TOKEN}"
    signing_secret: "${SECRET}"
@SLACK@
  telegram:
    bot_token: "${TOKEN}"
@TELEGRAM@
  discord:
    bot_token: "${TOKEN}"
@DISCORD@
  teams:
    app_id: 8f3c1a52-6d0e-4b7a-9c1e-2f5d7a9b0c11
    tenant_id: 2f5d7a9b-0c11-4b7a-9c1e-8f3c1a526d0e
    app_password: "${SECRET}"
@TEAMS@
policies:
  - name: default
    levels: [{approvers: [alice], notify: [web], timeout: 30m}]
"""


def with_pacing(**blocks: str) -> str:
    """The four platforms, each with the ``pacing:`` lines given for it (none: left out)."""
    text = PLATFORMS
    for platform in ("slack", "telegram", "discord", "teams"):
        pacing = blocks.get(platform)
        lines = f"    pacing: {pacing}\n" if pacing is not None else ""
        text = text.replace(f"@{platform.upper()}@\n", lines)
    return text


# --- defaults ----------------------------------------------------------------------------


def test_left_out_pacing_is_what_the_adapters_do_today() -> None:
    platforms = load(with_pacing(), ENV).settings.platforms
    assert platforms.slack is not None
    assert platforms.telegram is not None
    assert platforms.discord is not None
    assert platforms.teams is not None

    assert platforms.slack.pacing.per_channel == SLACK_INTERVAL
    telegram = platforms.telegram.pacing
    assert telegram.per_chat == PER_CHAT_INTERVAL
    assert (telegram.per_group_per_minute, timedelta(minutes=1)) == (
        GROUP_LIMIT.count,
        GROUP_LIMIT.period,
    )
    assert (telegram.overall_per_second, timedelta(seconds=1)) == (
        OVERALL_LIMIT.count,
        OVERALL_LIMIT.period,
    )
    discord = platforms.discord.pacing
    assert discord.per_channel is None  # none of signoff's own: discord.py keeps the buckets
    assert timedelta(0) == DISCORD_INTERVAL
    assert discord.overall_per_second is None
    assert (DISCORD_OVERALL_PER_SECOND, timedelta(seconds=1)) == (
        DISCORD_OVERALL.count,
        DISCORD_OVERALL.period,
    )
    teams = platforms.teams.pacing
    assert teams.per_conversation.windows() == tuple(
        (limit.count, limit.period) for limit in CONVERSATION_LIMITS
    )
    assert (teams.per_tenant_per_second, timedelta(seconds=1)) == (
        TENANT_LIMIT.count,
        TENANT_LIMIT.period,
    )


def test_an_empty_pacing_block_is_the_defaults() -> None:
    blocks = {"slack": "", "telegram": "{}", "discord": "", "teams": "{per_conversation: }"}
    platforms = load(with_pacing(**blocks), ENV).settings.platforms
    assert platforms.slack is not None
    assert platforms.telegram is not None
    assert platforms.discord is not None
    assert platforms.teams is not None
    assert platforms.slack.pacing == SlackPacingSettings()
    assert platforms.telegram.pacing == TelegramPacingSettings()
    assert platforms.discord.pacing == DiscordPacingSettings()
    assert platforms.teams.pacing == TeamsPacingSettings()


# --- slower is fine ----------------------------------------------------------------------


def test_slower_pacing_is_accepted_on_every_platform() -> None:
    platforms = load(
        with_pacing(
            slack="{per_channel: 2.5s}",
            telegram="{per_chat: 1500ms, per_group_per_minute: 5, overall_per_second: 10}",
            discord="{per_channel: 1m, overall_per_second: 20}",
            teams=(
                "{per_conversation: {per_second: 1, per_2_seconds: 2, per_30_seconds: 10, "
                "per_hour: 100}, per_tenant_per_second: 5}"
            ),
        ),
        ENV,
    ).settings.platforms
    assert platforms.slack is not None
    assert platforms.telegram is not None
    assert platforms.discord is not None
    assert platforms.teams is not None

    assert platforms.slack.pacing.per_channel == timedelta(milliseconds=2500)
    telegram = platforms.telegram.pacing
    assert (telegram.per_chat, telegram.per_group_per_minute, telegram.overall_per_second) == (
        timedelta(milliseconds=1500),
        5,
        10,
    )
    discord = platforms.discord.pacing
    assert (discord.per_channel, discord.overall_per_second) == (timedelta(minutes=1), 20)
    teams = platforms.teams.pacing
    assert teams.per_conversation.windows() == (
        (1, timedelta(seconds=1)),
        (2, timedelta(seconds=2)),
        (10, timedelta(seconds=30)),
        (100, timedelta(hours=1)),
    )
    assert teams.per_tenant_per_second == 5


def test_the_platform_limit_itself_is_accepted() -> None:
    platforms = load(
        with_pacing(
            slack="{per_channel: 1s}",
            telegram="{per_chat: 1000ms, per_group_per_minute: 20, overall_per_second: 30}",
            discord="{overall_per_second: 50}",
            teams=(
                "{per_conversation: {per_second: 7, per_2_seconds: 8, per_30_seconds: 60, "
                "per_hour: 1800}, per_tenant_per_second: 30}"
            ),
        ),
        ENV,
    ).settings.platforms
    assert platforms.slack is not None
    assert platforms.slack.pacing == SlackPacingSettings()
    assert platforms.telegram is not None
    assert platforms.telegram.pacing == TelegramPacingSettings()
    assert platforms.teams is not None
    assert platforms.teams.pacing == TeamsPacingSettings()


# --- faster is refused, at its line, naming the limit ------------------------------------


@pytest.mark.parametrize(
    ("blocks", "key_path", "message"),
    [
        (
            {"slack": "{per_channel: 500ms}"},
            "platforms.slack.pacing.per_channel",
            "0.5s would send faster than Slack allows (about one message a second per channel)",
        ),
        (
            {"telegram": "{per_chat: 0.5s}"},
            "platforms.telegram.pacing.per_chat",
            "0.5s would send faster than Telegram allows (at most one message a second per chat)",
        ),
        (
            {"telegram": "{per_group_per_minute: 21}"},
            "platforms.telegram.pacing.per_group_per_minute",
            "21 would send faster than Telegram allows (at most 20 messages a minute per group)",
        ),
        (
            {"telegram": "{overall_per_second: 31}"},
            "platforms.telegram.pacing.overall_per_second",
            "31 would send faster than Telegram allows (at most 30 messages a second for the "
            "whole bot)",
        ),
        (
            {"discord": "{overall_per_second: 51}"},
            "platforms.discord.pacing.overall_per_second",
            "51 would send faster than Discord allows (at most 50 requests a second for the "
            "whole bot)",
        ),
        (
            {"teams": "{per_conversation: {per_second: 8}}"},
            "platforms.teams.pacing.per_conversation.per_second",
            "8 would send faster than Teams allows (at most 7 messages a second per conversation)",
        ),
        (
            {"teams": "{per_conversation: {per_2_seconds: 9}}"},
            "platforms.teams.pacing.per_conversation.per_2_seconds",
            "at most 8 messages in 2 seconds per conversation",
        ),
        (
            {"teams": "{per_conversation: {per_30_seconds: 61}}"},
            "platforms.teams.pacing.per_conversation.per_30_seconds",
            "at most 60 messages in 30 seconds per conversation",
        ),
        (
            {"teams": "{per_conversation: {per_hour: 1801}}"},
            "platforms.teams.pacing.per_conversation.per_hour",
            "at most 1800 messages an hour per conversation",
        ),
        (
            {"teams": "{per_tenant_per_second: 31}"},
            "platforms.teams.pacing.per_tenant_per_second",
            "31 would send faster than Teams allows (at most 30 requests a second",
        ),
    ],
)
def test_pacing_faster_than_the_platform_allows_is_refused_at_its_line(
    blocks: dict[str, str], key_path: str, message: str
) -> None:
    text = with_pacing(**blocks)
    [platform] = blocks
    line = text.splitlines().index(f"    pacing: {blocks[platform]}") + 1

    [problem] = problems(text, ENV)

    assert (problem.source, problem.line, problem.key_path) == ("test.yaml", line, key_path)
    assert message in problem.message


def test_a_block_form_pacing_names_the_line_of_the_key() -> None:
    text = with_pacing().replace(
        '  telegram:\n    bot_token: "${TOKEN}"\n',
        '  telegram:\n    bot_token: "${TOKEN}"\n    pacing:\n      per_chat: 2s\n'
        "      per_group_per_minute: 25\n",
    )
    line = text.splitlines().index("      per_group_per_minute: 25") + 1

    problem = problem_at(problems(text, ENV), "platforms.telegram.pacing.per_group_per_minute")

    assert str(problem) == (
        f"test.yaml:{line}: platforms.telegram.pacing.per_group_per_minute: 25 would send "
        "faster than Telegram allows (at most 20 messages a minute per group)"
    )


@pytest.mark.parametrize(
    ("pacing", "key", "words"),
    [
        ("{per_channel: 0s}", "per_channel", "positive"),
        ("{per_channel: 2h}", "per_channel", "at most 1h"),
        ("{per_channel: soon}", "per_channel", "send interval such as 1s, 1.5s, 1500ms"),
        ("{overall_per_second: 0}", "overall_per_second", "at least 1"),
        ("{overall_per_second: true}", "overall_per_second", "whole number"),
        ("{per_second: 5}", "per_second", "unknown key 'per_second'"),
    ],
)
def test_values_that_are_no_pacing_at_all_are_refused(pacing: str, key: str, words: str) -> None:
    found = problems(with_pacing(discord=pacing), ENV)
    assert words in problem_at(found, f"platforms.discord.pacing.{key}").message


# --- the interval syntax -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("1s", timedelta(seconds=1)),
        ("1.5s", timedelta(milliseconds=1500)),
        ("1.25", timedelta(milliseconds=1250)),
        (1.5, timedelta(milliseconds=1500)),
        (2, timedelta(seconds=2)),
        ("1500ms", timedelta(milliseconds=1500)),
        ("1m30s", timedelta(seconds=90)),
        ("1h", timedelta(hours=1)),
        (timedelta(seconds=3), timedelta(seconds=3)),
    ],
)
def test_interval_spellings_parse(written: object, expected: timedelta) -> None:
    assert parse_interval(written) == expected


@pytest.mark.parametrize(
    "written",
    ["", "0s", "0ms", "-1s", -1, "1.5ms", "1.2345s", ".5s", "1 s", "1h1s", "2d", True, None],
)
def test_interval_spellings_that_are_not_intervals_are_refused(written: object) -> None:
    with pytest.raises(ValueError, match=r"interval|at most 1h"):
        parse_interval(written)


@pytest.mark.parametrize(
    ("interval", "written"),
    [
        (timedelta(seconds=1), "1s"),
        (timedelta(milliseconds=1500), "1.5s"),
        (timedelta(milliseconds=250), "0.25s"),
        (timedelta(minutes=2), "2m"),
    ],
)
def test_format_interval_writes_the_config_spelling(interval: timedelta, written: str) -> None:
    assert format_interval(interval) == written
    assert parse_interval(written) == interval
