"""``signoff run`` when the approvers edited the command: the edited argv runs (never the
original), only as far as the receipt binds it, and what changed is printed; an edit of
the directory or the params' shape runs nothing."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from bot.cli_client import ApprovalClient, ClientSettings, run_command
from tests.client.server import ServedSignoff, unique_title


def approve_with_edits_when_asked(server: ServedSignoff, title: str, edit: Any) -> threading.Thread:
    def approve() -> None:
        asked = server.pending_titled(title)
        server.approve_with_edits(asked["id"], edit(asked["params"]))

    thread = threading.Thread(target=approve, daemon=True)
    thread.start()
    return thread


def run(server: ServedSignoff, title: str, argv: list[str]) -> int:
    client = ApprovalClient(ClientSettings(base_url=server.base_url, api_key=server.api_key))
    return run_command(
        argv,
        action="edit.script",
        title=title,
        details="",
        requested_by=None,
        timeout_seconds=None,
        client=client,
    )


def test_run_runs_the_edited_command_and_says_what_changed(
    signoff_server, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    title = unique_title("run edited")
    person = approve_with_edits_when_asked(
        signoff_server, title, lambda params: params | {"argv": ["touch", "edited.txt"]}
    )

    code = run(signoff_server, title, ["touch", "original.txt"])
    person.join(timeout=30)

    assert code == 0
    assert (tmp_path / "edited.txt").exists()
    assert not (tmp_path / "original.txt").exists()
    err = " ".join(capsys.readouterr().err.split())
    assert 'approvers edited the command: argv[1]: "original.txt" -> "edited.txt"' in err
    assert "running with edits touch edited.txt" in err


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda params: params | {"cwd": "/"}, "changed the directory"),
        (lambda params: {"argv": params["argv"]}, "must keep exactly argv and cwd"),
        (lambda params: params | {"argv": []}, "not a non-empty list of words"),
        (lambda params: params | {"argv": ["no-such-program-here"]}, "is not found"),
    ],
    ids=["another-directory", "cwd-removed", "empty-argv", "unknown-program"],
)
def test_run_refuses_edits_it_cannot_run_as_approved(
    signoff_server, tmp_path, monkeypatch, capsys, edit, words
):
    monkeypatch.chdir(tmp_path)
    title = unique_title("run edited refused")
    person = approve_with_edits_when_asked(signoff_server, title, edit)

    code = run(signoff_server, title, ["touch", "original.txt"])
    person.join(timeout=30)

    assert code == 2
    assert os.listdir(tmp_path) == []
    err = " ".join(capsys.readouterr().err.split())
    assert "refusing to run" in err
    assert words in err
