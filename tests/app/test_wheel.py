"""The wheel: built from this checkout, installed into a fresh virtual environment outside
it, and that environment's ``signoff`` serving one approval from request to decision.

Every command runs in a temporary directory without ``PYTHONPATH`` (which names the
checkout when the tests run from one), so nothing of the checkout can be imported: what
works proves the wheel carries what the service reads at run time (migrations, the web
inbox's templates and stylesheet) and that its ``signoff`` entry point works. Dependencies
come from the package index (pip's usual sources and cache).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from tests.cli import run_signoff, signoff_environ
from tests.client.server import serve_signoff, unique_title

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("approvals", "adapters", "bot", "config")
"""The import packages the wheel ships (``[tool.setuptools.packages.find]``)."""
UNSET = (
    # what could lead an interpreter back to the checkout or the tests' venv
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONSAFEPATH",
    "VIRTUAL_ENV",
    # the venv is installed without bytecode; its first processes write what they import
    "PYTHONDONTWRITEBYTECODE",
)
"""Variables of the tests' environment that the commands run here go without."""
NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.pyc",
    ".*_cache",
    ".hypothesis",
    "build",
    "dist",
    "*.egg-info",
    "*.db",
    "*.db-*",
)
"""What a build does not read: the checkout's VCS data, environments, caches, databases."""
WARNING_CLASS = re.compile(r"\b\w+Warning\b")
"""How a Python warning shows in a build's output (``SetuptoolsDeprecationWarning: ...``);
pip's own notices (``WARNING:``) and the compiler's (``warning: build_py: ...``) differ."""


@dataclass(frozen=True)
class Installed:
    """The built wheel, what building it printed, and the venv it was installed into."""

    wheel: Path
    build_output: str
    venv: Path
    outside: Path
    """A directory outside the checkout for commands to run in."""

    @property
    def signoff(self) -> Path:
        return self.venv / "bin" / "signoff"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=signoff_environ(unset=UNSET),
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel built from a copy of the checkout, installed with its dependencies (the
    venv, some 200 MB, is removed afterwards)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy: a build writes build/ and *.egg-info into its source
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    dist = work / "dist"
    build = ["pip", "wheel", "--verbose", "--no-deps", "--wheel-dir", str(dist)]
    built = _run([sys.executable, "-m", *build, str(source)], cwd=work, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("signoff-0*.whl")
    # the server depends on the agent client, its own distribution under client/
    client_built = _run([sys.executable, "-m", *build, str(source / "client")], work, 300)
    assert client_built.returncode == 0, client_built.stdout + client_built.stderr
    (client_wheel,) = dist.glob("signoff_client-*.whl")

    venv = work / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work, timeout=120)
    assert made.returncode == 0, made.stderr
    pip_into_venv = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    added = _run(
        [*pip_into_venv, "install", "--quiet", "--no-compile", str(wheel), str(client_wheel)],
        cwd=work,
        timeout=600,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    outside = work / "elsewhere"
    outside.mkdir()
    build_output = built.stdout + built.stderr + client_built.stdout + client_built.stderr
    yield Installed(wheel, build_output, venv, outside)
    shutil.rmtree(venv)


def test_wheel_carries_every_file_of_the_packages(installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        carried = set(wheel.namelist())
    sources = {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert sources - carried == set(), "the wheel lacks these package files"
    for needed in (
        "approvals/migrations/env.py",
        "approvals/migrations/script.py.mako",
        "adapters/web/templates/request.html",
        "adapters/web/static/inbox.css",
        "config/default.yaml",
    ):
        assert needed in carried
    top_level = {name.split("/", 1)[0] for name in carried}
    assert {name for name in top_level if not name.endswith(".dist-info")} == set(PACKAGES)


def test_our_metadata_builds_without_warnings(installed):
    warned = [line for line in installed.build_output.splitlines() if WARNING_CLASS.search(line)]
    assert warned == [], "building the wheel warned:\n" + installed.build_output


def test_installed_signoff_runs_from_its_venv_not_the_checkout(installed):
    where = _run(
        [
            str(installed.python),
            "-c",
            "import json, approvals, adapters, bot, config, signoff_client as client; "
            "print(json.dumps([m.__file__ for m in (approvals, adapters, bot, config, client)]))",
        ],
        cwd=installed.outside,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    site_packages = next((installed.venv / "lib").glob("python3.*/site-packages")).resolve()
    for module_file in json.loads(where.stdout):
        assert Path(module_file).resolve().is_relative_to(site_packages), module_file

    shebang = installed.signoff.read_text(encoding="utf-8").splitlines()[0]
    assert Path(shebang.removeprefix("#!")).is_relative_to(installed.venv), shebang

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    version = run_signoff(
        "--version", cwd=installed.outside, unset=UNSET, signoff=installed.signoff
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout == f"signoff {project['version']}\n"


def test_installed_signoff_serves_one_approval_on_a_fresh_database(installed, tmp_path):
    database = tmp_path / "signoff.db"
    assert not database.exists()
    with serve_signoff(
        tmp_path, signoff=installed.signoff, unset=UNSET, credentials_by_command=True
    ) as served:
        with sqlite3.connect(database) as db:
            (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
        head = ScriptDirectory(str(ROOT / "approvals" / "migrations")).get_current_head()
        assert revision == head

        title = unique_title("wheel")
        with served.api() as api:
            created = api.post(
                "/v1/approvals",
                json={"action": "deploy.web", "title": title, "params": {"version": "1.4"}},
            )
            assert created.status_code == 201, created.text
            request_id = created.json()["id"]

            served.approve(request_id, "alice")

            decided = api.get(f"/v1/approvals/{request_id}")
            assert decided.status_code == 200, decided.text
            assert decided.json()["status"] == "approved", decided.text
            votes = [(v["person"], v["verdict"]) for v in decided.json()["votes"]]
            assert votes == [("alice", "approve")], decided.text

        stylesheet = served.approvers["alice"].http.get("/static/inbox.css")
        assert stylesheet.status_code == 200
        assert stylesheet.content == (ROOT / "adapters/web/static/inbox.css").read_bytes()
