"""Running the installed ``signoff`` command from tests, as a person at a shell would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

SIGNOFF = Path(sys.executable).with_name("signoff")
"""The ``signoff`` command of the environment the tests run in."""


def run_signoff(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    unset: Iterable[str] = (),
) -> subprocess.CompletedProcess[str]:
    """``signoff ARGS`` to completion (at most a minute), its output captured as text.

    It gets the tests' environment without ``SIGNOFF_CONFIG`` (so that it reads only the
    config a test names) and without the ``unset`` variables, then ``env`` on top.
    """
    dropped = {"SIGNOFF_CONFIG", *unset}
    environment = {k: v for k, v in os.environ.items() if k not in dropped}
    environment.update(env or {})
    return subprocess.run(
        [str(SIGNOFF), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=60,
        check=False,
    )
