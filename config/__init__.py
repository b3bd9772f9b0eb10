"""signoff's configuration: the YAML schema, its loader, and the built-in default.

``load_config(path)`` turns the admin's YAML file into checked settings plus the core's
``PolicySet`` and ``Directory``; problems are reported as ``file:line: key.path: message``
in one ``ConfigError``. Adapters take their settings classes from ``config.schema``.
"""

from config.durations import format_duration, parse_duration
from config.loader import LoadedConfig, default_config, load_config, load_config_text
from config.problems import ConfigError, ConfigProblem
from config.schema import (
    DiscordSettings,
    SignoffSettings,
    SlackSettings,
    TelegramSettings,
    WebSettings,
)

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "DiscordSettings",
    "LoadedConfig",
    "SignoffSettings",
    "SlackSettings",
    "TelegramSettings",
    "WebSettings",
    "default_config",
    "format_duration",
    "load_config",
    "load_config_text",
    "parse_duration",
]
