"""Each section's own rules: server, database, people, channels, platforms, policies."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from approvals.policy import PredicateOp
from config import SlackSettings, TelegramSettings
from config.schema import DatabaseSettings, ServerSettings
from tests.config.helpers import MINIMAL, load, problem_at, problems

SLACK_ENV = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SLACK_APP_TOKEN": "xapp-1"}


def test_defaults_fill_in_server_database_and_platforms() -> None:
    settings = load(MINIMAL).settings

    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.server.public_url == "http://127.0.0.1:8080"
    assert settings.database.url == "sqlite:///signoff.db"
    assert settings.database.async_url == "sqlite+aiosqlite:///signoff.db"
    assert settings.platforms.web.enabled is True
    assert settings.platforms.chat_platforms == frozenset()


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [("0.0.0.0:80", "0.0.0.0", 80), ("[::1]:8443", "::1", 8443), ("signoff:9000", "signoff", 9000)],
)
def test_listen_accepts_host_and_port(listen: str, host: str, port: int) -> None:
    server = ServerSettings(listen=listen)

    assert (server.host, server.port) == (host, port)


@pytest.mark.parametrize(
    "listen", ["8080", ":8080", "host:", "host:http", "::1:80", "h:0", "h:70000"]
)
def test_listen_rejects_anything_but_host_and_port(listen: str) -> None:
    with pytest.raises(ValidationError):
        ServerSettings(listen=listen)


def test_public_url_must_be_http_and_loses_its_trailing_slash() -> None:
    assert ServerSettings(public_url="https://signoff.example.com/").public_url == (
        "https://signoff.example.com"
    )
    found = problems(MINIMAL + "server: {public_url: signoff.example.com}\n")
    assert "http" in problem_at(found, "server.public_url").message


@pytest.mark.parametrize(
    ("url", "async_url"),
    [
        ("sqlite:///signoff.db", "sqlite+aiosqlite:///signoff.db"),
        ("sqlite:////var/lib/signoff.db", "sqlite+aiosqlite:////var/lib/signoff.db"),
        ("postgresql://signoff@db/signoff", "postgresql+asyncpg://signoff@db/signoff"),
        ("postgres://signoff@db/signoff", "postgresql+asyncpg://signoff@db/signoff"),
    ],
)
def test_plain_database_urls_are_accepted(url: str, async_url: str) -> None:
    assert DatabaseSettings(url=url).async_url == async_url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+asyncpg://db/signoff", "without a +driver"),
        ("sqlite+aiosqlite:///signoff.db", "without a +driver"),
        ("mysql://db/signoff", "unsupported database"),
        ("sqlite://", "SQLite URL"),
        ("signoff.db", "expected sqlite"),
    ],
)
def test_other_database_urls_are_rejected_with_a_reason(url: str, message: str) -> None:
    found = problems(MINIMAL + f'database: {{url: "{url}"}}\n')

    assert message in problem_at(found, "database.url").message


def test_database_password_must_come_from_the_environment() -> None:
    literal = MINIMAL + 'database: {url: "postgresql://signoff:hunter2@db/signoff"}\n'
    referenced = MINIMAL + 'database: {url: "postgresql://signoff:${PGPASS}@db/signoff"}\n'

    problem = problem_at(problems(literal), "database.url")
    assert "secrets only through ${ENV_VAR}" in problem.message
    assert "hunter2" not in problem.message
    assert load(referenced, {"PGPASS": "pw"}).settings.database.url.endswith(":pw@db/signoff")


def test_person_ids_are_normalised() -> None:
    text = MINIMAL.replace(
        "alice: {}", "alice: {slack: U0ALICE, telegram: 100001, discord: 200001}"
    )

    person = load(text).settings.people["alice"]

    assert person.discord == "200001"
    assert person.identities() == {"slack": "U0ALICE", "telegram": "100001", "discord": "200001"}


@pytest.mark.parametrize(
    ("identity", "key"),
    [
        ("slack: alice", "people.alice.slack"),
        ("telegram: '@alice'", "people.alice.telegram"),
        ("telegram: true", "people.alice.telegram"),
        ("telegram: -5", "people.alice.telegram"),
        ("discord: '@alice'", "people.alice.discord"),
        ("matrix: '@alice:example.org'", "people.alice.matrix"),
    ],
)
def test_bad_person_ids_are_reported_at_their_key(identity: str, key: str) -> None:
    found = problems(MINIMAL.replace("alice: {}", f"alice: {{{identity}}}"))

    assert problem_at(found, key).line == 3


def test_person_with_no_identities_may_be_written_without_a_value() -> None:
    assert load(MINIMAL.replace("alice: {}", "alice:")).settings.people["alice"].slack is None


def test_bad_names_are_reported_at_the_name() -> None:
    found = problems(MINIMAL.replace("alice: {}", "alice: {}\n  'Bad Name': {}"))

    problem = problem_at(found, 'people["Bad Name"]')
    assert problem.line == 4
    assert "not a valid name" in problem.message


def test_channel_needs_a_platform() -> None:
    found = problems(MINIMAL + "channels:\n  ops: {}\n")

    assert "at least one platform" in problem_at(found, "channels.ops").message


def test_slack_settings_defaults_and_url_normalisation() -> None:
    text = MINIMAL + (
        "platforms:\n"
        "  slack:\n"
        '    bot_token: "${SLACK_BOT_TOKEN}"\n'
        '    signing_secret: "${SLACK_SIGNING_SECRET}"\n'
        "    api_url: http://127.0.0.1:9999/api\n"
    )

    slack = load(text, SLACK_ENV).settings.platforms.slack

    assert slack is not None
    assert slack.mode == "http"
    assert slack.api_url == "http://127.0.0.1:9999/api/"
    assert slack.signing_secret is not None
    assert slack.signing_secret.get_secret_value() == "s"
    assert "xoxb-1" not in repr(slack)


def test_slack_http_mode_needs_signing_secret_and_socket_mode_needs_app_token() -> None:
    http = MINIMAL + 'platforms:\n  slack: {bot_token: "${SLACK_BOT_TOKEN}"}\n'
    socket = MINIMAL + 'platforms:\n  slack: {bot_token: "${SLACK_BOT_TOKEN}", mode: socket}\n'

    assert (
        "required when mode is http"
        in problem_at(problems(http, SLACK_ENV), "platforms.slack.signing_secret").message
    )
    assert (
        "required when mode is socket"
        in problem_at(problems(socket, SLACK_ENV), "platforms.slack.app_token").message
    )


def test_unknown_slack_mode_lists_the_choices() -> None:
    text = MINIMAL + 'platforms:\n  slack: {bot_token: "${SLACK_BOT_TOKEN}", mode: rtm}\n'

    message = problem_at(problems(text, SLACK_ENV), "platforms.slack.mode").message

    assert "'http' or 'socket'" in message


def test_telegram_webhook_mode_needs_a_valid_secret() -> None:
    def webhook(secret: str) -> str:
        return MINIMAL + (
            "platforms:\n"
            '  telegram: {bot_token: "${TG}", mode: webhook, webhook_secret: "${TG_SECRET}"}\n'
        )

    environ = {"TG": "1:abc"}
    assert load(webhook(""), {**environ, "TG_SECRET": "ok_secret-1"}).settings.platforms.telegram
    for bad in ("has space", "x" * 257):
        found = problems(webhook(""), {**environ, "TG_SECRET": bad})
        assert "1 to 256" in problem_at(found, "platforms.telegram.webhook_secret").message
    missing = MINIMAL + 'platforms:\n  telegram: {bot_token: "${TG}", mode: webhook}\n'
    assert problem_at(problems(missing, environ), "platforms.telegram.webhook_secret")


@pytest.mark.parametrize(
    "secret",
    ["literal-token", "xoxb-${PART}", "$${SLACK_BOT_TOKEN}", "12345"],
)
def test_literal_secret_is_refused(secret: str) -> None:
    text = MINIMAL + (
        "platforms:\n"
        f'  slack: {{bot_token: "{secret}", signing_secret: "${{SLACK_SIGNING_SECRET}}"}}\n'
    )

    found = problems(text, {**SLACK_ENV, "PART": "x"})

    problem = problem_at(found, "platforms.slack.bot_token")
    assert problem.line == 8
    assert problem.message.startswith("secrets only through ${ENV_VAR}")
    assert "${SLACK_BOT_TOKEN}" in problem.message


def test_empty_secret_variable_is_reported() -> None:
    text = MINIMAL + 'platforms:\n  discord: {bot_token: "${DISCORD_BOT_TOKEN}"}\n'

    found = problems(text, {"DISCORD_BOT_TOKEN": ""})

    assert "is set but empty" in problem_at(found, "platforms.discord.bot_token").message


def test_settings_built_in_code_take_literal_secrets() -> None:
    slack = SlackSettings(bot_token=SecretStr("xoxb-test"), signing_secret=SecretStr("s"))
    telegram = TelegramSettings.model_validate({"bot_token": "1:abc"})

    assert slack.bot_token.get_secret_value() == "xoxb-test"
    assert telegram.api_url == "https://api.telegram.org/bot"


def test_agent_defaults_allow_everything() -> None:
    agent = load(MINIMAL + "agents:\n  helper:\n").settings.agents["helper"]

    assert (agent.allow, agent.max_open) == (["*"], 100)


@pytest.mark.parametrize("max_open", ["0", "-1", "true", "1.5"])
def test_agent_max_open_must_be_a_positive_whole_number(max_open: str) -> None:
    found = problems(MINIMAL + f"agents:\n  helper: {{max_open: {max_open}}}\n")

    assert problem_at(found, "agents.helper.max_open").line == 8


def test_policy_defaults() -> None:
    (policy,) = load(MINIMAL).policy_set().policies

    assert policy.decision.value == "ask"
    assert (policy.quorum, policy.require_reason, policy.on_timeout.value) == (1, False, "deny")


def test_asking_policy_needs_levels_but_automatic_ones_do_not() -> None:
    asking = MINIMAL.replace(
        "    levels: [{approvers: [alice], notify: [web], timeout: 30m}]\n", ""
    )
    automatic = asking.replace("- name: default", "- name: default\n    decision: deny")

    problem = problem_at(problems(asking), "policies[0].levels")
    assert problem.line == 5
    assert load(automatic).policy_set().policies[0].levels == ()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("decision", "maybe"),
        ("on_timeout", "retry"),
        ("quorum", "0"),
        ("quorum", "two"),
        ("require_reason", "perhaps"),
        ("min_timeout", "soon"),
    ],
)
def test_bad_policy_values_are_reported_at_their_key(field: str, value: str) -> None:
    text = MINIMAL.replace("- name: default", f"- name: default\n    {field}: {value}")

    assert problem_at(problems(text), f"policies[0].{field}").line == 6


def _policy_with_match(match: str) -> str:
    return (
        "version: 1\n"
        "people:\n"
        "  alice: {}\n"
        "policies:\n"
        "  - name: matched\n"
        f"    match: {match}\n"
        "    levels: [{approvers: [alice], notify: [web], timeout: 30m}]\n"
        "  - name: default\n"
        "    levels: [{approvers: [alice], notify: [web], timeout: 30m}]\n"
    )


def test_match_accepts_a_glob_or_a_list_of_globs() -> None:
    single = load(_policy_with_match('{action: "db.*", agent: deploy-bot}'))
    several = load(_policy_with_match('{action: ["db.*", "deploy.*"]}'))

    assert single.policy_set().policies[0].match.actions == ("db.*",)
    assert single.policy_set().policies[0].match.agents == ("deploy-bot",)
    assert several.policy_set().policies[0].match.actions == ("db.*", "deploy.*")


def test_match_params_literals_mean_equality_and_mappings_name_an_operator() -> None:
    match = (
        "{params: {env: production, tags: [a, b], amount: {gte: 10.5}, "
        "region: {not_in: [eu]}, name: {glob: 'prod-*'}, dry_run: {exists: false}, "
        "db.name: {ne: main}}}"
    )

    predicates = load(_policy_with_match(match)).policy_set().policies[0].match.params

    assert [(p.path, p.op, p.operand) for p in predicates] == [
        ("env", PredicateOp.EQ, "production"),
        ("tags", PredicateOp.EQ, ["a", "b"]),
        ("amount", PredicateOp.GTE, 10.5),
        ("region", PredicateOp.NOT_IN, ["eu"]),
        ("name", PredicateOp.GLOB, "prod-*"),
        ("dry_run", PredicateOp.EXISTS, False),
        ("db.name", PredicateOp.NE, "main"),
    ]


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("{gt: 'a lot'}", "gt needs a number"),
        ("{lte: true}", "lte needs a number"),
        ("{in: eu}", "in needs a list"),
        ("{exists: 1}", "exists needs true or false"),
        ("{glob: 5}", "glob needs a pattern"),
        ("{between: [1, 2]}", "unknown operator 'between'"),
        ("{gt: 1, lt: 5}", "one operator"),
        ("[{a: 1}]", "list items must be"),
    ],
)
def test_bad_params_conditions_say_what_is_expected(condition: str, message: str) -> None:
    found = problems(_policy_with_match(f"{{params: {{amount: {condition}}}}}"))

    problem = problem_at(found, "policies[0].match.params.amount")
    assert problem.line == 6
    assert message in problem.message


def test_empty_action_list_is_refused_rather_than_matching_everything() -> None:
    found = problems(_policy_with_match("{action: []}"))

    assert problem_at(found, "policies[0].match.action").line == 6
