"""Microsoft Teams in the config: platforms.teams, people's Entra ids, Teams channels.

A good file loads into a directory that routes to Teams; each kind of mistake is refused
at its file, line and key; ``signoff config check`` and ``signoff policy explain`` show
Teams like any other platform.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from approvals.directory import Destination, DestinationKind
from bot.explain import explain, render
from config import ConfigError, load_config
from tests.cli import run_signoff
from tests.config.helpers import load, problem_at, problems

APP_ID = "0f6a1b2c-3d4e-4f50-8a9b-c0d1e2f3a4b5"
ALICE_OBJECT_ID = "8F3C1A52-6D0E-4B7A-9C1E-2F5D7A9B0C11"
OPS_CHANNEL = "19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2"
TEAMS_ENVIRON = {"TEAMS_APP_PASSWORD": "teams-client-secret"}

TEAMS_CONFIG = f"""\
version: 1
server:
  public_url: https://signoff.example.com:8443/
platforms:
  teams:
    app_id: {APP_ID}
    app_password: "${{TEAMS_APP_PASSWORD}}"
    tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
people:
  alice: {{teams: {ALICE_OBJECT_ID}}}
  bob: {{}}
channels:
  ops: {{teams: "{OPS_CHANNEL}"}}
policies:
  - name: default
    levels: [{{approvers: [alice, bob], notify: [ops, dm], timeout: 30m}}]
"""
"""A whole Teams config; the tests change one line of it at a time."""

PLATFORM_LINES = TEAMS_CONFIG[TEAMS_CONFIG.index("platforms:") : TEAMS_CONFIG.index("people:")]


TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def with_line(old: str, new: str, text: str = TEAMS_CONFIG) -> str:
    """``text`` with the one line holding ``old`` replaced by ``new`` (or dropped if empty)."""
    lines = text.splitlines(keepends=True)
    matching = [index for index, line in enumerate(lines) if old in line]
    assert len(matching) == 1, f"{old!r} is on lines {matching}"
    lines[matching[0]] = new + "\n" if new else ""
    return "".join(lines)


# --- a good file ---------------------------------------------------------------------


def test_teams_config_file_loads_into_a_directory_that_routes_to_teams(tmp_path: Path) -> None:
    path = tmp_path / "signoff.yaml"
    path.write_text(TEAMS_CONFIG, encoding="utf-8")

    loaded = load_config(path, environ=TEAMS_ENVIRON)

    teams = loaded.settings.platforms.teams
    assert teams is not None
    assert teams.app_id == APP_ID
    assert teams.app_password is not None
    assert teams.app_password.get_secret_value() == "teams-client-secret"
    assert teams.certificate is None
    directory = loaded.directory()
    assert directory.platforms == frozenset({"teams"})
    assert dict(directory.people["alice"].identities) == {"teams": ALICE_OBJECT_ID.lower()}
    assert directory.person_for("teams", ALICE_OBJECT_ID.lower()) == directory.people["alice"]
    assert directory.channels["ops"] == (
        Destination("teams", DestinationKind.CHANNEL, OPS_CHANNEL),
    )
    assert directory.destinations(["ops", "dm"], ["alice", "bob"]) == [
        Destination("teams", DestinationKind.CHANNEL, OPS_CHANNEL),
        Destination("teams", DestinationKind.USER, ALICE_OBJECT_ID.lower()),
    ]


def test_teams_defaults_point_at_the_public_cloud() -> None:
    teams = load(TEAMS_CONFIG, TEAMS_ENVIRON).settings.platforms.teams

    assert teams is not None
    assert teams.api_url == "https://smba.trafficmanager.net/teams/"
    assert teams.openid_metadata_url == (
        "https://login.botframework.com/v1/.well-known/openidconfiguration"
    )
    assert teams.token_issuer == "https://api.botframework.com"
    assert teams.login_url == "https://login.microsoftonline.com"


def test_object_ids_differing_only_in_case_are_one_identity() -> None:
    text = with_line("  bob: {}", f"  bob: {{teams: {ALICE_OBJECT_ID.lower()}}}")

    problem = problem_at(problems(text, TEAMS_ENVIRON), "people.bob.teams")

    assert problem.line == 11
    assert "already alice's" in problem.message


def test_certificate_instead_of_a_password_loads() -> None:
    text = with_line("app_password:", "    certificate: /etc/signoff/teams.pem")

    teams = load(text).settings.platforms.teams

    assert teams is not None
    assert teams.certificate == "/etc/signoff/teams.pem"
    assert teams.app_password is None


# --- bad input, each at its file, line and key -----------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "alice@example.com",
        '"Alice Smith"',
        "8f3c1a52-6d0e-4b7a-9c1e",
        '"{8f3c1a52-6d0e-4b7a-9c1e-2f5d7a9b0c11}"',
    ],
    ids=["e-mail", "display-name", "short-guid", "braces"],
)
def test_person_teams_id_must_be_an_entra_object_id(written: str) -> None:
    text = with_line("  alice:", f"  alice: {{teams: {written}}}")

    problem = problem_at(problems(text, TEAMS_ENVIRON), "people.alice.teams")

    assert problem.source == "test.yaml"
    assert problem.line == 10
    assert "the user's Object ID" in problem.message
    assert "Object ID" in problem.message


@pytest.mark.parametrize(
    "written",
    ["General", "4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2", "19:abc@thread.tacv2;x", "19:x"],
    ids=["channel-name", "no-19-prefix", "semicolon", "no-thread-suffix"],
)
def test_channel_teams_id_must_be_a_teams_channel_id(written: str) -> None:
    text = with_line("  ops:", f'  ops: {{teams: "{written}"}}')

    found = problems(text, TEAMS_ENVIRON)

    problem = problem_at(found, "channels.ops.teams")
    assert problem.line == 13
    assert "expected a Teams channel id" in problem.message
    assert "@thread.tacv2" in problem.message


def test_app_password_written_literally_is_refused_without_echoing_it() -> None:
    text = with_line("app_password:", "    app_password: hunter2-literal")

    problem = problem_at(problems(text, TEAMS_ENVIRON), "platforms.teams.app_password")

    assert problem.line == 7
    assert "${TEAMS_APP_PASSWORD}" in problem.message
    assert "environment" in problem.message
    assert "hunter2" not in problem.message


def test_app_password_variable_must_be_set_and_not_empty() -> None:
    unset = problem_at(problems(TEAMS_CONFIG, {}), "platforms.teams.app_password")
    empty = problem_at(
        problems(TEAMS_CONFIG, {"TEAMS_APP_PASSWORD": ""}), "platforms.teams.app_password"
    )

    assert unset.line == empty.line == 7
    assert "TEAMS_APP_PASSWORD is not set" in unset.message
    assert "TEAMS_APP_PASSWORD is set but empty" in empty.message


@pytest.mark.parametrize(
    "credentials",
    [
        '    app_password: "${TEAMS_APP_PASSWORD}"\n    certificate: /etc/signoff/teams.pem',
        "",
        "    certificate:",
    ],
    ids=["both", "neither", "certificate-null"],
)
def test_exactly_one_of_app_password_and_certificate(credentials: str) -> None:
    text = with_line("app_password:", credentials)

    problem = problem_at(problems(text, TEAMS_ENVIRON), "platforms.teams")

    assert problem.line == 5
    assert "exactly one of app_password and certificate" in problem.message


@pytest.mark.parametrize("written", ['""', '"   "'], ids=["empty", "blank"])
def test_empty_certificate_path_is_not_a_credential(written: str) -> None:
    text = with_line("app_password:", f"    certificate: {written}")

    problem = problem_at(problems(text), "platforms.teams.certificate")

    assert problem.line == 7
    assert "must not be empty" in problem.message


@pytest.mark.parametrize(
    "url",
    [
        "https://login.botframework.com/v1/.well-known/keys",
        "https://login.botframework.com/v1/.well-known/openid-configuration",
        "https://login.botframework.com/v1/.well-known/openidconfiguration.json",
    ],
    ids=["keys", "hyphenated", "json-suffix"],
)
def test_openid_metadata_url_must_end_in_openidconfiguration(url: str) -> None:
    text = with_line("tenant_id:", f"    openid_metadata_url: {url}\n    tenant_id: {TENANT}")

    problem = problem_at(problems(text, TEAMS_ENVIRON), "platforms.teams.openid_metadata_url")

    assert problem.line == 8
    assert "must end in /openidconfiguration" in problem.message


def test_openid_metadata_url_with_a_trailing_slash_is_accepted_without_it() -> None:
    url = "https://login.example.test/v1/.well-known/openidconfiguration/"
    text = with_line("tenant_id:", f"    openid_metadata_url: {url}\n    tenant_id: {TENANT}")

    teams = load(text, TEAMS_ENVIRON).settings.platforms.teams

    assert teams is not None
    assert teams.openid_metadata_url == url.rstrip("/")


def test_teams_channel_without_platforms_teams_is_a_finding() -> None:
    text = TEAMS_CONFIG.replace(PLATFORM_LINES, "")

    found = problems(text)

    problem = problem_at(found, "channels.ops.teams")
    assert problem.line == 8
    assert "teams is not configured" in problem.message
    assert "add it under platforms" in problem.message


def test_person_with_a_teams_id_needs_no_platforms_teams() -> None:
    """An identity on an unconfigured platform is harmless: dm skips it."""
    text = TEAMS_CONFIG.replace(PLATFORM_LINES, "").replace(
        "notify: [ops, dm]", "notify: [dm, web]"
    )
    text = with_line("  ops:", "", with_line("channels:", "", text))

    loaded = load(text)

    assert loaded.directory().platforms == frozenset()
    assert loaded.directory().destinations(["dm"], ["alice"]) == []


@pytest.mark.parametrize("key", ["tenant_id", "app_id"])
def test_tenant_id_and_app_id_are_required(key: str) -> None:
    text = with_line(f"    {key}:", "")

    problem = problem_at(problems(text, TEAMS_ENVIRON), f"platforms.teams.{key}")

    assert problem.line == 5
    assert "required but missing" in problem.message


@pytest.mark.parametrize("key", ["tenant_id", "app_id"])
def test_tenant_id_and_app_id_must_be_guids(key: str) -> None:
    text = with_line(f"    {key}:", f"    {key}: contoso.onmicrosoft.com")

    problem = problem_at(problems(text, TEAMS_ENVIRON), f"platforms.teams.{key}")

    assert "expected a GUID" in problem.message
    assert "contoso.onmicrosoft.com" in problem.message


def test_tenant_id_and_app_id_are_compared_in_lower_case() -> None:
    text = with_line("    tenant_id:", "    tenant_id: 72F988BF-86F1-41AF-91AB-2D7CD011DB47")

    teams = load(text, TEAMS_ENVIRON).settings.platforms.teams

    assert teams is not None
    assert teams.tenant_id == "72f988bf-86f1-41af-91ab-2d7cd011db47"


def test_every_teams_problem_is_reported_in_one_pass() -> None:
    text = with_line("app_password:", "    app_password: literal")
    text = with_line("  alice:", "  alice: {teams: alice@example.com}", text)
    text = with_line("  ops:", '  ops: {teams: "General"}', text)

    with pytest.raises(ConfigError) as caught:
        load(text, TEAMS_ENVIRON)

    assert [(p.line, p.key_path) for p in caught.value.problems] == [
        (7, "platforms.teams.app_password"),
        (10, "people.alice.teams"),
        (13, "channels.ops.teams"),
    ]


# --- what the commands show ----------------------------------------------------------


def test_explain_sends_cards_to_the_teams_channel_and_the_persons_teams_chat() -> None:
    result = explain(load(TEAMS_CONFIG, TEAMS_ENVIRON), action="deploy.web")

    (level,) = result.levels
    assert [(plan.name, [t.describe() for t in plan.targets]) for plan in level.notify] == [
        ("ops", [f"teams channel {OPS_CHANNEL}"]),
        ("dm", [f"teams user {ALICE_OBJECT_ID.lower()} (alice)"]),
    ]
    assert level.notify[1].notes == (
        "bob has no id on a configured chat platform: reached in the web inbox",
    )
    assert f"dm: teams user {ALICE_OBJECT_ID.lower()} (alice)" in render(result)


def signoff(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_signoff(*args, cwd=cwd, env=env, unset=TEAMS_ENVIRON)


def test_config_check_accepts_a_teams_config_and_names_the_platform(tmp_path: Path) -> None:
    path = tmp_path / "signoff.yaml"
    path.write_text(TEAMS_CONFIG, encoding="utf-8")

    result = signoff("config", "check", str(path), cwd=tmp_path, env=TEAMS_ENVIRON)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: OK (2 people, 1 policies, platforms: teams)\n"


def test_config_check_reports_a_bad_teams_config_at_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "signoff.yaml"
    text = with_line("  alice:", "  alice: {teams: alice@example.com}")
    path.write_text(with_line("app_password:", "    app_password: literal", text))

    result = signoff("config", "check", str(path), cwd=tmp_path, env=TEAMS_ENVIRON)

    assert result.returncode == 2
    assert f"{path}:7: platforms.teams.app_password: secrets only through" in result.stderr
    assert f"{path}:10: people.alice.teams: expected a GUID" in result.stderr
    assert f"{path}: 2 problems found" in result.stderr
    assert "literal" not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_policy_explain_lists_the_teams_places_cards_go(tmp_path: Path) -> None:
    path = tmp_path / "signoff.yaml"
    path.write_text(TEAMS_CONFIG, encoding="utf-8")
    args = ("policy", "explain", "--config", str(path), "--action", "deploy.web")

    text = signoff(*args, cwd=tmp_path, env=TEAMS_ENVIRON)
    as_json = signoff(*args, "--json", cwd=tmp_path, env=TEAMS_ENVIRON)

    assert text.returncode == 0, text.stderr
    assert f"    ops: teams channel {OPS_CHANNEL}\n" in text.stdout
    assert f"    dm: teams user {ALICE_OBJECT_ID.lower()} (alice)\n" in text.stdout
    assert as_json.returncode == 0, as_json.stderr
    notify = json.loads(as_json.stdout)["levels"][0]["notify"]
    assert [(entry["name"], entry["targets"]) for entry in notify] == [
        ("ops", [{"platform": "teams", "kind": "channel", "id": OPS_CHANNEL, "person": None}]),
        (
            "dm",
            [
                {
                    "platform": "teams",
                    "kind": "user",
                    "id": ALICE_OBJECT_ID.lower(),
                    "person": "alice",
                }
            ],
        ),
    ]
