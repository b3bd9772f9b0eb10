"""The configuration reference (docs/configuration.md) is written from config/schema.py and
cannot drift."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

from pydantic import BaseModel

from config.reference import (
    END_MARKER,
    START_MARKER,
    allowed_values,
    current_reference,
    render_reference,
    rows_for,
)
from config.schema import SignoffSettings

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_PAGE = ROOT / "docs" / "configuration.md"
SIGNOFF = Path(sys.executable).with_name("signoff")


def test_readme_reference_matches_the_schema():
    written = current_reference(REFERENCE_PAGE.read_text(encoding="utf-8"))

    assert written == render_reference(), (
        "docs/configuration.md differs from config/schema.py. Regenerate it with "
        "`signoff config reference` (or `python -m config.reference`) and commit it."
    )


def models_in(model: type[BaseModel], seen: set[type[BaseModel]]) -> None:
    seen.add(model)

    def visit(annotation: typing.Any) -> None:
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if is_model and annotation not in seen:
            models_in(annotation, seen)
        for argument in typing.get_args(annotation):
            visit(argument)

    for field in model.model_fields.values():
        visit(field.annotation)


def test_every_key_has_a_description_and_lists_its_allowed_values():
    models: set[type[BaseModel]] = set()
    models_in(SignoffSettings, models)
    documented = {m for m in models if m.__name__ != "ParamCondition"}  # shown as one value

    for model in documented:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} needs description="
            for value in allowed_values(field):
                assert f"`{value}`" in field.description, (
                    f"{model.__name__}.{name}'s description must name the value {value!r}"
                )


def test_reference_names_every_section_and_the_log_keys():
    keys = {row.key for row in rows_for(SignoffSettings)}

    assert set(SignoffSettings.model_fields) <= {key.split(".")[0].rstrip("[]") for key in keys}
    assert {"log.level", "log.format", "platforms.slack.mode", "agents.NAME.allow"} <= keys
    rendered = render_reference()
    assert "| `log.format` |" in rendered
    assert "| `levels[].remind_every` |" in rendered


def signoff(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SIGNOFF), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k != "SIGNOFF_CONFIG"},
        timeout=60,
        check=False,
    )


def test_config_reference_command_rewrites_only_between_the_markers(tmp_path):
    stale = (
        "# Title\n\nBefore.\n\n"
        f"{START_MARKER}\n| key | meaning | default |\n| `old` | gone | - |\n{END_MARKER}\n\n"
        "After.\n"
    )
    (tmp_path / "docs").mkdir()
    readme = tmp_path / "docs" / "configuration.md"  # the default page, from the checkout root
    readme.write_text(stale, encoding="utf-8")

    check = signoff("config", "reference", "--check", cwd=tmp_path)
    assert check.returncode == 1
    assert "signoff config reference" in check.stderr
    assert readme.read_text(encoding="utf-8") == stale

    written = signoff("config", "reference", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\nBefore.\n\n")
    assert text.endswith(f"{END_MARKER}\n\nAfter.\n")
    assert current_reference(text) == render_reference()
    assert "`old`" not in text

    again = subprocess.run(
        [sys.executable, "-m", "config.reference", str(readme), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0, again.stderr


def test_a_readme_without_markers_is_an_error_not_a_rewrite(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# No markers here\n", encoding="utf-8")

    result = signoff("config", "reference", "--file", str(readme), cwd=tmp_path)
    by_its_first_name = signoff("config", "reference", "--readme", str(readme), cwd=tmp_path)

    assert result.returncode == by_its_first_name.returncode == 2
    assert START_MARKER in result.stderr
    assert readme.read_text(encoding="utf-8") == "# No markers here\n"
