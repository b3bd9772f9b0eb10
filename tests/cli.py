"""Running the installed ``signoff`` command from tests, as a person at a shell would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

SIGNOFF = Path(sys.executable).with_name("signoff")
"""The ``signoff`` command of the environment the tests run in."""


def signoff_environ(
    env: Mapping[str, str] | None = None, unset: Iterable[str] = ()
) -> dict[str, str]:
    """The tests' environment without ``SIGNOFF_CONFIG`` (so that ``signoff`` reads only the
    config a test names) and without the ``unset`` variables, then ``env`` on top."""
    dropped = {"SIGNOFF_CONFIG", *unset}
    environment = {k: v for k, v in os.environ.items() if k not in dropped}
    environment.update(env or {})
    return environment


def run_signoff(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    unset: Iterable[str] = (),
    signoff: Path = SIGNOFF,
) -> subprocess.CompletedProcess[str]:
    """``signoff ARGS`` to completion (at most a minute), its output captured as text.

    It runs with :func:`signoff_environ` (``env``, ``unset``); ``signoff`` is the command to
    run, by default the one of the tests' environment.
    """
    return subprocess.run(
        [str(signoff), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=signoff_environ(env, unset),
        timeout=60,
        check=False,
    )
