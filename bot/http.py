"""The one ASGI app: agent API, web inbox, health, readiness, metrics and OpenAPI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from starlette.routing import BaseRoute

from approvals.ports import Adapter, HttpInbound
from bot.errors import error_json, install_error_handlers
from bot.json_body import DuplicateKeyMiddleware, Receive, Scope, Send, replaying
from bot.runtime import Runtime

HEALTH_CHECK_SECONDS = 5
MAX_BODY_BYTES = 256 * 1024
"""The largest request body accepted (the agent API's params included); larger is 413."""

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimitMiddleware:
    """Refuses bodies over ``limit`` bytes with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.limit:
                    await self._too_large(scope, receive, send)
                    return
        # Read the whole body first (it is small by definition) so an oversized stream is
        # answered with 413 before any handler sees a byte of it.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        await self.app(scope, replaying(body, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_json(
            413, "too_large", f"the request body is larger than {self.limit} bytes"
        )
        await response(scope, receive, send)


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]
    details: dict[str, Any] = {}
    """Further facts, such as a changed config file that was refused (``config``), and
    ``singletons``: for each one-per-token inbound connection this process runs or waits
    for (Telegram polling, the Discord gateway, Slack Socket Mode), ``held`` when this
    process runs it, ``standby`` while another process does."""


def build_http_app(runtime: Runtime) -> FastAPI:
    """The FastAPI app for ``runtime``; its lifespan starts and stops the runtime."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="signoff",
        version="1",
        summary="Human approval for AI agents' risky actions.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # The last added runs first: the body limit bounds what the duplicate check reads.
    app.add_middleware(DuplicateKeyMiddleware)
    app.add_middleware(BodyLimitMiddleware)
    app.include_router(runtime.agent_api.router())
    # Adapters with inbound HTTP (Slack events, the Telegram webhook, the web inbox) bring
    # their own routes; when a config reload replaces an adapter, its routes are swapped.
    adapter_routes: dict[str, list[BaseRoute]] = {}

    def mount(platform: str, adapter: Adapter | None) -> None:
        for route in adapter_routes.pop(platform, []):
            app.router.routes.remove(route)
        if isinstance(adapter, HttpInbound):
            before = len(app.router.routes)
            app.include_router(adapter.router())
            adapter_routes[platform] = app.router.routes[before:]
        app.openapi_schema = None  # /openapi.json is rebuilt with the routes there are now

    for platform, adapter in runtime.adapters.items():
        mount(platform, adapter)
    runtime.on_adapter_replaced.append(lambda platform, _old, new: mount(platform, new))

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: database and adapters",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready."}},
    )
    async def readyz() -> Any:
        checks: dict[str, str] = {}
        try:
            await runtime.store.ping()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        for name, adapter in runtime.adapters.items():
            try:
                async with asyncio.timeout(HEALTH_CHECK_SECONDS):
                    healthy = await adapter.check_health()
                checks[name] = "ok" if healthy else "unhealthy"
            except TimeoutError:
                checks[name] = "unhealthy: no answer in time"
            except Exception as exc:
                checks[name] = f"unhealthy: {type(exc).__name__}"
        ready = all(value == "ok" for value in checks.values())
        details = dict(runtime.readiness_details)
        singletons = runtime.singletons()
        if singletons:
            details["singletons"] = singletons
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks, "details": details},
            status_code=200 if ready else 503,
        )

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Metrics in the Prometheus text format.",
                "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            }
        },
    )
    async def metrics() -> Response:
        return Response(await runtime.metrics.render(runtime.store), media_type=CONTENT_TYPE_LATEST)

    return app
