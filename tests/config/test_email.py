"""Email in config: platforms.email, people.NAME.email, mailing lists under channels, and
the whole-config rules that keep every approver able to decide."""

from __future__ import annotations

from approvals.directory import Destination, DestinationKind
from tests.config.helpers import load, problem_at, problems

ENV = {"EMAIL_PASSWORD": "relay-secret"}

EMAIL = """\
version: 1
people:
  alice: {email: Alice@Example.COM}
  bob: {telegram: 100002}
channels:
  ops-list: {email: ops@example.com}
platforms:
  email:
    host: smtp.example.com
    username: signoff@example.com
    password: "${EMAIL_PASSWORD}"
    from: signoff@example.com
policies:
  - name: default
    levels: [{approvers: [alice], notify: [dm, ops-list], timeout: 30m}]
"""


def test_email_settings_load_with_defaults_by_tls_mode() -> None:
    config = load(EMAIL, ENV)
    email = config.settings.platforms.email
    assert email is not None
    assert (email.tls, email.effective_port, email.rate) == ("starttls", 587, 30)
    assert email.sender == "signoff@example.com"
    assert email.password is not None
    assert email.password.get_secret_value() == "relay-secret"
    implicit = load(
        EMAIL.replace("host: smtp.example.com", "host: h.example\n    tls: implicit"), ENV
    )
    assert implicit.settings.platforms.email.effective_port == 465  # type: ignore[union-attr]


def test_dm_reaches_a_person_by_email_and_a_list_is_a_channel() -> None:
    directory = load(EMAIL, ENV).directory()
    assert "email" in directory.platforms
    found = directory.destinations(["dm", "ops-list"], ["alice"])
    assert found == [
        Destination("email", DestinationKind.USER, "Alice@example.com"),
        Destination("email", DestinationKind.CHANNEL, "ops@example.com"),
    ]


def test_a_bad_address_is_reported_at_its_key() -> None:
    text = EMAIL.replace("{email: Alice@Example.COM}", '{email: "Alice <alice@example.com>"}')
    assert "plain email address" in problem_at(problems(text, ENV), "people.alice.email").message


def test_a_password_must_come_from_the_environment() -> None:
    text = EMAIL.replace('"${EMAIL_PASSWORD}"', "hunter2")
    assert (
        "${EMAIL_PASSWORD}" in problem_at(problems(text, ENV), "platforms.email.password").message
    )


def test_plain_text_smtp_is_refused_for_a_remote_relay() -> None:
    text = EMAIL.replace("host: smtp.example.com", "host: smtp.example.com\n    tls: none")
    assert "only allowed for" in problem_at(problems(text, ENV), "platforms.email.tls").message
    local = EMAIL.replace("host: smtp.example.com", "host: 127.0.0.1\n    tls: none")
    assert load(local, ENV).settings.platforms.email.effective_port == 25  # type: ignore[union-attr]


def test_username_without_password_is_refused() -> None:
    text = EMAIL.replace('    password: "${EMAIL_PASSWORD}"\n', "")
    assert "go together" in problem_at(problems(text, ENV), "platforms.email").message


def test_a_level_that_notifies_only_a_mailing_list_is_refused() -> None:
    text = EMAIL.replace("notify: [dm, ops-list]", "notify: [ops-list]")
    found = problem_at(problems(text, ENV), "policies[0].levels[0].notify")
    assert "no Approve / Deny links" in found.message


def test_email_needs_the_web_inbox_for_its_links() -> None:
    text = EMAIL.replace("platforms:\n", "platforms:\n  web: {enabled: false}\n").replace(
        "notify: [dm, ops-list]", "notify: [dm]"
    )
    assert "web inbox" in problem_at(problems(text, ENV), "platforms.email").message


def test_an_email_channel_without_email_configured_is_refused() -> None:
    text = EMAIL.replace("platforms:\n  email:", "unused:\n  email:").split("unused:")[0]
    text += (
        "policies:\n  - name: default\n"
        "    levels: [{approvers: [alice], notify: [dm, web], timeout: 30m}]\n"
    )
    assert (
        "email is not configured"
        in problem_at(problems(text, ENV), "channels.ops-list.email").message
    )
