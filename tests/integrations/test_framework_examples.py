"""The OpenAI Agents SDK and LangChain examples run exactly as examples/README.md shows
them, from a fresh copy of the checkout, against a real server, decided in the web inbox.

``tests/examples/test_examples.py`` holds the README's commands and the harness (the copy,
the shell environment of the ``export`` lines); these tests run the two framework examples
with it: one approved, one denied.
"""

from __future__ import annotations

import re

import pytest

from tests.examples.test_examples import (
    LANGCHAIN,
    OPENAI_AGENTS,
    ROOT,
    WAITING,
    Approvers,
    clone,
    start,
)
from tests.integrations.frameworks_world import frameworks_server

__all__ = ["clone", "frameworks_server"]

TITLE = 'drop_table(table="events_2019")'


@pytest.mark.parametrize("command", [OPENAI_AGENTS, LANGCHAIN])
def test_each_framework_example_shows_its_command_in_its_header(command):
    (example,) = re.findall(r"examples/(\S+)", command)
    header = (ROOT / "examples" / example).read_text(encoding="utf-8")
    assert re.search(rf"^[#\s]*{re.escape(command)}$", header, flags=re.MULTILINE)


def test_openai_agents_example_drops_the_table_once_alice_approves(frameworks_server, clone):
    approvers = Approvers(frameworks_server, [(TITLE, "approve", "alice")])
    agent = start(OPENAI_AGENTS, clone, frameworks_server)
    out, err = agent.communicate(timeout=WAITING)
    approvers.finish()
    assert agent.returncode == 0, err
    assert out.splitlines() == [
        'waiting for a person\'s decision on drop_table({"table":"events_2019"})',
        "tool: dropped analytics.events_2019",
        "agent: I asked to drop the table; see the tool's answer above.",
    ]
    clone.assert_left_as_it_was()


def test_langchain_example_drops_nothing_when_bob_denies(frameworks_server, clone):
    approvers = Approvers(frameworks_server, [(TITLE, "deny", "bob")])
    agent = start(LANGCHAIN, clone, frameworks_server)
    out, err = agent.communicate(timeout=WAITING)
    approvers.finish()
    assert agent.returncode == 1, err
    waiting, told, said = out.splitlines()
    assert waiting == "waiting for a person's decision on drop_table"
    assert told.startswith(
        "tool: User rejected the tool call for `drop_table` with reason: Not run: denied by bob"
    )
    assert said == "agent: I asked to drop the table; see the tool's answer above."
    clone.assert_left_as_it_was()
