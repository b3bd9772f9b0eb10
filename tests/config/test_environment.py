"""${ENV_VAR} substitution: where it applies, and how missing variables are reported."""

from __future__ import annotations

from config.environment import EnvText, substitute
from tests.config.helpers import MINIMAL, load, problem_at, problems


def with_database(url: str) -> str:
    """The minimal config with ``database.url`` (written on line 8) set to ``url``."""
    return MINIMAL + f'database:\n  url: "{url}"\n'


def test_text_without_references_is_returned_unchanged() -> None:
    result = substitute("plain $HOME text", {"HOME": "/root"})

    assert result.value == "plain $HOME text"
    assert not isinstance(result.value, EnvText)


def test_references_are_replaced_inside_longer_text() -> None:
    result = substitute("sqlite:///${DIR}/${NAME}.db", {"DIR": "/var/lib", "NAME": "signoff"})

    assert result.value == "sqlite:////var/lib/signoff.db"
    assert isinstance(result.value, EnvText)
    assert result.value.variables == ("DIR", "NAME")
    assert not result.value.is_single_reference


def test_a_whole_reference_is_marked_as_such() -> None:
    result = substitute("${TOKEN}", {"TOKEN": "secret"})

    assert isinstance(result.value, EnvText)
    assert result.value.is_single_reference
    assert result.value.template == "${TOKEN}"


def test_double_dollar_writes_a_literal_reference() -> None:
    result = substitute("cost: $${AMOUNT}", {"AMOUNT": "5"})

    assert result.value == "cost: ${AMOUNT}"
    assert not result.missing


def test_missing_and_malformed_references_are_collected() -> None:
    result = substitute("${SET} ${UNSET} ${1BAD} ${OPEN", {"SET": "x"})

    assert result.missing == ("UNSET",)
    assert result.malformed == ("${1BAD}", "${OPEN")


def test_env_values_fill_in_settings() -> None:
    loaded = load(
        with_database("sqlite:///${DATA_DIR}/signoff.db"),
        {"DATA_DIR": "/srv/signoff"},
    )

    assert loaded.settings.database.url == "sqlite:////srv/signoff/signoff.db"
    assert type(loaded.settings.database.url) is str


def test_env_value_can_supply_a_number() -> None:
    text = MINIMAL.replace("alice: {}", 'alice: {telegram: "${ALICE_TELEGRAM}"}')

    loaded = load(text, {"ALICE_TELEGRAM": "100001"})

    assert loaded.settings.people["alice"].telegram == 100001


def test_missing_variable_names_variable_line_and_key() -> None:
    found = problems(with_database("sqlite:///${SIGNOFF_TEST_UNSET_VAR}/x.db"))

    assert len(found) == 1
    problem = problem_at(found, "database.url")
    assert problem.line == 8
    assert problem.message == "environment variable SIGNOFF_TEST_UNSET_VAR is not set"


def test_every_missing_variable_is_reported_in_one_pass() -> None:
    text = MINIMAL + (
        "platforms:\n"
        '  telegram: {bot_token: "${NO_TELEGRAM}"}\n'
        '  discord: {bot_token: "${NO_DISCORD}"}\n'
    )

    found = problems(text)

    assert [(p.line, p.key_path) for p in found] == [
        (8, "platforms.telegram.bot_token"),
        (9, "platforms.discord.bot_token"),
    ]


def test_malformed_reference_is_reported() -> None:
    found = problems(with_database("sqlite:///${not closed"))

    assert "not a valid ${ENV_VAR} reference" in problem_at(found, "database.url").message


def test_references_in_keys_and_comments_are_left_alone() -> None:
    text = MINIMAL.replace("alice: {}", "alice: {}  # ${NOT_A_REFERENCE}")

    assert load(text).settings.people["alice"].slack is None
