"""The web inbox: server-rendered pages where approvers sign in, review requests and decide.

The inbox is the built-in default channel. It reads pending requests straight from the store,
so sending a card to it is a no-op; a click on Approve or Deny becomes one
:class:`~approvals.model.VoteCommand` for the core, which alone decides whether it counts.

Security: sign-in links are single-use and redeemed only by a POST (link unfurlers issue
GETs); the session cookie is HttpOnly and SameSite=Lax; every form that changes something
carries the session's CSRF token; agent text is autoescaped and its invisible characters
are shown; every page is sent with a strict Content-Security-Policy.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from adapters.web.forms import FormError, read_form
from adapters.web.text import pretty_json, relative, utc, visible
from approvals.access import SESSION_TTL, AccessStore, WebSession
from approvals.card import ApprovalCard, build_card
from approvals.directory import WEB_PLATFORM, Destination
from approvals.flood import is_digest_id
from approvals.machine import Event, Status
from approvals.model import ApprovalRequest, Verdict, VoteCommand
from approvals.outcomes import AlreadyDecided, Applied, NotAllowed, NotFound, RefusalCode
from approvals.ports import MessageRef, VoteSink
from approvals.service import MAX_REASON_LENGTH, ApprovalService, judge_vote
from approvals.store import ConcurrentUpdateError, StoreBusyError

log = logging.getLogger(__name__)

SESSION_COOKIE = "signoff_session"
TEMPLATES_DIR = Path(__file__).parent / "templates"
STYLESHEET = Path(__file__).parent / "static" / "inbox.css"

PENDING_SCAN_LIMIT = 500
"""How many of the newest pending requests the inbox looks through."""
HISTORY_SCAN_LIMIT = 200
"""How many of the newest requests of each final status the history looks through."""
HISTORY_PAGE_SIZE = 100
AUDIT_PAGE_SIZE = 50
_LOGIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,200}")
"""Sign-in tokens are URL-safe random text; anything else is not worth a database lookup."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9._~-]{1,64}")
"""What a request id can look like; anything else is unknown without asking the database."""

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_DONE_MESSAGES = {
    "approved": "You approved this request.",
    "denied": "You denied this request.",
    "voted": "Your approval was counted. The request needs more approvals before it is approved.",
}
"""Confirmation after a vote, chosen by a fixed key so no text is reflected from the URL."""

_DONE_KEYS = {Event.APPROVE: "approved", Event.DENY: "denied", Event.VOTE: "voted"}
_FINAL_STATUSES = (Status.APPROVED, Status.DENIED, Status.EXPIRED, Status.CANCELLED)
_SIGN_IN_HINT = "Ask an admin to run this command with your name, then open the link it prints:"
SIGN_IN_COMMAND = "signoff login-link NAME"

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


def visible_to(request: ApprovalRequest, person: str) -> bool:
    """Whether ``person`` approves at any level of the request's policy snapshot."""
    levels = request.policy.levels
    return bool(levels) and person in request.policy.approvers_through(len(levels) - 1)


class WebInbox:
    """The web inbox adapter: FastAPI routes for the pages, and the adapter contract."""

    platform = WEB_PLATFORM
    min_send_interval = timedelta(0)

    def __init__(self, service: ApprovalService, access: AccessStore, *, public_url: str) -> None:
        self._service = service
        self._access = access
        self._secure_cookie = public_url.lower().startswith("https://")
        self._sink: VoteSink | None = None
        self._templates = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates.filters.update(visible=visible, utc=utc, pretty_json=pretty_json)
        self._stylesheet = STYLESHEET.read_bytes()

    # -- the adapter contract ---------------------------------------------------------------

    async def start(self, sink: VoteSink) -> None:
        # Votes go straight to the service the inbox was built with; nothing to connect.
        self._sink = sink

    async def stop(self) -> None:
        self._sink = None

    async def check_health(self) -> bool:
        return True

    async def send(self, card: ApprovalCard, destination: Destination) -> MessageRef:
        # The inbox lists pending requests from the store: there is nothing to post.
        return MessageRef(self.platform, {"request_id": card.request_id})

    async def edit(self, ref: MessageRef, card: ApprovalCard) -> None:
        return None

    async def reply(self, ref: MessageRef, card: ApprovalCard, text: str) -> None:
        return None

    # -- routes -----------------------------------------------------------------------------

    def router(self) -> APIRouter:
        """All inbox pages, to be mounted at ``/``."""
        router = APIRouter(route_class=self._route_class())
        pages: list[tuple[str, Callable[..., Awaitable[Response]], str]] = [
            ("/login", self.login_page, "GET"),
            ("/login", self.login, "POST"),
            ("/logout", self.logout, "POST"),
            ("/", self.inbox_page, "GET"),
            ("/history", self.history_page, "GET"),
            ("/audit", self.audit_page, "GET"),
            ("/requests/{request_id}", self.request_page, "GET"),
            ("/requests/{request_id}/approve", self.approve, "POST"),
            ("/requests/{request_id}/deny", self.deny, "POST"),
            ("/static/inbox.css", self.stylesheet, "GET"),
        ]
        for path, endpoint, method in pages:
            router.add_api_route(
                path,
                endpoint,
                methods=[method],
                response_class=HTMLResponse,
                include_in_schema=False,
            )
        return router

    def _route_class(self) -> type[APIRoute]:
        """A route class that adds the security headers and turns failures into pages.

        This is the inbox's one inbound error hook: a busy database asks the user to retry,
        an unreadable form gets its 4xx page, and anything unexpected is logged with its
        context and shown as a short generic page, never a traceback.
        """
        inbox = self

        class InboxRoute(APIRoute):
            def get_route_handler(self) -> Endpoint:
                handler = super().get_route_handler()

                async def guarded(request: Request) -> Response:
                    try:
                        response = await handler(request)
                    except HTTPException:
                        raise
                    except FormError as exc:
                        response = inbox._message(
                            request, "The form could not be read", exc.message, status=exc.status
                        )
                    except (StoreBusyError, ConcurrentUpdateError):
                        response = inbox._message(
                            request,
                            "Busy, please retry",
                            "The database is busy right now and nothing was recorded. "
                            "Wait a moment and try again.",
                            status=503,
                        )
                        response.headers["Retry-After"] = "2"
                    except Exception:
                        log.exception("web inbox failed on %s %s", request.method, request.url.path)
                        response = inbox._message(
                            request,
                            "Something went wrong",
                            "signoff could not show this page. The error was logged.",
                            status=500,
                        )
                    response.headers.update(SECURITY_HEADERS)
                    return response

                return guarded

        return InboxRoute

    # -- rendering --------------------------------------------------------------------------

    def _render(
        self,
        http: Request,
        template: str,
        *,
        status: int = 200,
        session: WebSession | None = None,
        **context: Any,
    ) -> HTMLResponse:
        now = self._service.clock.now()
        html = self._templates.get_template(template).render(
            root=http.scope.get("root_path", ""),
            session=session,
            now=now,
            ago=lambda moment: relative(moment, now),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def _message(
        self,
        request: Request,
        title: str,
        message: str,
        *,
        status: int,
        session: WebSession | None = None,
        hint: str | None = None,
        command: str | None = None,
    ) -> HTMLResponse:
        return self._render(
            request,
            "message.html",
            status=status,
            session=session,
            title=title,
            message=message,
            hint=hint,
            command=command,
        )

    def _sign_in_needed(self, request: Request) -> HTMLResponse:
        return self._message(
            request,
            "Sign in needed",
            "You need to sign in to use the signoff inbox.",
            status=401,
            hint=_SIGN_IN_HINT,
            command=SIGN_IN_COMMAND,
        )

    def _not_found(self, request: Request, session: WebSession) -> HTMLResponse:
        return self._message(
            request,
            "Not found",
            "There is no request with this id that you may see.",
            status=404,
            session=session,
        )

    def _redirect(self, request: Request, path: str) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "") + path, status_code=303)

    # -- sessions ---------------------------------------------------------------------------

    async def _session(self, request: Request) -> WebSession | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        return await self._access.session(cookie)

    @staticmethod
    def _csrf_ok(form: dict[str, str], session: WebSession) -> bool:
        sent = form.get("csrf_token", "")
        return hmac.compare_digest(sent.encode("utf-8"), session.csrf_token.encode("utf-8"))

    def _csrf_refused(self, request: Request, session: WebSession) -> HTMLResponse:
        return self._message(
            request,
            "Form refused",
            "This form did not carry a valid security token, so nothing was recorded. "
            "Reload the page and try again.",
            status=403,
            session=session,
        )

    async def login_page(self, request: Request) -> Response:
        """Show a Sign in button for a link's token. A GET never uses up the token."""
        token = request.query_params.get("token", "")
        if not token:
            signed_out = request.query_params.get("signed_out") == "1"
            return self._message(
                request,
                "Signed out" if signed_out else "Sign in",
                "You are signed out." if signed_out else "Sign in with a personal link.",
                status=200,
                hint=_SIGN_IN_HINT,
                command=SIGN_IN_COMMAND,
            )
        if not _LOGIN_TOKEN.fullmatch(token):
            return self._invalid_link(request)
        return self._render(request, "login.html", token=token)

    def _invalid_link(self, request: Request) -> HTMLResponse:
        return self._message(
            request,
            "Sign-in link invalid or expired",
            "This sign-in link is invalid, expired or already used. Each link works once, "
            "for a short time.",
            status=403,
            hint="Ask an admin for a new link by running this command with your name:",
            command=SIGN_IN_COMMAND,
        )

    async def login(self, request: Request) -> Response:
        """Redeem a sign-in token (once) and open a session."""
        if request.headers.get("sec-fetch-site") == "cross-site":
            # Another site posting someone's token would sign the visitor in as that someone.
            return self._message(
                request,
                "Sign-in refused",
                "Sign in from the page your sign-in link opens, not from another site.",
                status=403,
            )
        form = await read_form(request)
        token = form.get("token", "")
        person = (
            await self._access.redeem_login_token(token) if _LOGIN_TOKEN.fullmatch(token) else None
        )
        if person is None:
            return self._invalid_link(request)
        old_cookie = request.cookies.get(SESSION_COOKIE)
        if old_cookie:
            await self._access.end_session(old_cookie)
        cookie = await self._access.create_session(person)
        response = self._redirect(request, "/")
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=int(SESSION_TTL.total_seconds()),
            path="/",
            httponly=True,
            samesite="lax",
            secure=self._secure_cookie,
        )
        return response

    async def logout(self, request: Request) -> Response:
        """End the session (CSRF-checked) and forget the cookie."""
        session = await self._session(request)
        if session is None:
            return self._sign_in_needed(request)
        form = await read_form(request)
        if not self._csrf_ok(form, session):
            return self._csrf_refused(request, session)
        await self._access.end_session(request.cookies.get(SESSION_COOKIE, ""))
        response = self._redirect(request, "/login?signed_out=1")
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            httponly=True,
            samesite="lax",
            secure=self._secure_cookie,
        )
        return response

    # -- pages ------------------------------------------------------------------------------

    def _voting_hint(self, request: ApprovalRequest, person: str) -> tuple[bool, str | None]:
        """Whether ``person`` can vote now, and if not, the core's reason (a preview only)."""
        if request.status.is_final:
            return False, None
        preview = VoteCommand(request.id, WEB_PLATFORM, person, Verdict.APPROVE)
        judged = judge_vote(request, preview, self._service.rules)
        if isinstance(judged, str):
            return True, None
        return False, judged.message if isinstance(judged, NotAllowed) else None

    async def inbox_page(self, request: Request) -> Response:
        """Pending requests the person approves at some level, newest first."""
        session = await self._session(request)
        if session is None:
            return self._sign_in_needed(request)
        async with self._service.store.read() as reader:
            pending = await reader.list_requests(status=Status.PENDING, limit=PENDING_SCAN_LIMIT)
        rows = []
        for item in pending:
            if not visible_to(item, session.person):
                continue
            can_vote, hint = self._voting_hint(item, session.person)
            rows.append(
                {"request": item, "card": build_card(item), "can_vote": can_vote, "hint": hint}
            )
        return self._render(
            request,
            "inbox.html",
            session=session,
            rows=rows,
            scanned_all=len(pending) < PENDING_SCAN_LIMIT,
        )

    async def history_page(self, request: Request) -> Response:
        """Decided requests the person approves at some level, most recently decided first."""
        session = await self._session(request)
        if session is None:
            return self._sign_in_needed(request)
        decided: list[ApprovalRequest] = []
        async with self._service.store.read() as reader:
            for status in _FINAL_STATUSES:
                decided.extend(await reader.list_requests(status=status, limit=HISTORY_SCAN_LIMIT))
        mine = [item for item in decided if visible_to(item, session.person)]
        mine.sort(key=lambda item: item.decided_at or item.created_at, reverse=True)
        return self._render(
            request,
            "history.html",
            session=session,
            rows=[{"request": item, "card": build_card(item)} for item in mine[:HISTORY_PAGE_SIZE]],
        )

    async def audit_page(self, request: Request) -> Response:
        """The audit log, newest first, a page at a time, under the chain's verification."""
        session = await self._session(request)
        if session is None:
            return self._sign_in_needed(request)
        before_text = request.query_params.get("before")
        before: int | None = None
        if before_text is not None:
            if not before_text.isdigit() or len(before_text) > 18 or int(before_text) < 1:
                return self._message(
                    request,
                    "Bad page",
                    "The 'before' parameter must be a positive entry number.",
                    status=400,
                    session=session,
                )
            before = int(before_text)
        verification = await self._service.store.verify_audit()
        async with self._service.store.read() as reader:
            head_seq, _head_hash = await reader.audit_head()
            upper = head_seq if before is None else min(before - 1, head_seq)
            lower = max(0, upper - AUDIT_PAGE_SIZE)
            entries = []
            if upper > lower:
                found = await reader.audit_entries(after_seq=lower, limit=upper - lower)
                entries = [entry for entry in found if entry.seq <= upper]
        entries.sort(key=lambda entry: entry.seq, reverse=True)
        return self._render(
            request,
            "audit.html",
            session=session,
            verification=verification,
            entries=entries,
            older=lower + 1 if lower > 0 else None,
            newer=upper < head_seq,
        )

    async def request_page(self, request: Request, request_id: str) -> Response:
        """One request in full: payload, votes, decision, audit trail, and the vote forms."""
        if is_digest_id(request_id):
            # A digest card's link: the gathered requests are all in the inbox list.
            return self._redirect(request, "/")
        session = await self._session(request)
        if session is None:
            return self._sign_in_needed(request)
        done = request.query_params.get("done", "")
        return await self._detail(
            request, session, request_id, notice=_DONE_MESSAGES.get(done), status=200
        )

    async def _detail(
        self,
        request: Request,
        session: WebSession,
        request_id: str,
        *,
        status: int,
        notice: str | None = None,
        error: str | None = None,
        reason: str = "",
    ) -> Response:
        if not _REQUEST_ID.fullmatch(request_id):
            return self._not_found(request, session)
        async with self._service.store.read() as reader:
            item = await reader.get_request(request_id)
            audit = [] if item is None else await reader.audit_entries(request_id=request_id)
        if item is None or not visible_to(item, session.person):
            return self._not_found(request, session)
        can_vote, hint = self._voting_hint(item, session.person)
        return self._render(
            request,
            "request.html",
            status=status,
            session=session,
            request=item,
            card=build_card(item),
            audit=audit,
            can_vote=can_vote,
            hint=hint,
            notice=notice,
            error=error,
            reason=reason,
            max_reason_length=MAX_REASON_LENGTH,
        )

    # -- votes ------------------------------------------------------------------------------

    async def approve(self, request: Request, request_id: str) -> Response:
        return await self._vote(request, request_id, Verdict.APPROVE)

    async def deny(self, request: Request, request_id: str) -> Response:
        return await self._vote(request, request_id, Verdict.DENY)

    async def _vote(self, request: Request, request_id: str, verdict: Verdict) -> Response:
        """Hand one click to the core and show what it decided."""
        session = await self._session(request)
        if session is None:
            return self._sign_in_needed(request)
        form = await read_form(request)
        if not self._csrf_ok(form, session):
            return self._csrf_refused(request, session)
        if not _REQUEST_ID.fullmatch(request_id):
            return self._not_found(request, session)
        typed_reason = form.get("reason", "")
        command = VoteCommand(
            request_id=request_id,
            platform=WEB_PLATFORM,
            identity=session.person,
            verdict=verdict,
            reason=typed_reason if typed_reason.strip() else None,
        )
        outcome = await self._service.vote(command)
        if isinstance(outcome, Applied):
            return self._redirect(
                request, f"/requests/{request_id}?done={_DONE_KEYS[outcome.event]}"
            )
        if isinstance(outcome, NotFound):
            return self._not_found(request, session)
        if isinstance(outcome, AlreadyDecided):
            return await self._detail(
                request,
                session,
                request_id,
                status=409,
                notice=f"Nothing changed: {outcome.message}.",
            )
        status = 422 if outcome.code in (RefusalCode.REASON_REQUIRED, RefusalCode.INVALID) else 403
        shown = await self._detail(
            request,
            session,
            request_id,
            status=status,
            error=f"Your vote was not counted: {outcome.message}.",
            reason=typed_reason,
        )
        if shown.status_code == 404:
            # The person may not see this request: say no, without showing it.
            return self._message(
                request,
                "Vote not counted",
                f"Your vote was not counted: {outcome.message}.",
                status=status,
                session=session,
            )
        return shown

    async def stylesheet(self, request: Request) -> Response:
        return Response(self._stylesheet, media_type="text/css")
