"""The config file's schema: one pydantic model per section, unknown keys rejected.

These models check each value on its own (types, formats, per-section rules). Checks that
need the whole file, such as "every approver is a person or a group", live in
``config.checks``. Adapters import their settings classes (``SlackSettings`` and so on)
from here.

Each field's ``description`` is what the configuration reference (docs/configuration.md)
says about it (``config.reference`` writes that section from these models), so it is the
one place a key is documented.

Secrets are ``SecretStr``. When the loader validates a file it passes
``{SECRETS_FROM_ENVIRONMENT: True}`` as validation context, and then every secret must
have been written as one ``${ENV_VAR}`` reference; models built in code take any value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from approvals.describe import DescribeTemplate
from approvals.egress import allow_entry_problem
from approvals.grants import MAX_GRANT, PARAMS_PREFIX, GrantRule
from approvals.policy import AutoDecision, EditsRule, PredicateOp, Risk, TimeoutOutcome
from approvals.store import async_database_url
from config.durations import format_duration, format_interval, parse_duration, parse_interval
from config.environment import EnvText

SECRETS_FROM_ENVIRONMENT = "secrets_from_environment"
"""Validation context key: when true, secrets must be ``${ENV_VAR}`` references."""

REFERENCE_AS_ONE_VALUE = "reference_as_one_value"
"""Field marker for the generated reference: describe the field as one value, not its parts
(its YAML form differs from the model behind it)."""

CHAT_PLATFORMS = ("slack", "telegram", "discord", "teams")
"""The chat platforms config knows, in the order destinations are listed."""
EMAIL_PLATFORM = "email"
"""Email: cards by mail, decided through signed links to the web inbox. Not a chat platform
(no buttons, no edits), so it is not in ``CHAT_PLATFORMS``."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_SLACK_ID = re.compile(r"[A-Z0-9]{2,}")
_DISCORD_ID = re.compile(r"[0-9]{1,20}")
_TELEGRAM_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_ENTRA_ID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_TEAMS_CHANNEL_ID = re.compile(r"19:[^\s;]+@thread\.[a-z0-9]+")
_PARAM_PATH = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")


class _Section(BaseModel):
    """Base for every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- small value types ---------------------------------------------------------------


def _none_as_empty(value: object) -> object:
    """A key written with nothing after it (``agents:``) means an empty section."""
    return {} if value is None else value


def _check_name(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use up to 64 letters, digits, '.', '_', '@' or "
            "'-', starting with a letter or digit"
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]
"""A name for a person, group, channel, agent or policy."""


def _whole_number(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("expected a whole number, not true/false")
    return value


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]
"""An integer that refuses YAML booleans (which Python would count as 0 and 1)."""

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A positive duration written as ``30s``, ``15m``, ``1h30m``, ``2d`` or whole seconds."""


def _describe_template(value: str) -> str:
    DescribeTemplate.parse(value)  # raises ValueError saying what is wrong, and where
    return value


MAX_DENY_REPEAT = timedelta(days=30)
"""The longest denial memory a policy may ask for."""


def _non_empty_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Glob = Annotated[str, AfterValidator(_non_empty_text)]
"""A shell-style pattern such as ``db.*``."""


def _one_or_more(value: object) -> object:
    """A single glob may be written without list brackets."""
    if isinstance(value, str):
        return [value]
    return value


Globs = Annotated[list[Glob], BeforeValidator(_one_or_more), Field(min_length=1)]


def _slack_id(value: str) -> str:
    if not _SLACK_ID.fullmatch(value):
        raise ValueError(
            f"expected a Slack id such as U012ABCDEF or C012ABCDEF (capital letters and digits; "
            f"display names do not work), not {value!r}"
        )
    return value


SlackId = Annotated[str, AfterValidator(_slack_id)]


def _discord_id(value: object) -> object:
    """Discord ids are 64-bit snowflakes; YAML may read an unquoted one as a number."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and _DISCORD_ID.fullmatch(value):
        return value
    raise ValueError(f'expected a Discord id: digits, such as "200001", not {value!r}')


DiscordId = Annotated[str, BeforeValidator(_discord_id)]


def _entra_id(what: str) -> Callable[[str], str]:
    """A check for a Microsoft Entra id (a GUID, compared in lower case); ``what`` says
    where the admin finds it."""

    def check(value: str) -> str:
        if not _ENTRA_ID.fullmatch(value):
            raise ValueError(
                f"expected a GUID such as 8f3c1a52-6d0e-4b7a-9c1e-2f5d7a9b0c11 ({what}), "
                f"not {value!r}"
            )
        return value.lower()

    return check


EntraObjectId = Annotated[
    str, AfterValidator(_entra_id("the user's Object ID in the Entra admin center"))
]
"""A Microsoft Entra object id: how Teams names a person for good."""
EntraGuid = Annotated[str, AfterValidator(_entra_id("the ID the Entra admin center shows"))]
"""A Microsoft Entra application or tenant id."""


def _teams_channel_id(value: str) -> str:
    if not _TEAMS_CHANNEL_ID.fullmatch(value):
        raise ValueError(
            "expected a Teams channel id such as 19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2 "
            f"(from the channel's link: Get link to channel), not {value!r}"
        )
    return value


TeamsChannelId = Annotated[str, AfterValidator(_teams_channel_id)]
TelegramUserId = Annotated[int, BeforeValidator(_whole_number), Field(gt=0)]
TelegramChatId = Annotated[int, BeforeValidator(_whole_number)]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL, not {value!r}")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]

_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_EMAIL_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
MAX_EMAIL_ADDRESS_LENGTH = 254
"""The longest address SMTP carries (RFC 5321's path limit less the angle brackets)."""


def _email_address(value: str) -> str:
    """A plain address (``name@example.com``): no display name, no comments, no quoting.

    The domain is lower-cased; the local part is kept as written.
    """
    local, separator, domain = value.rpartition("@")
    if (
        not separator
        or len(value) > MAX_EMAIL_ADDRESS_LENGTH
        or len(local) > 64
        or not _EMAIL_LOCAL.fullmatch(local)
        or not _EMAIL_DOMAIN.fullmatch(domain)
    ):
        raise ValueError(
            f"expected a plain email address such as alice@example.com (no name, no <>), "
            f"not {value!r}"
        )
    return f"{local}@{domain.lower()}"


EmailAddress = Annotated[str, AfterValidator(_email_address)]


def _websocket_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"expected a ws:// or wss:// URL, not {value!r}")
    return value


def _secret_from_environment(value: object, info: ValidationInfo) -> object:
    """When loading a file, a secret must have been written as one ``${ENV_VAR}``."""
    context = info.context if isinstance(info.context, dict) else {}
    if value is None or not context.get(SECRETS_FROM_ENVIRONMENT):
        return value
    if not isinstance(value, EnvText) or not value.is_single_reference:
        title = info.config.get("title", "") if info.config else ""
        platform = title.removesuffix("Settings").upper()
        field_name = (info.field_name or "secret").upper()
        variable = f"{platform}_{field_name}" if platform else field_name
        raise ValueError(
            f'secrets only through ${{ENV_VAR}}: write "${{{variable}}}" here and set '
            f"{variable} in the environment"
        )
    if not value:
        raise ValueError(f"environment variable {value.variables[0]} is set but empty")
    return str(value)


def _not_empty_secret(value: SecretStr) -> SecretStr:
    if not value.get_secret_value():
        raise ValueError("must not be empty")
    return value


Secret = Annotated[
    SecretStr, BeforeValidator(_secret_from_environment), AfterValidator(_not_empty_secret)
]
"""A token or secret; in a config file, always a ``${ENV_VAR}`` reference."""


def _required_in_mode(
    mode: str, mode_field: str = "mode"
) -> Callable[[SecretStr | None, ValidationInfo], SecretStr | None]:
    """A field check: the field must be set when ``mode_field`` equals ``mode``."""

    def check(value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None and info.data.get(mode_field) == mode:
            raise ValueError(f"required when {mode_field} is {mode}")
        return value

    return check


# --- server and database -------------------------------------------------------------


class RateSettings(_Section):
    """A rate limit on the agent API: a token bucket refilled at ``per_minute`` and holding
    at most ``burst`` calls."""

    per_minute: Annotated[WholeNumber, Field(ge=1, le=1_000_000)] = Field(
        description="Calls a minute on average; more are answered 429 with `Retry-After`."
    )
    burst: Annotated[WholeNumber, Field(ge=1, le=100_000)] = Field(
        description="How many calls may come at once after a quiet spell."
    )


DEFAULT_AGENT_RATE = RateSettings(per_minute=600, burst=50)
"""Each agent's API limit unless ``agents.NAME.rate`` says otherwise."""
DEFAULT_API_RATE = RateSettings(per_minute=12_000, burst=400)
"""The agent API's limit for all agents together, unless ``server.api_rate`` says otherwise."""


class ServerSettings(_Section):
    """Where the HTTP server listens, and the URL people and platforms reach it at."""

    listen: str = Field(
        default="127.0.0.1:8080",
        description="`host:port` to bind; an IPv6 host in brackets (`[::1]:8080`).",
    )
    public_url: HttpUrl = Field(
        default="http://127.0.0.1:8080",
        description=(
            "The URL people and platforms reach signoff at: links in cards, Slack events, "
            "the Telegram webhook. A trailing slash is removed."
        ),
    )

    api_rate: RateSettings = Field(
        default=DEFAULT_API_RATE,
        description=(
            "The agent API's limit for all agents together (`{per_minute, burst}`); each "
            "agent also has its own, `agents.NAME.rate`. Default: 12,000 a minute, bursts "
            "of 400."
        ),
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            "Addresses or networks (CIDR) of the reverse proxies in front of signoff whose "
            "`X-Forwarded-For` and `X-Forwarded-Proto` headers are believed. None by "
            "default: the client address is the connection's, so a forged header can "
            "neither dodge the limit on bad keys, sign-in links and sessions nor aim it at "
            "someone else. Behind a proxy, list it (e.g. `127.0.0.1`), or every client "
            "shares the proxy's address and its limit."
        ),
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        _split_listen(value)
        return value

    @field_validator("public_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.query or parts.fragment:
            raise ValueError("must not have a query (?...) or fragment (#...)")
        return value.rstrip("/")

    @property
    def host(self) -> str:
        """The host to bind, without IPv6 brackets."""
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The TCP port to bind."""
        return _split_listen(self.listen)[1]


def _split_listen(value: str) -> tuple[str, int]:
    expected = f'expected "host:port", such as "127.0.0.1:8080" or "[::1]:8080", not {value!r}'
    host, separator, port_text = value.rpartition(":")
    if not separator or not host or not port_text.isascii() or not port_text.isdigit():
        raise ValueError(expected)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    bare_ipv6 = ":" in host and not value.startswith("[")
    if not host or bare_ipv6 or any(character.isspace() for character in host):
        raise ValueError(expected)
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535, not {port}")
    return host, port


class DatabaseSettings(_Section):
    """Where requests, votes and the audit log are stored."""

    url: str = Field(
        default="sqlite:///signoff.db",
        description=(
            "`sqlite:///path.db` (relative to the working directory; four slashes for an "
            "absolute path) or `postgresql://user@host/dbname`. Plain URLs: signoff picks the "
            "async driver itself. A password only as `${ENV_VAR}`."
        ),
    )

    @field_validator("url", mode="before")
    @classmethod
    def _check_url(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value  # the str type check reports it
        scheme, separator, rest = value.partition("://")
        if not separator:
            raise ValueError(
                f"expected sqlite:///path or postgresql://user@host/dbname, not {value!r}"
            )
        if "+" in scheme:
            plain = scheme.split("+", 1)[0]
            raise ValueError(
                f"write a plain URL ({plain}://...), without a +driver: signoff picks the async "
                "driver itself"
            )
        if scheme == "sqlite":
            if not rest.startswith("/") or rest == "/":
                raise ValueError(
                    "a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db"
                )
        elif scheme in ("postgresql", "postgres"):
            if not rest:
                raise ValueError("a PostgreSQL URL is postgresql://user@host/dbname")
            context = info.context if isinstance(info.context, dict) else {}
            has_password = urlsplit(value).password is not None
            literal_password = has_password and not isinstance(value, EnvText)
            if literal_password and context.get(SECRETS_FROM_ENVIRONMENT):
                raise ValueError(
                    "secrets only through ${ENV_VAR}: write the password as a reference, "
                    "such as postgresql://signoff:${PGPASSWORD}@db/signoff"
                )
        else:
            raise ValueError(
                f"unsupported database {scheme!r}: use sqlite:///path or "
                "postgresql://user@host/dbname"
            )
        return str(value)

    @property
    def dialect(self) -> Literal["sqlite", "postgresql"]:
        """Which database the URL names."""
        return "sqlite" if self.url.startswith("sqlite:") else "postgresql"

    @property
    def async_url(self) -> str:
        """The URL with the async driver signoff uses (aiosqlite or asyncpg)."""
        return async_database_url(self.url)


# --- people, groups, channels --------------------------------------------------------


class PersonSettings(_Section):
    """One person's identities: at most one per platform, and none is fine."""

    slack: SlackId | None = Field(
        default=None, description="Slack member id (`U012ABCDEF`), never a display name."
    )
    telegram: TelegramUserId | None = Field(
        default=None, description="Telegram user id (a number)."
    )
    discord: DiscordId | None = Field(
        default=None, description='Discord user id (digits; quote it: `"200001"`).'
    )
    teams: EntraObjectId | None = Field(
        default=None,
        description=(
            "Microsoft Entra object id of the person's account (a GUID: Entra admin center, "
            "Users, Object ID), never a display name or e-mail address."
        ),
    )
    email: EmailAddress | None = Field(
        default=None,
        description=(
            "Email address: `dm` mails this person cards with Approve / Deny links of their "
            "own (needs `platforms.email`)."
        ),
    )

    def identities(self) -> dict[str, str]:
        """Platform name -> id as text, for the platforms this person uses."""
        found = {
            "slack": self.slack,
            "telegram": self.telegram,
            "discord": self.discord,
            "teams": self.teams,
        }
        found[EMAIL_PLATFORM] = self.email
        return {platform: str(value) for platform, value in found.items() if value is not None}


class ChannelSettings(_Section):
    """A named place to post cards, on one or more platforms."""

    slack: SlackId | None = Field(
        default=None, description="Slack channel id (`C012ABCDEF`); invite the bot to it."
    )
    telegram: TelegramChatId | None = Field(
        default=None, description="Telegram chat id (negative for groups and channels)."
    )
    discord: DiscordId | None = Field(
        default=None, description='Discord channel id (digits; quote it: `"300001"`).'
    )
    teams: TeamsChannelId | None = Field(
        default=None,
        description=(
            "Teams channel id (`19:...@thread.tacv2`, from the channel's link); install the "
            "app in the channel's team."
        ),
    )
    email: EmailAddress | None = Field(
        default=None,
        description=(
            "A mailing list's address. Its mail carries no Approve / Deny links (nobody can "
            "be told apart on a list): allowed only on levels whose approvers can decide "
            "elsewhere too (`dm`, `web` or a chat channel in the same notify list)."
        ),
    )

    @model_validator(mode="after")
    def _needs_a_platform(self) -> ChannelSettings:
        if not self.ids():
            raise ValueError(
                "a channel needs an id on at least one platform: slack, telegram, discord, "
                "teams or email"
            )
        return self

    def ids(self) -> dict[str, str]:
        """Platform name -> channel id as text, in ``CHAT_PLATFORMS`` order, email last."""
        found = {
            "slack": self.slack,
            "telegram": self.telegram,
            "discord": self.discord,
            "teams": self.teams,
        }
        found[EMAIL_PLATFORM] = self.email
        return {platform: str(value) for platform, value in found.items() if value is not None}


# --- send pacing ---------------------------------------------------------------------
#
# How fast signoff sends to each chat platform. The defaults are each platform's documented
# limits (the adapters hold the same values as named constants, and a test keeps the two
# equal); a value may only make sending slower. One that would send faster than the
# platform allows is refused, naming the limit: the platform would answer 429 and hold the
# bot back for longer than the pacing saves.

SLACK_PER_CHANNEL = timedelta(seconds=1)
"""Slack: about one message a second in one channel."""
TELEGRAM_PER_CHAT = timedelta(seconds=1)
"""Telegram: one message a second in one chat."""
TELEGRAM_PER_GROUP_PER_MINUTE = 20
"""Telegram: 20 messages a minute in one group."""
TELEGRAM_OVERALL_PER_SECOND = 30
"""Telegram: about 30 messages a second for the whole bot."""
DISCORD_OVERALL_PER_SECOND = 50
"""Discord: 50 requests a second for the whole bot (each channel's bucket is announced in
``X-RateLimit-*`` headers, and discord.py keeps to it)."""
TEAMS_PER_SECOND = 7
"""Teams: 7 messages a second for one bot in one conversation."""
TEAMS_PER_2_SECONDS = 8
"""Teams: 8 messages in 2 seconds for one bot in one conversation."""
TEAMS_PER_30_SECONDS = 60
"""Teams: 60 messages in 30 seconds for one bot in one conversation."""
TEAMS_PER_HOUR = 1800
"""Teams: 1,800 messages an hour for one bot in one conversation."""
TEAMS_PER_TENANT_PER_SECOND = 30
"""Teams: 30 requests a second for one app in one tenant, all conversations together."""

SendInterval = Annotated[timedelta, BeforeValidator(parse_interval)]
"""The least time between two messages: ``1s``, ``1.5s``, ``1500ms``, ``1m`` (at most 1h)."""
_INTERVAL_SYNTAX = "a duration such as `2s`, `1.5s`, `1500ms` or `1m` (at most `1h`)"


def _no_shorter_than(
    minimum: timedelta, platform: str, allowed: str
) -> Callable[[timedelta], timedelta]:
    """A check that an interval does not send faster than ``platform`` allows."""

    def check(value: timedelta) -> timedelta:
        if value < minimum:
            raise ValueError(
                f"{format_interval(value)} would send faster than {platform} allows ({allowed})"
            )
        return value

    return check


def _no_more_than(maximum: int, platform: str, allowed: str) -> Callable[[int], int]:
    """A check that a count does not send faster than ``platform`` allows."""

    def check(value: int) -> int:
        if value > maximum:
            raise ValueError(f"{value} would send faster than {platform} allows ({allowed})")
        return value

    return check


class SlackPacingSettings(_Section):
    """How fast signoff sends to Slack; never faster than Slack allows."""

    per_channel: Annotated[
        SendInterval,
        AfterValidator(
            _no_shorter_than(SLACK_PER_CHANNEL, "Slack", "about one message a second per channel")
        ),
    ] = Field(
        default=SLACK_PER_CHANNEL,
        description=(
            "The least time between two messages (cards, edits, replies) to one channel or "
            f"person: {_INTERVAL_SYNTAX}. Slack allows about one message a second in a "
            f"channel, so at least `{format_interval(SLACK_PER_CHANNEL)}`."
        ),
    )


class TelegramPacingSettings(_Section):
    """How fast signoff sends to Telegram; never faster than Telegram allows."""

    per_chat: Annotated[
        SendInterval,
        AfterValidator(
            _no_shorter_than(TELEGRAM_PER_CHAT, "Telegram", "at most one message a second per chat")
        ),
    ] = Field(
        default=TELEGRAM_PER_CHAT,
        description=(
            f"The least time between two messages to one chat, group or person: "
            f"{_INTERVAL_SYNTAX}. Telegram allows one message a second in a chat, so at "
            f"least `{format_interval(TELEGRAM_PER_CHAT)}`."
        ),
    )
    per_group_per_minute: Annotated[
        WholeNumber,
        Field(ge=1),
        AfterValidator(
            _no_more_than(
                TELEGRAM_PER_GROUP_PER_MINUTE,
                "Telegram",
                f"at most {TELEGRAM_PER_GROUP_PER_MINUTE} messages a minute per group",
            )
        ),
    ] = Field(
        default=TELEGRAM_PER_GROUP_PER_MINUTE,
        description=(
            "Messages a minute to one group or channel at most; 1 to "
            f"{TELEGRAM_PER_GROUP_PER_MINUTE} (Telegram's limit)."
        ),
    )
    overall_per_second: Annotated[
        WholeNumber,
        Field(ge=1),
        AfterValidator(
            _no_more_than(
                TELEGRAM_OVERALL_PER_SECOND,
                "Telegram",
                f"at most {TELEGRAM_OVERALL_PER_SECOND} messages a second for the whole bot",
            )
        ),
    ] = Field(
        default=TELEGRAM_OVERALL_PER_SECOND,
        description=(
            "Messages a second to all chats together at most; 1 to "
            f"{TELEGRAM_OVERALL_PER_SECOND} (Telegram's limit for a bot)."
        ),
    )


class DiscordPacingSettings(_Section):
    """How fast signoff sends to Discord, on top of the buckets Discord announces."""

    per_channel: SendInterval | None = Field(
        default=None,
        description=(
            "The least time between two messages (cards, edits, replies) to one channel or "
            f"person: {_INTERVAL_SYNTAX}. Left out, no spacing of signoff's own; either way "
            "discord.py keeps to each channel's limit as Discord announces it "
            "(`X-RateLimit-*`)."
        ),
    )
    overall_per_second: (
        Annotated[
            WholeNumber,
            Field(ge=1),
            AfterValidator(
                _no_more_than(
                    DISCORD_OVERALL_PER_SECOND,
                    "Discord",
                    f"at most {DISCORD_OVERALL_PER_SECOND} requests a second for the whole bot",
                )
            ),
        ]
        | None
    ) = Field(
        default=None,
        description=(
            "Messages a second to all channels together at most; 1 to "
            f"{DISCORD_OVERALL_PER_SECOND} (Discord's limit for a bot). Left out, none of "
            "signoff's own: discord.py keeps Discord's."
        ),
    )


def _teams_window(maximum: int, period: str) -> Callable[[int], int]:
    return _no_more_than(maximum, "Teams", f"at most {maximum} messages {period} per conversation")


class TeamsConversationPacingSettings(_Section):
    """Teams' windows for one conversation; all of them hold at once."""

    per_second: Annotated[
        WholeNumber, Field(ge=1), AfterValidator(_teams_window(TEAMS_PER_SECOND, "a second"))
    ] = Field(
        default=TEAMS_PER_SECOND,
        description=f"Messages in any second at most; 1 to {TEAMS_PER_SECOND}.",
    )
    per_2_seconds: Annotated[
        WholeNumber,
        Field(ge=1),
        AfterValidator(_teams_window(TEAMS_PER_2_SECONDS, "in 2 seconds")),
    ] = Field(
        default=TEAMS_PER_2_SECONDS,
        description=f"Messages in any 2 seconds at most; 1 to {TEAMS_PER_2_SECONDS}.",
    )
    per_30_seconds: Annotated[
        WholeNumber,
        Field(ge=1),
        AfterValidator(_teams_window(TEAMS_PER_30_SECONDS, "in 30 seconds")),
    ] = Field(
        default=TEAMS_PER_30_SECONDS,
        description=f"Messages in any 30 seconds at most; 1 to {TEAMS_PER_30_SECONDS}.",
    )
    per_hour: Annotated[
        WholeNumber, Field(ge=1), AfterValidator(_teams_window(TEAMS_PER_HOUR, "an hour"))
    ] = Field(
        default=TEAMS_PER_HOUR,
        description=f"Messages in any hour at most; 1 to {TEAMS_PER_HOUR:,}.",
    )

    def windows(self) -> tuple[tuple[int, timedelta], ...]:
        """Each window as (most messages, period)."""
        return (
            (self.per_second, timedelta(seconds=1)),
            (self.per_2_seconds, timedelta(seconds=2)),
            (self.per_30_seconds, timedelta(seconds=30)),
            (self.per_hour, timedelta(hours=1)),
        )


class TeamsPacingSettings(_Section):
    """How fast signoff sends to Teams; never faster than Teams allows."""

    per_conversation: Annotated[
        TeamsConversationPacingSettings, BeforeValidator(_none_as_empty)
    ] = Field(
        default_factory=TeamsConversationPacingSettings,
        description=(
            "Messages (cards, edits, replies) to one chat or channel, in four windows that "
            "all hold at once; each at most what Teams allows one bot in one conversation."
        ),
    )
    per_tenant_per_second: Annotated[
        WholeNumber,
        Field(ge=1),
        AfterValidator(
            _no_more_than(
                TEAMS_PER_TENANT_PER_SECOND,
                "Teams",
                f"at most {TEAMS_PER_TENANT_PER_SECOND} requests a second for an app in a tenant",
            )
        ),
    ] = Field(
        default=TEAMS_PER_TENANT_PER_SECOND,
        description=(
            "Messages a second to all conversations together at most; 1 to "
            f"{TEAMS_PER_TENANT_PER_SECOND} (Teams' limit for an app in one tenant)."
        ),
    )


# --- platforms -----------------------------------------------------------------------


class SlackSettings(_Section):
    """The Slack app signoff runs as."""

    bot_token: Secret = Field(description="The bot token (`xoxb-...`).")
    mode: Literal["http", "socket"] = Field(
        default="http",
        description=(
            "`http`: clicks arrive at `<public_url>/slack/events`; `socket`: Socket Mode, no "
            "public URL needed."
        ),
    )
    signing_secret: Secret | None = Field(
        default=None,
        validate_default=True,
        description="Verifies inbound HTTP requests; required in `http` mode.",
    )
    app_token: Secret | None = Field(
        default=None,
        validate_default=True,
        description="The app-level token (`xapp-...`); required in `socket` mode.",
    )
    api_url: HttpUrl = Field(
        default="https://slack.com/api/",
        description="The Web API base URL, ending in `/` (proxies, tests).",
    )

    pacing: Annotated[SlackPacingSettings, BeforeValidator(_none_as_empty)] = Field(
        default_factory=SlackPacingSettings,
        description="How fast cards go to Slack: only ever slower than Slack allows.",
    )

    _signing_secret_in_http_mode = field_validator("signing_secret")(_required_in_mode("http"))
    _app_token_in_socket_mode = field_validator("app_token")(_required_in_mode("socket"))

    @field_validator("api_url")
    @classmethod
    def _end_with_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"


class TelegramSettings(_Section):
    """The Telegram bot signoff runs as."""

    bot_token: Secret = Field(description="The bot token from BotFather.")
    mode: Literal["polling", "webhook"] = Field(
        default="polling",
        description=(
            "`polling`: long-polls Telegram, no public URL needed; `webhook`: Telegram posts "
            "updates to `<public_url>/telegram/webhook`."
        ),
    )
    webhook_secret: Secret | None = Field(
        default=None,
        validate_default=True,
        description=(
            "The secret token Telegram sends with each webhook call; required in `webhook` "
            "mode; 1-256 letters, digits, `_` or `-`."
        ),
    )
    api_url: HttpUrl = Field(
        default="https://api.telegram.org/bot",
        description="The Bot API base URL, to which the token is appended (a self-hosted server).",
    )
    pacing: Annotated[TelegramPacingSettings, BeforeValidator(_none_as_empty)] = Field(
        default_factory=TelegramPacingSettings,
        description="How fast cards go to Telegram: only ever slower than Telegram allows.",
    )

    _webhook_secret_in_webhook_mode = field_validator("webhook_secret")(
        _required_in_mode("webhook")
    )

    @field_validator("webhook_secret")
    @classmethod
    def _telegram_secret_format(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _TELEGRAM_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError(
                "Telegram accepts a webhook secret of 1 to 256 letters, digits, '_' or '-'"
            )
        return value


class DiscordSettings(_Section):
    """The Discord bot signoff runs as."""

    bot_token: Secret = Field(description="The bot token.")
    api_url: HttpUrl = Field(
        default="https://discord.com/api/v10",
        description="The REST API base URL (proxies, self-hosted gateways).",
    )
    gateway_url: Annotated[str, AfterValidator(_websocket_url)] = Field(
        default="wss://gateway.discord.gg", description="The gateway (websocket) URL."
    )
    pacing: Annotated[DiscordPacingSettings, BeforeValidator(_none_as_empty)] = Field(
        default_factory=DiscordPacingSettings,
        description="How fast cards go to Discord: only ever slower than Discord allows.",
    )


class TeamsSettings(_Section):
    """The Microsoft Teams bot signoff runs as (an Azure Bot resource and its Entra app)."""

    app_id: EntraGuid = Field(
        description=(
            "The bot's Microsoft App ID (the Entra app registration's Application (client) ID); "
            "inbound activities must be addressed to it."
        )
    )
    app_password: Secret | None = Field(
        default=None,
        description="A client secret of the app registration; or use `certificate`.",
    )
    certificate: Annotated[str, AfterValidator(_non_empty_text)] | None = Field(
        default=None,
        description=(
            "Path of a PEM file holding the app registration's certificate and its private "
            "key, used instead of `app_password` (a signed client assertion)."
        ),
    )
    tenant_id: EntraGuid = Field(
        description=(
            "Your Entra tenant id. Tokens are requested from it (a single-tenant bot) and "
            "clicks from any other tenant are refused."
        )
    )
    api_url: HttpUrl = Field(
        default="https://smba.trafficmanager.net/teams/",
        description=(
            "The Bot Connector service URL for messages to people and channels until Teams "
            "has told signoff its own (every inbound activity carries it)."
        ),
    )
    openid_metadata_url: HttpUrl = Field(
        default="https://login.botframework.com/v1/.well-known/openidconfiguration",
        description=(
            "The Bot Connector's OpenID metadata; the signing keys are read from the sibling "
            "`keys` document. Must end in `/openidconfiguration`."
        ),
    )
    token_issuer: Annotated[str, AfterValidator(_non_empty_text)] = Field(
        default="https://api.botframework.com",
        description="The issuer inbound activity tokens must name.",
    )
    login_url: HttpUrl = Field(
        default="https://login.microsoftonline.com",
        description=(
            "The Entra login endpoint: app tokens come from "
            "`<login_url>/<tenant_id>/oauth2/v2.0/token`."
        ),
    )
    pacing: Annotated[TeamsPacingSettings, BeforeValidator(_none_as_empty)] = Field(
        default_factory=TeamsPacingSettings,
        description="How fast cards go to Teams: only ever slower than Teams allows.",
    )

    @field_validator("openid_metadata_url")
    @classmethod
    def _metadata_document(cls, value: str) -> str:
        if not value.rstrip("/").endswith("/openidconfiguration"):
            raise ValueError(
                "must end in /openidconfiguration (the signing keys are read from the sibling "
                "/keys document)"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_credential(self) -> TeamsSettings:
        if (self.app_password is None) == (self.certificate is None):
            raise ValueError("give exactly one of app_password and certificate")
        return self


EMAIL_DEFAULT_PORTS = {"starttls": 587, "implicit": 465, "none": 25}
"""The SMTP port for each ``tls`` mode when ``port`` is left out."""
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class EmailSettings(_Section):
    """The SMTP relay signoff mails cards through."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: Annotated[str, AfterValidator(_non_empty_text)] = Field(
        description="The SMTP relay's host name (`smtp.example.com`, `smtp.office365.com`)."
    )
    tls: Literal["starttls", "implicit", "none"] = Field(
        default="starttls",
        description=(
            "`starttls`: plain connection upgraded with STARTTLS, required (port 587); "
            "`implicit`: TLS from the first byte (port 465); `none`: no TLS, only for a relay "
            "on this machine (`localhost`, `127.0.0.1`, `::1`). The relay's certificate is "
            "always verified."
        ),
    )
    port: Annotated[WholeNumber, Field(ge=1, le=65535)] | None = Field(
        default=None,
        description=(
            "The relay's port; left out, 587 for `starttls`, 465 for `implicit`, 25 for `none`."
        ),
    )
    username: str | None = Field(
        default=None, description="The SMTP AUTH user name; left out, no AUTH."
    )
    password: Secret | None = Field(
        default=None, description="The SMTP AUTH password; required with `username`."
    )
    sender: EmailAddress = Field(
        alias="from",
        description=(
            "The address cards are sent from, and the domain of their Message-IDs; its "
            "domain's SPF, DKIM and DMARC should cover the relay."
        ),
    )
    ca_file: str | None = Field(
        default=None,
        description="A PEM file of the CA that signed a private relay's certificate.",
    )
    rate: Annotated[WholeNumber, Field(ge=1, le=6000)] = Field(
        default=30,
        description=(
            "Messages per minute through the relay at most, whoever they are for, spaced "
            "evenly (Exchange Online allows 30 a minute per mailbox)."
        ),
    )
    link_lifetime: Duration = Field(
        default=timedelta(hours=24),
        description=(
            "How long an Approve / Deny link works after it was mailed; never past the "
            "request's deadline. Reminders carry fresh links."
        ),
    )
    timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="How long one SMTP conversation may take before it is retried later.",
    )

    @field_validator("tls")
    @classmethod
    def _plaintext_only_on_this_machine(cls, value: str, info: ValidationInfo) -> str:
        host = str(info.data.get("host", "")).strip("[]").lower()
        if value == "none" and host not in _LOOPBACK_HOSTS:
            raise ValueError(
                f"tls: none sends mail and passwords in plain text, so it is only allowed for "
                f"a relay on this machine (localhost, 127.0.0.1, ::1), not {host!r}; use "
                "starttls or implicit"
            )
        return value

    @model_validator(mode="after")
    def _password_with_username(self) -> EmailSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both, or neither")
        return self

    @property
    def effective_port(self) -> int:
        """The port to connect to."""
        return self.port if self.port is not None else EMAIL_DEFAULT_PORTS[self.tls]


class WebSettings(_Section):
    """The built-in web inbox."""

    enabled: bool = Field(
        default=True,
        description="Serve the built-in web inbox; `web` in a notify list needs it.",
    )


class WebhooksSettings(_Section):
    """The signed webhooks signoff sends to agents' `callback_url`s."""

    allow: list[str] = Field(
        default_factory=list,
        description=(
            "Networks (CIDR, e.g. `10.0.0.0/8`, `127.0.0.1/32`) and host names that "
            "callbacks may reach although they are loopback, private, link-local or "
            "otherwise not public. By default only public addresses are called; a "
            "`callback_url` whose host is such an address is refused at create time, and "
            "every address a name resolves to is checked at send time."
        ),
    )

    @field_validator("allow")
    @classmethod
    def _check_allow(cls, value: list[str]) -> list[str]:
        for entry in value:
            if problem := allow_entry_problem(entry):
                raise ValueError(problem)
        return value


class PlatformsSettings(_Section):
    """Which platforms signoff talks to. A chat platform left out is not used."""

    slack: SlackSettings | None = Field(
        default=None, description="The Slack app signoff runs as; left out, Slack is not used."
    )
    telegram: TelegramSettings | None = Field(
        default=None,
        description="The Telegram bot signoff runs as; left out, Telegram is not used.",
    )
    discord: DiscordSettings | None = Field(
        default=None,
        description="The Discord bot signoff runs as; left out, Discord is not used.",
    )
    teams: TeamsSettings | None = Field(
        default=None,
        description="The Microsoft Teams bot signoff runs as; left out, Teams is not used.",
    )
    web: Annotated[WebSettings, BeforeValidator(_none_as_empty)] = Field(
        default_factory=WebSettings, description="The built-in web inbox."
    )
    email: EmailSettings | None = Field(
        default=None,
        description=(
            "The SMTP relay cards are mailed through; left out, email is not used. Email "
            "links open confirm pages in the web inbox, so it needs the web inbox."
        ),
    )

    @property
    def chat_platforms(self) -> frozenset[str]:
        """The chat platforms that are configured (``slack``, ``telegram``, ``discord``,
        ``teams``)."""
        configured = {
            "slack": self.slack,
            "telegram": self.telegram,
            "discord": self.discord,
            "teams": self.teams,
        }
        return frozenset(name for name, settings in configured.items() if settings is not None)

    @property
    def delivery_platforms(self) -> frozenset[str]:
        """Every configured platform cards are sent to: the chat platforms, and email."""
        email = {EMAIL_PLATFORM} if self.email is not None else set()
        return self.chat_platforms | email


# --- agents and policies -------------------------------------------------------------


class AgentSettings(_Section):
    """What one agent may ask for."""

    allow: list[Glob] = Field(
        default_factory=lambda: ["*"],
        description="Globs over the action names the agent may request; others are refused (403).",
    )
    max_open: Annotated[WholeNumber, Field(gt=0)] = Field(
        default=100,
        description="How many pending requests the agent may have at once; more are refused (429).",
    )
    rate: RateSettings = Field(
        default=DEFAULT_AGENT_RATE,
        description=(
            "The agent's own limit on the agent API (`{per_minute, burst}`); calls beyond it "
            "are answered 429 with `Retry-After`. Default: 600 a minute, bursts of 50."
        ),
    )


class ParamCondition(_Section):
    """A test on one value in a request's ``params``.

    In YAML it is either a literal (text, number, true/false, null or a list), meaning
    equality, or a one-key mapping ``{operator: operand}``, such as ``{gt: 1000}``.

    Attributes:
        op: the operator.
        operand: what the value is compared with.
    """

    op: PredicateOp
    operand: Any = None


_SCALAR = (str, int, float, bool, type(None))


def _param_condition(value: object) -> object:
    if isinstance(value, ParamCondition):
        return value
    if isinstance(value, list):
        _check_literal_list(value)
        return ParamCondition(op=PredicateOp.EQ, operand=value)
    if isinstance(value, _SCALAR):
        return ParamCondition(op=PredicateOp.EQ, operand=value)
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(_OPERATOR_HELP)
    ((op_name, operand),) = value.items()
    try:
        op = PredicateOp(op_name)
    except ValueError:
        raise ValueError(f"unknown operator {op_name!r}; {_OPERATOR_HELP}") from None
    _check_operand(op, operand)
    return ParamCondition(op=op, operand=operand)


_OPERATOR_HELP = (
    "expected a literal (text, number, true/false, null or a list) or one operator as "
    "{operator: operand}, with operator one of " + ", ".join(op.value for op in PredicateOp)
)


def _check_literal_list(values: list[Any]) -> None:
    if not all(isinstance(item, _SCALAR) for item in values):
        raise ValueError("list items must be text, numbers, true/false or null")


def _check_operand(op: PredicateOp, operand: Any) -> None:
    if op in (PredicateOp.IN, PredicateOp.NOT_IN):
        if not isinstance(operand, list):
            raise ValueError(f"{op.value} needs a list, such as {{{op.value}: [a, b]}}")
        _check_literal_list(operand)
    elif op in (PredicateOp.GT, PredicateOp.GTE, PredicateOp.LT, PredicateOp.LTE):
        if isinstance(operand, bool) or not isinstance(operand, int | float):
            raise ValueError(f"{op.value} needs a number, such as {{{op.value}: 1000}}")
    elif op is PredicateOp.EXISTS:
        if not isinstance(operand, bool):
            raise ValueError("exists needs true or false")
    elif op is PredicateOp.GLOB:
        if not isinstance(operand, str):
            raise ValueError('glob needs a pattern, such as {glob: "prod-*"}')
    elif isinstance(operand, list):
        _check_literal_list(operand)
    elif not isinstance(operand, _SCALAR):
        raise ValueError(f"{op.value} needs text, a number, true/false, null or a list")


def _check_param_path(value: str) -> str:
    if not _PARAM_PATH.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a params path: dot-separated keys without spaces, such as db.name"
        )
    return value


ParamPath = Annotated[str, AfterValidator(_check_param_path)]


class MatchSettings(_Section):
    """Which requests a policy governs; empty matches every request."""

    action: Globs | None = Field(
        default=None,
        description="A glob or a list of globs over the action name (`db.*`); any one may match.",
    )
    agent: Globs | None = Field(
        default=None,
        description="A glob or a list of globs over the requesting agent's name.",
    )
    params: dict[ParamPath, Annotated[ParamCondition, BeforeValidator(_param_condition)]] = Field(
        default_factory=dict,
        description=(
            "`{dotted.path: value}` for equality, or `{dotted.path: {op: operand}}` with op "
            "one of " + ", ".join(f"`{op.value}`" for op in PredicateOp) + "; all must hold. "
            'Values are compared by JSON type: text is never a number (`"10"` is not `10`), '
            "a number is never text, true/false is never a number. A predicate that cannot be "
            "judged (a missing value, a value of another type than the operand, such as text "
            "compared with `lte`) never lets an auto-approving policy match, and does let a "
            "stricter one match."
        ),
        json_schema_extra={REFERENCE_AS_ONE_VALUE: True},
    )

    @property
    def is_catch_all(self) -> bool:
        """Whether this match fits every request."""
        return not (self.action or self.agent or self.params)


class LevelSettings(_Section):
    """One escalation level of a policy."""

    approvers: Annotated[list[Name], Field(min_length=1)] = Field(
        description="Person and group names; groups stand for their members."
    )
    notify: Annotated[list[Name], Field(min_length=1)] = Field(
        description=(
            "Where cards go: channel names, `dm` (each approver of the level directly, on every "
            "configured platform where they have an id) or `web` (the web inbox)."
        )
    )
    timeout: Duration = Field(
        description=(
            "How long the level waits before the request escalates to the next level (or, "
            "at the last level, times out)."
        )
    )
    remind_every: Duration | None = Field(
        default=None,
        description=(
            "How often to remind the level's approvers while it waits; shorter than `timeout`."
        ),
    )

    @field_validator("remind_every")
    @classmethod
    def _shorter_than_timeout(
        cls, value: timedelta | None, info: ValidationInfo
    ) -> timedelta | None:
        timeout = info.data.get("timeout")
        if value is not None and isinstance(timeout, timedelta) and value >= timeout:
            raise ValueError(
                f"remind_every must be shorter than timeout ({format_duration(value)} is not "
                f"shorter than {format_duration(timeout)})"
            )
        return value


def _grant_match_path(value: str) -> str:
    rest = value.removeprefix(PARAMS_PREFIX)
    if rest == value or not _PARAM_PATH.fullmatch(rest):
        raise ValueError(
            f"{value!r} is not a params path: write params. and dot-separated keys without "
            "spaces, such as params.table"
        )
    return value


class GrantsSettings(_Section):
    """Time-boxed grants: an approver may approve a request for a while."""

    max: Duration = Field(
        description=(
            "The longest grant an approver may give (e.g. `1h`; at most 7 days). Approvers "
            "are offered 15 min and 1 h where shorter than this, and this."
        )
    )
    match: list[Annotated[str, AfterValidator(_grant_match_path)]] | None = Field(
        default=None,
        description=(
            "What a later request must share with the approved one to be approved by the "
            "grant, besides the agent and the action: the values at these params paths "
            "(`[params.table]`). Left out: all of params (the very same payload)."
        ),
    )

    @field_validator("max")
    @classmethod
    def _at_most_a_week(cls, value: timedelta) -> timedelta:
        if value > MAX_GRANT:
            raise ValueError(f"at most {format_duration(MAX_GRANT)}, not {format_duration(value)}")
        return value

    @field_validator("match")
    @classmethod
    def _some_paths(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("name at least one params path, or leave match out (all params)")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("each params path once")
        return value

    def rule(self) -> GrantRule:
        """The core's value for these settings."""
        return GrantRule(max=self.max, match=tuple(self.match or ()))


def _edits_rule(value: object) -> object:
    """Only the two words are accepted: YAML's ``yes``/``true`` must not mean "allowed"."""
    if value not in {rule.value for rule in EditsRule}:
        raise ValueError(f"edits must be `allowed` or `forbidden`, not {value!r}")
    return value


class PolicySettings(_Section):
    """One policy: which requests it governs and what they need. See DESIGN.md."""

    name: Name = Field(description="Unique among policies; recorded on each request.")
    match: Annotated[MatchSettings, BeforeValidator(_none_as_empty)] = Field(
        default_factory=MatchSettings,
        description="Which requests the policy governs; left out (or `{}`), every request.",
    )
    risk: Risk | None = Field(
        default=None,
        description=(
            "How much harm an approved request can do: `low`, `medium`, `high` or "
            "`critical`. Every card and the inbox show it first, as a coloured label."
        ),
    )
    describe: Annotated[str, AfterValidator(_describe_template)] | None = Field(
        default=None,
        description=(
            "One line saying what the request will do, shown first on every card and in the "
            'inbox: a template such as "Pay {params.amount.value} {params.amount.currency} '
            'to {params.payee.name}". Placeholders: `{action}`, `{agent}`, `{title}`, '
            "`{requested_by}` and `{params.<key>.<key>...}` (a number indexes a list); "
            "`{{` and `}}` are literal braces. A value the request lacks shows as "
            "`(no params.<key>)`."
        ),
    )
    decision: AutoDecision = Field(
        default=AutoDecision.ASK,
        description=(
            "`ask` people, or decide at once: `approve` or `deny` (audited like any decision)."
        ),
    )
    quorum: Annotated[WholeNumber, Field(ge=1)] = Field(
        default=1,
        description=(
            "How many distinct persons must approve (one person on two platforms counts once)."
        ),
    )
    require_reason: bool = Field(default=False, description="Whether a deny must say why.")
    confirm: bool | None = Field(
        default=None,
        description=(
            "Step-up: whether Approve needs a second, explicit confirmation that shows the "
            "describe line, the risk and the params (a modal in Slack and Discord, a second "
            "button in Telegram and Teams, a confirm step in the inbox and on email links). "
            "The request's receipt then says `confirmed: true`. Left out, `true` for "
            "`risk: critical` and `false` otherwise. Deny never needs confirming."
        ),
    )
    deny_repeat: Duration | None = Field(
        default=None,
        description=(
            "Denial memory: for this long after people deny a request (e.g. `30m`), the same "
            "agent asking the same thing again (the same action and params) is denied at "
            "once, citing that denial and its reason, and no one is asked. Left out, an "
            "agent may ask again at once. Only for policies that ask people; at most 30 days."
        ),
    )
    grants: GrantsSettings | None = Field(
        default=None,
        description=(
            'Time-boxed grants: an approver may answer "Approve for ..." (15 min, 1 h, up '
            "to `max`), and while the grant lasts the same agent's requests with the same "
            "action and params (or the same values at the `match` paths) are approved at "
            "once by it, audited and receipted as such. Under a quorum, every approval must "
            "ask for a grant (it lasts the shortest asked). A grant never approves a request "
            "made on behalf of one of its givers. Only for policies that ask people, and "
            "not with `confirm`."
        ),
    )
    levels: list[LevelSettings] = Field(
        default_factory=list,
        validate_default=True,
        description="Escalation levels, in order; required when `decision` is `ask`.",
    )
    on_timeout: TimeoutOutcome = Field(
        default=TimeoutOutcome.DENY,
        description=(
            "What silence means at the final deadline: `deny`, `expire`, or `approve` (only "
            "when written here: silence never approves by default)."
        ),
    )
    min_timeout: Duration | None = Field(
        default=None, description="The shortest timeout an agent may ask for."
    )
    max_timeout: Duration | None = Field(
        default=None, description="The longest timeout an agent may ask for."
    )
    edits: Annotated[EditsRule, BeforeValidator(_edits_rule)] = Field(
        default=EditsRule.FORBIDDEN,
        description=(
            "Whether an approver may change the request's `params` before approving "
            "(`allowed`) or only approve or deny them as asked (`forbidden`). An approval "
            "with edits binds the edited params: the receipt signs their hash, and a quorum "
            "counts only approvals of the same params. Edits are made in the web inbox; "
            "chat cards link there."
        ),
    )

    @field_validator("levels")
    @classmethod
    def _levels_when_asking(
        cls, value: list[LevelSettings], info: ValidationInfo
    ) -> list[LevelSettings]:
        if not value and info.data.get("decision") is AutoDecision.ASK:
            raise ValueError("required when decision is ask: who should be asked?")
        return value

    @field_validator("deny_repeat")
    @classmethod
    def _repeat_only_when_asking(
        cls, value: timedelta | None, info: ValidationInfo
    ) -> timedelta | None:
        if value is None:
            return value
        if info.data.get("decision") is not AutoDecision.ASK:
            raise ValueError(
                "only for a policy that asks people (decision: ask); this policy decides "
                "every request itself"
            )
        if value > MAX_DENY_REPEAT:
            raise ValueError(
                f"at most {format_duration(MAX_DENY_REPEAT)}, not {format_duration(value)}"
            )
        return value

    @field_validator("grants")
    @classmethod
    def _grants_only_when_asking(
        cls, value: GrantsSettings | None, info: ValidationInfo
    ) -> GrantsSettings | None:
        if value is not None and info.data.get("decision") is not AutoDecision.ASK:
            raise ValueError(
                "only for a policy that asks people (decision: ask); this policy decides "
                "every request itself"
            )
        confirm = info.data.get("confirm")
        if confirm is None:
            confirm = info.data.get("risk") is Risk.CRITICAL
        if value is not None and confirm:
            # A grant approves later requests with nobody shown them: the opposite of a
            # policy that wants each approval confirmed on sight.
            raise ValueError(
                "not with confirm (each approval confirmed on sight, the default for risk: "
                "critical): a grant approves later requests unseen; set confirm: false to "
                "allow grants here"
            )
        return value

    @field_validator("max_timeout")
    @classmethod
    def _not_below_min(cls, value: timedelta | None, info: ValidationInfo) -> timedelta | None:
        minimum = info.data.get("min_timeout")
        if value is not None and isinstance(minimum, timedelta) and value < minimum:
            raise ValueError(
                f"max_timeout ({format_duration(value)}) is shorter than min_timeout "
                f"({format_duration(minimum)})"
            )
        return value


# --- logging -------------------------------------------------------------------------


class LogSettings(_Section):
    """What signoff logs, and how each line looks."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info",
        description="The least severe level written: `debug`, `info`, `warning` or `error`.",
    )
    format: Literal["text", "json"] = Field(
        default="text",
        description=(
            "`text`: one readable line per record; `json`: one JSON object per line with "
            "`time`, `level`, `logger`, `message`, and `request_id` on every line about a "
            "request."
        ),
    )


# --- the whole file ------------------------------------------------------------------


def _only_version_one(value: object) -> object:
    if type(value) is not int:
        raise ValueError("only version 1 is supported: write version: 1")
    if value != 1:
        raise ValueError(f"only version 1 is supported, not {value}")
    return value


class SignoffSettings(_Section):
    """The whole config file. See DESIGN.md, "Public interfaces"."""

    version: Annotated[int, BeforeValidator(_only_version_one)] = Field(
        description="The config format version: `1`."
    )
    server: Annotated[ServerSettings, BeforeValidator(_none_as_empty)] = Field(
        default_factory=ServerSettings, description="The HTTP server."
    )
    database: Annotated[DatabaseSettings, BeforeValidator(_none_as_empty)] = Field(
        default_factory=DatabaseSettings,
        description="Where requests, votes, credentials and the audit log are stored.",
    )
    people: Annotated[
        dict[Name, Annotated[PersonSettings, BeforeValidator(_none_as_empty)]],
        BeforeValidator(_none_as_empty),
    ] = Field(
        default_factory=dict,
        description=(
            "Everyone who may approve: a name and at most one id per platform. None is fine: "
            "the web inbox knows people by sign-in."
        ),
    )
    groups: Annotated[
        dict[Name, Annotated[list[Name], Field(min_length=1)]], BeforeValidator(_none_as_empty)
    ] = Field(
        default_factory=dict,
        description="A list of person names, usable wherever approvers are listed.",
    )
    admins: Annotated[list[Name], BeforeValidator(_none_as_empty)] = Field(
        default_factory=list,
        description=(
            "People (names from `people`) who may read everything in the web inbox: every "
            "request, the whole history and the whole audit log. Everyone else sees only "
            "the requests they approve at some level, and only those requests' audit "
            "entries. Being an admin gives no vote."
        ),
    )
    channels: Annotated[dict[Name, ChannelSettings], BeforeValidator(_none_as_empty)] = Field(
        default_factory=dict,
        description="A named place to post cards, with an id on one or more platforms.",
    )
    platforms: Annotated[PlatformsSettings, BeforeValidator(_none_as_empty)] = Field(
        default_factory=PlatformsSettings,
        description="Which platforms signoff talks to, and their settings.",
    )
    agents: Annotated[
        dict[Name, Annotated[AgentSettings, BeforeValidator(_none_as_empty)]],
        BeforeValidator(_none_as_empty),
    ] = Field(
        default_factory=dict,
        description="What one agent may ask for; its API keys come from `signoff agents add NAME`.",
    )
    policies: Annotated[list[PolicySettings], Field(min_length=1)] = Field(
        description=(
            "Ordered rules: the first whose `match` fits a request governs it, and the last "
            "must match every request. Each policy's keys are listed below."
        )
    )
    webhooks: Annotated[WebhooksSettings, BeforeValidator(_none_as_empty)] = Field(
        default_factory=WebhooksSettings,
        description="Where agents' webhooks may be sent.",
    )
    log: Annotated[LogSettings, BeforeValidator(_none_as_empty)] = Field(
        default_factory=LogSettings,
        description=(
            "What signoff logs, and how each line looks. At every level, every configured "
            "token, signing secret, webhook secret and password, and every agent API key "
            "the API has accepted, is written as `[redacted]`, in lines from any library too."
        ),
    )

    def expand_approvers(self, names: Iterable[str]) -> tuple[str, ...]:
        """Person names for a list of person and group names.

        Groups are replaced by their members; the result keeps first-seen order and has no
        repeats. Names that are neither a person nor a group are left out (the config
        checks report them).
        """
        persons: dict[str, None] = {}
        for name in names:
            if name in self.people:
                persons.setdefault(name, None)
            elif name in self.groups:
                for member in self.groups[name]:
                    if member in self.people:
                        persons.setdefault(member, None)
        return tuple(persons)
