"""What an agent pays for ``import signoff_client``: httpx and cryptography, not the server
nor an agent framework."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_SIDE = ["sqlalchemy", "sqlmodel", "alembic", "fastapi", "uvicorn", "pydantic", "mcp"]
AGENT_FRAMEWORKS = ["openai", "agents", "langchain", "langchain_core", "langgraph"]
"""Loaded only by the integrations that need them (``signoff_client.openai_agents``,
``signoff_client.langchain``), never by ``import signoff_client``."""


def test_importing_the_client_loads_no_database_web_or_agent_framework():
    probe = (
        "import json, sys\n"
        "from signoff_client import (Client, AsyncClient, require_approval, verify_receipt,\n"
        "    verify_webhook, Denied, Expired, Cancelled, ReceiptError, WebhookError)\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(result.stdout))
    assert "httpx" in loaded
    assert loaded.isdisjoint(SERVER_SIDE), sorted(loaded & set(SERVER_SIDE))
    assert loaded.isdisjoint(AGENT_FRAMEWORKS), sorted(loaded & set(AGENT_FRAMEWORKS))
