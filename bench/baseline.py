"""The baseline for the create benchmark: what a minimal hand-written service would do.

One FastAPI endpoint, ``POST /v1/approvals``, validates the same JSON as signoff's agent API
(the same pydantic model) and does one durable SQLite insert: WAL, ``synchronous=FULL``, one
transaction per request. It has no authentication, policies, audit chain or outbox.

Run: python -m bench.baseline --db /tmp/baseline.db --port 8090
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import uvicorn
from fastapi import FastAPI

from bot.api import CreateApproval

SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    title TEXT NOT NULL,
    details TEXT NOT NULL,
    params TEXT NOT NULL,
    requested_by TEXT,
    created_at TEXT NOT NULL
)
"""


def build_app(database: Path) -> FastAPI:
    """The baseline app on the SQLite file ``database``."""
    connection: aiosqlite.Connection | None = None
    # One connection, one transaction at a time: concurrent requests on a shared connection
    # would otherwise end up in one another's transactions.
    writer = asyncio.Lock()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        nonlocal connection
        connection = await aiosqlite.connect(database)
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA synchronous=FULL")
        await connection.execute(SCHEMA)
        await connection.commit()
        try:
            yield
        finally:
            await connection.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/approvals", status_code=201)
    async def create(body: CreateApproval) -> dict[str, Any]:
        assert connection is not None
        request_id = secrets.token_urlsafe(16)
        created_at = datetime.now(UTC).isoformat()
        async with writer:
            await connection.execute(
                "INSERT INTO approvals VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    request_id,
                    body.action,
                    body.title,
                    body.details,
                    json.dumps(body.params, separators=(",", ":")),
                    body.requested_by,
                    created_at,
                ),
            )
            await connection.commit()
        return {"id": request_id, "status": "pending", "created_at": created_at}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, type=Path, help="the SQLite file")
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args(argv)
    uvicorn.run(
        build_app(args.db), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
