"""``${ENV_VAR}`` substitution in config text, and the marker for text that came from it.

Secrets are written in the config file as references (``bot_token: "${SLACK_BOT_TOKEN}"``)
and filled in from the environment when the file is loaded. ``$${NAME}`` stands for the
literal text ``${NAME}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REFERENCE = re.compile(r"\$(?P<escape>\$?)\{(?P<name>[^}]*)(?P<close>\}?)")


class EnvText(str):
    """Text that came, wholly or in part, from ``${ENV_VAR}`` substitution.

    The schema uses the marker to insist that secrets are never written literally.

    Attributes:
        template: the text as written in the file, references included.
        variables: the names of the variables referenced, in order.
    """

    template: str
    variables: tuple[str, ...]

    def __new__(cls, value: str, *, template: str, variables: tuple[str, ...]) -> EnvText:
        text = super().__new__(cls, value)
        text.template = template
        text.variables = variables
        return text

    @property
    def is_single_reference(self) -> bool:
        """Whether the text as written was exactly one reference, such as ``${TOKEN}``."""
        match = _REFERENCE.fullmatch(self.template)
        return bool(
            match
            and not match.group("escape")
            and match.group("close")
            and VARIABLE_NAME.fullmatch(match.group("name"))
        )


@dataclass(frozen=True)
class Substitution:
    """The outcome of filling in the references of one piece of text.

    Attributes:
        value: the text with every reference replaced (missing variables by nothing);
            an ``EnvText`` when at least one reference was present.
        missing: names of referenced variables that are not set.
        malformed: references that are not of the form ``${NAME}``.
    """

    value: str
    missing: tuple[str, ...] = field(default=())
    malformed: tuple[str, ...] = field(default=())


def substitute(text: str, environ: Mapping[str, str]) -> Substitution:
    """Replace every ``${NAME}`` in ``text`` with the value of ``NAME`` in ``environ``.

    Args:
        text: a string value from the config file.
        environ: the environment to read variables from.

    Returns:
        The substituted text and any references that could not be filled in.
    """
    if "${" not in text:
        return Substitution(text)
    pieces: list[str] = []
    variables: list[str] = []
    missing: list[str] = []
    malformed: list[str] = []
    position = 0
    for match in _REFERENCE.finditer(text):
        pieces.append(text[position : match.start()])
        position = match.end()
        name = match.group("name")
        if match.group("escape"):
            pieces.append(match.group(0)[1:])
            continue
        if not match.group("close") or not VARIABLE_NAME.fullmatch(name):
            malformed.append(match.group(0))
            continue
        variables.append(name)
        if name in environ:
            pieces.append(environ[name])
        else:
            missing.append(name)
    pieces.append(text[position:])
    value = "".join(pieces)
    if variables:
        value = EnvText(value, template=text, variables=tuple(variables))
    return Substitution(value, missing=tuple(missing), malformed=tuple(malformed))
