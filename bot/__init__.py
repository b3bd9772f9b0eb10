"""The signoff application: composition root, runtime, scheduler wiring and the CLI."""

from __future__ import annotations

import importlib.metadata


def signoff_version() -> str:
    """The installed signoff's version (``0.0.0`` when run from a checkout never installed):
    what MCP clients show and what the Teams app package carries (an x.y.z version)."""
    try:
        return importlib.metadata.version("signoff")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"
