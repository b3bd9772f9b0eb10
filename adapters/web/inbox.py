"""The web inbox: server-rendered pages where approvers sign in, review requests and decide.

The inbox is the built-in default channel. Its pages show what the core's inbox queries
(:class:`~approvals.inbox.InboxReads`) return, so sending a card to it is a no-op; a click on
Approve or Deny becomes one :class:`~approvals.model.VoteCommand` for the sink the inbox was
started with, and the core alone decides whether it counts.

Decision links (an email's Approve / Deny, see :mod:`approvals.links`) open a confirm page
that needs no sign-in: the signed link is the person's authority for that one decision.
Opening it (GET, HEAD, any scanner's prefetch) decides and spends nothing; only the page's
POST hands the vote to the core, which spends the link with the vote.

Under a policy that needs approvals confirmed (``confirm``, see :mod:`approvals.confirm`),
Approve on a request page first shows a confirm step (the risk, the describe line and the
params being approved) whose form carries the confirmation token; an email link's confirm
page carries one too. The core refuses an approval without a genuine token.

Security: sign-in links are single-use and redeemed only by a POST (link unfurlers issue
GETs); the session cookie is HttpOnly and SameSite=Lax; every form that changes something
carries the session's CSRF token, and every POST from another site is refused before it
is read (``Sec-Fetch-Site``, else ``Origin`` against ``public_url``); agent text is
autoescaped and its invisible characters are shown; every page is sent with a strict
Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from adapters.web.forms import FormError, read_form
from adapters.web.text import pretty_json, read_edited_params, relative, utc, visible
from approvals.access import SESSION_TTL, WebSession
from approvals.card import ApprovalCard, level_label
from approvals.directory import WEB_PLATFORM, Destination
from approvals.edits import edited_params_problem, param_changes
from approvals.errors import ConcurrentUpdateError, StoreBusyError
from approvals.flood import is_digest_id
from approvals.grants import length_text, matched_text
from approvals.inbox import FailedSignIns, InboxItem, InboxReads, WebSessions
from approvals.links import DecisionLinks, LinkClaim
from approvals.machine import Event, Status
from approvals.model import MAX_REASON_LENGTH, ApprovalRequest, Verdict, VoteCommand
from approvals.outcomes import (
    AlreadyDecided,
    Applied,
    NotAllowed,
    NotFound,
    Outcome,
    RefusalCode,
)
from approvals.ports import MessageRef, VoteSink

log = logging.getLogger(__name__)

SESSION_COOKIE = "signoff_session"
TEMPLATES_DIR = Path(__file__).parent / "templates"
STYLESHEET = Path(__file__).parent / "static" / "inbox.css"
LIVE_SCRIPT = Path(__file__).parent / "static" / "live.js"
LIVE_EVERY = timedelta(seconds=5)
"""How often a page about pending requests asks whether what it shows changed."""

_LOGIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,200}")
"""Sign-in tokens are URL-safe random text; anything else is not worth a database lookup."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9._~-]{1,64}")
"""What a request id can look like; anything else is unknown without asking the database."""
_GRANT_ID = re.compile(r"g_[A-Za-z0-9_-]{1,40}")
"""What a grant id can look like (:func:`approvals.grants.grant_id_for`)."""
_GRANT_SECONDS = re.compile(r"[0-9]{1,9}")

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
    "edited": "You approved this request with your edited params; those are what the agent runs.",
    "granted": (
        "You approved this request and gave a grant: the agent's same requests are approved "
        "at once until it ends. Grants lists it, and you can revoke it there."
    ),
    "proposed": (
        "Your edited params were counted as your approval. The other approvers are now asked "
        "to approve them; approvals of the original params do not count for them."
    ),
}
"""Confirmation after a vote, chosen by a fixed key so no text is reflected from the URL."""

_DONE_KEYS = {Event.APPROVE: "approved", Event.DENY: "denied", Event.VOTE: "voted"}
CONFIRM_PATH = "/confirm/{request_id}/{verdict}/{token}"
"""Where a decision link points: the request and verdict in the path must be the token's."""
_SIGN_IN_HINT = "Ask an admin to run this command with your name, then open the link it prints:"
SIGN_IN_COMMAND = "signoff login-link NAME"

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


class _TooManyFailures(Exception):
    """The client's address is waiting out too many failed sign-ins or sessions."""

    def __init__(self, wait: int) -> None:
        super().__init__(f"retry after {wait} s")
        self.wait = wait


def origin_of(url: str) -> str:
    """The origin (scheme, host and port, lower-case, default port left out) of ``url``."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    default = {"http": 80, "https": 443}.get(scheme)
    port = "" if parts.port in (None, default) else f":{parts.port}"
    shown_host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown_host}{port}"


class WebInbox:
    """The web inbox adapter: FastAPI routes for the pages, and the adapter contract."""

    platform = WEB_PLATFORM
    min_send_interval = timedelta(0)

    def __init__(
        self,
        reads: InboxReads,
        access: WebSessions,
        *,
        public_url: str,
        failures: FailedSignIns | None = None,
        links: DecisionLinks | None = None,
        live_every: timedelta = LIVE_EVERY,
    ) -> None:
        self._reads = reads
        self._links = links
        self._access = access
        self._failures = failures
        self._secure_cookie = public_url.lower().startswith("https://")
        self._origin = origin_of(public_url)
        self._sink: VoteSink | None = None
        self._templates = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates.filters.update(visible=visible, utc=utc, pretty_json=pretty_json)
        self._templates.globals.update(
            level_label=level_label, length_text=length_text, matched_text=matched_text
        )
        self._stylesheet = STYLESHEET.read_bytes()
        self._live_script = LIVE_SCRIPT.read_bytes()
        self._live_every_ms = max(int(live_every.total_seconds() * 1000), 100)

    # -- the adapter contract ---------------------------------------------------------------

    async def start(self, sink: VoteSink) -> None:
        # Nothing to connect: votes arrive as form posts on the inbox's own routes.
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
            ("/grants", self.grants_page, "GET"),
            ("/grants/{grant_id}/revoke", self.revoke_grant, "POST"),
            ("/requests/{request_id}", self.request_page, "GET"),
            ("/requests/{request_id}/approve", self.approve, "POST"),
            ("/requests/{request_id}/deny", self.deny, "POST"),
            ("/static/inbox.css", self.stylesheet, "GET"),
            ("/static/live.js", self.live_script, "GET"),
            ("/live/inbox", self.live_inbox, "GET"),
            ("/live/requests/{request_id}", self.live_request, "GET"),
            (CONFIRM_PATH, self.confirm_page, "GET"),
            (CONFIRM_PATH, self.confirm_page, "HEAD"),
            (CONFIRM_PATH, self.confirm, "POST"),
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
                    response: Response
                    try:
                        if request.method == "POST" and inbox._from_another_site(request):
                            response = inbox._message(
                                request,
                                "Form refused",
                                "This form was sent from another site, so nothing was "
                                "recorded. Use the signoff inbox itself.",
                                status=403,
                            )
                        else:
                            response = await handler(request)
                    except HTTPException:
                        raise
                    except _TooManyFailures as exc:
                        response = inbox._message(
                            request,
                            "Too many attempts",
                            "Too many sign-in links or sessions from your address were not "
                            f"valid. Wait {exc.wait} seconds, then try again.",
                            status=429,
                        )
                        response.headers["Retry-After"] = str(exc.wait)
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
        now = self._reads.now()
        context.setdefault("live", None)  # only pages about pending requests follow them
        html = self._templates.get_template(template).render(
            root=http.scope.get("root_path", ""),
            session=session,
            now=now,
            ago=lambda moment: relative(moment, now),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def _not_ready(self, request: Request, session: WebSession | None = None) -> HTMLResponse:
        """The answer to a vote while signoff starts or stops: nothing was recorded."""
        return self._message(
            request,
            "Not ready",
            "signoff is starting or stopping; nothing was recorded. Try again in a moment.",
            status=503,
            session=session,
        )

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

    def _from_another_site(self, request: Request) -> bool:
        """Whether a browser says this request comes from a page of another site.

        ``Sec-Fetch-Site`` (sent by current browsers, and not settable by a page) decides
        when present: only ``same-origin`` and ``none`` (typed or bookmarked) pass. Without
        it, an ``Origin`` header must be ``public_url``'s origin. A request with neither is
        not from a browser page, so it cannot carry a visitor's cookie for a cross-site
        forgery; it still needs the session's CSRF token.
        """
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is not None:
            return fetch_site.lower() not in ("same-origin", "none")
        origin = request.headers.get("origin")
        return origin is not None and origin.lower() != self._origin

    def _client(self, request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def _check_attempts(self, request: Request) -> None:
        """Refuse the request while its address waits out too many failed attempts (a good
        cookie or link too: answering those would tell a guess that hit from one that
        missed)."""
        if self._failures is not None:
            wait = self._failures.retry_after(self._client(request))
            if wait:
                raise _TooManyFailures(wait)

    def _failed_attempt(self, request: Request) -> None:
        if self._failures is not None:
            self._failures.failed(self._client(request))

    async def _session(self, request: Request) -> WebSession | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        self._check_attempts(request)
        session = await self._access.session(cookie)
        if session is None:
            self._failed_attempt(request)
        return session

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
        self._check_attempts(request)
        form = await read_form(request)
        token = form.get("token", "")
        person = (
            await self._access.redeem_login_token(token) if _LOGIN_TOKEN.fullmatch(token) else None
        )
        if person is None:
            self._failed_attempt(request)
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

    async def inbox_page(self, request: Request) -> Response:
        """Pending requests the person approves at some level, newest first."""
        session = await self._session(request)
        if session is None:
            return self._sign_in_needed(request)
        pending = await self._reads.pending_for(session.person)
        return self._render(
            request,
            "inbox.html",
            session=session,
            rows=pending.items,
            scanned_all=pending.complete,
            live=self._live(request, "/live/inbox", _rows_token(pending.items)),
        )

    async def history_page(self, request: Request) -> Response:
        """Decided requests the person approves at some level, most recently decided first."""
        session = await self._session(request)
        if session is None:
            return self._sign_in_needed(request)
        rows = await self._reads.history_for(session.person)
        return self._render(request, "history.html", session=session, rows=rows)

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
        page = await self._reads.audit_page(session.person, before)
        return self._render(
            request,
            "audit.html",
            session=session,
            verification=page.verification,
            entries=page.entries,
            older=page.older,
            newer=page.has_newer,
        )

    async def grants_page(self, request: Request) -> Response:
        """The live time-boxed grants the person may see, each with its Revoke."""
        session = await self._session(request)
        if session is None:
            return self._sign_in_needed(request)
        revoked = request.query_params.get("done") == "revoked"
        notice = (
            "The grant was revoked: the agent's same requests are asked again." if revoked else None
        )
        return await self._grants(request, session, notice=notice)

    async def _grants(
        self,
        request: Request,
        session: WebSession,
        *,
        status: int = 200,
        notice: str | None = None,
        error: str | None = None,
    ) -> Response:
        grants = await self._reads.grants_for(session.person)
        return self._render(
            request,
            "grants.html",
            status=status,
            session=session,
            grants=grants,
            notice=notice,
            error=error,
        )

    async def revoke_grant(self, request: Request, grant_id: str) -> Response:
        """End a grant at once; the core decides whether the person may."""
        session = await self._session(request)
        if session is None:
            return self._sign_in_needed(request)
        form = await read_form(request)
        if not self._csrf_ok(form, session):
            return self._csrf_refused(request, session)
        if not _GRANT_ID.fullmatch(grant_id):
            return await self._grants(request, session, status=404, error="No such grant.")
        reason = form.get("reason", "").strip()[:MAX_REASON_LENGTH] or None
        outcome = await self._reads.revoke_grant(session.person, grant_id, reason)
        if isinstance(outcome, NotFound):
            return await self._grants(request, session, status=404, error="No such grant.")
        if isinstance(outcome, NotAllowed):
            return await self._grants(
                request, session, status=403, error=f"Nothing changed: {outcome.message}."
            )
        if outcome.already_ended:
            return await self._grants(
                request, session, notice=f"Grant {grant_id} had already ended."
            )
        return self._redirect(request, "/grants?done=revoked")

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
        typed_params: str | None = None,
    ) -> Response:
        if not _REQUEST_ID.fullmatch(request_id):
            return self._not_found(request, session)
        view = await self._reads.request_for(session.person, request_id)
        if view is None:
            return self._not_found(request, session)
        shown = view.item.request
        changes = (
            [] if shown.edited_params is None else param_changes(shown.params, shown.edited_params)
        )
        return self._render(
            request,
            "request.html",
            status=status,
            session=session,
            request=view.item.request,
            card=view.item.card,
            audit=view.audit,
            can_vote=view.item.can_vote,
            hint=view.item.hint,
            notice=notice,
            error=error,
            reason=reason,
            max_reason_length=MAX_REASON_LENGTH,
            changes=changes,
            # What the edit form holds: the person's own text after a refusal, else the
            # params now proposed, to change from.
            params_text=(
                typed_params if typed_params is not None else pretty_json(shown.proposal_params)
            ),
            live=(
                self._live(request, f"/live/requests/{request_id}", _request_token(shown))
                if shown.status is Status.PENDING
                else None
            ),
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
        # An approval with edits: the form's params (JSON object text). Read only for an
        # approval; a deny carries no payload.
        typed_params = form.get("params") if verdict is Verdict.APPROVE else None
        edited_params: dict[str, Any] | None = None
        if typed_params is not None:
            parsed = read_edited_params(typed_params)
            problem = parsed if isinstance(parsed, str) else edited_params_problem(parsed)
            if problem is not None:
                return await self._refused(
                    request,
                    session,
                    request_id,
                    status=422,
                    message=f"Nothing was recorded: {problem}.",
                    typed_params=typed_params,
                )
            assert isinstance(parsed, dict)
            edited_params = parsed
        grant_for = _grant_for(form) if verdict is Verdict.APPROVE else None
        if isinstance(grant_for, str):
            return await self._refused(request, session, request_id, status=422, message=grant_for)
        command = VoteCommand(
            request_id=request_id,
            platform=WEB_PLATFORM,
            identity=session.person,
            verdict=verdict,
            reason=typed_reason if typed_reason.strip() else None,
            # The payload the page showed: a vote counts only for what the person saw.
            shown_payload_sha256=form.get("payload_sha256") or None,
            edited_params=edited_params,
            grant_for=grant_for,
            confirm_token=form.get("confirm_token") or None,
        )
        if self._sink is None:
            return self._not_ready(request, session)
        if verdict is Verdict.APPROVE and command.confirm_token is None:
            prompt = await self._sink.confirm_step(command)
            if prompt is not None:
                return self._render(
                    request,
                    "confirm_approval.html",
                    status=200,
                    session=session,
                    prompt=prompt,
                    card=prompt.card,
                    shown_payload_sha256=command.shown_payload_sha256 or "",
                    typed_params=typed_params,
                )
        outcome: Outcome = await self._sink.vote(command)
        if isinstance(outcome, Applied):
            done = _DONE_KEYS[outcome.event]
            updated = outcome.request
            mine = updated.votes[-1].payload_sha256 if updated.votes else None
            if edited_params is not None and mine == updated.edited_payload_sha256:
                done = "edited" if updated.status.is_final else "proposed"
            elif updated.decision is not None and updated.decision.grant is not None:
                done = "granted"
            return self._redirect(request, f"/requests/{request_id}?done={done}")
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
        if outcome.code in (
            RefusalCode.REASON_REQUIRED,
            RefusalCode.INVALID,
            RefusalCode.GRANTS_FORBIDDEN,
        ):
            status = 422
        elif outcome.code is RefusalCode.STALE_PROPOSAL:
            status = 409
        else:
            status = 403
        return await self._refused(
            request,
            session,
            request_id,
            status=status,
            message=f"Your vote was not counted: {outcome.message}.",
            reason=typed_reason,
            # After a stale page, show the current proposal rather than the old text.
            typed_params=None if outcome.code is RefusalCode.STALE_PROPOSAL else typed_params,
        )

    async def _refused(
        self,
        request: Request,
        session: WebSession,
        request_id: str,
        *,
        status: int,
        message: str,
        reason: str = "",
        typed_params: str | None = None,
    ) -> Response:
        """The request page again with why nothing was counted, keeping what was typed."""
        shown = await self._detail(
            request,
            session,
            request_id,
            status=status,
            error=message,
            reason=reason,
            typed_params=typed_params,
        )
        if shown.status_code == 404:
            # The person may not see this request: say no, without showing it.
            return self._message(
                request, "Vote not counted", message, status=status, session=session
            )
        return shown

    # -- decision links ---------------------------------------------------------------------

    async def _claim(self, request_id: str, verdict: str, token: str) -> LinkClaim | None:
        """The claim of a genuine link for exactly this request and verdict, or ``None``."""
        if self._links is None or not _REQUEST_ID.fullmatch(request_id):
            return None
        claim = await self._links.read(token)
        if claim is None or claim.request_id != request_id or claim.verdict.value != verdict:
            return None
        return claim

    def _link_refused(self, request: Request) -> HTMLResponse:
        return self._message(
            request,
            "Link not valid",
            "This link is not a valid signoff decision link, or it belongs to another "
            "request or another decision. Nothing was recorded. Use the links in the "
            "newest email about the request, or the signoff inbox.",
            status=403,
        )

    async def confirm_page(
        self, request: Request, request_id: str, verdict: str, token: str
    ) -> Response:
        """What a decision link opens: the request and a button. Reads only, so scanners
        and previews that fetch the link decide nothing and spend nothing."""
        self._check_attempts(request)
        claim = await self._claim(request_id, verdict, token)
        if claim is None:
            self._failed_attempt(request)
            return self._link_refused(request)
        return await self._confirm_form(request, claim, token, status=200)

    async def _confirm_form(
        self,
        request: Request,
        claim: LinkClaim,
        token: str,
        *,
        status: int,
        error: str | None = None,
        reason: str = "",
    ) -> Response:
        assert self._links is not None
        card = await self._sink.card(claim.request_id) if self._sink is not None else None
        if card is None:
            return self._message(request, "Not found", "This request no longer exists.", status=404)
        problem: str | None = None
        if card.status.is_final:
            problem = "This request has been decided; there is nothing left to do."
        elif claim.expired(self._links.now()):
            problem = (
                "This link has expired. Use the links in the newest email about this request, "
                "or the signoff inbox."
            )
        elif await self._links.spent(claim.nonce):
            problem = "This link has already been used; it works once."
        prompt = None
        if problem is None and claim.verdict is Verdict.APPROVE and self._sink is not None:
            # A policy that needs approvals confirmed: this page is the confirm step, so it
            # shows what is approved and its form carries the confirmation.
            prompt = await self._sink.confirm_step(
                VoteCommand(claim.request_id, claim.platform, claim.identity, claim.verdict)
            )
        return self._render(
            request,
            "confirm.html",
            status=status if problem is None else max(status, 409 if card.status.is_final else 410),
            card=card,
            verdict=claim.verdict.value,
            identity=claim.identity,
            action=CONFIRM_PATH.format(
                request_id=claim.request_id, verdict=claim.verdict.value, token=token
            ),
            can_decide=problem is None,
            problem=problem,
            prompt=prompt,
            error=error,
            reason=reason,
            max_reason_length=MAX_REASON_LENGTH,
        )

    async def confirm(
        self, request: Request, request_id: str, verdict: str, token: str
    ) -> Response:
        """The confirm page's button: one vote, as the person the link was sent to, with
        the link spent in the vote's own transaction."""
        self._check_attempts(request)
        claim = await self._claim(request_id, verdict, token)
        if claim is None:
            self._failed_attempt(request)
            return self._link_refused(request)
        form = await read_form(request)
        typed_reason = form.get("reason", "") if claim.verdict is Verdict.DENY else ""
        if self._sink is None:
            return self._not_ready(request)
        outcome = await self._sink.vote(
            VoteCommand(
                request_id=claim.request_id,
                platform=claim.platform,
                identity=claim.identity,
                verdict=claim.verdict,
                reason=typed_reason if typed_reason.strip() else None,
                link=claim.use,
                confirm_token=form.get("confirm_token") or None,
            )
        )
        if isinstance(outcome, Applied):
            return self._message(
                request, "Recorded", _DONE_MESSAGES[_DONE_KEYS[outcome.event]], status=200
            )
        if isinstance(outcome, NotFound):
            return self._message(request, "Not found", "This request no longer exists.", status=404)
        if isinstance(outcome, AlreadyDecided):
            return self._message(
                request, "Nothing changed", f"Nothing changed: {outcome.message}.", status=409
            )
        if outcome.code in (RefusalCode.REASON_REQUIRED, RefusalCode.UNCONFIRMED):
            return await self._confirm_form(
                request,
                claim,
                token,
                status=422,
                error=f"Your vote was not counted: {outcome.message}.",
                reason=typed_reason,
            )
        status = 422 if outcome.code is RefusalCode.INVALID else 403
        return self._message(
            request,
            "Vote not counted",
            f"Your vote was not counted: {outcome.message}.",
            status=status,
        )

    async def stylesheet(self, request: Request) -> Response:
        return Response(self._stylesheet, media_type="text/css")

    async def live_script(self, request: Request) -> Response:
        return Response(self._live_script, media_type="text/javascript")

    # -- live pages ---------------------------------------------------------------------------

    def _live(self, http: Request, path: str, token: str) -> dict[str, Any]:
        """What a page needs to follow what it shows: where to ask, and what it showed."""
        root = http.scope.get("root_path", "")
        return {"url": f"{root}{path}", "token": token, "every_ms": self._live_every_ms}

    async def live_inbox(self, request: Request) -> Response:
        """The token of the person's pending list: it changes when the list would."""
        session = await self._session(request)
        if session is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        pending = await self._reads.pending_for(session.person)
        return JSONResponse({"token": _rows_token(pending.items)})

    async def live_request(self, request: Request, request_id: str) -> Response:
        """The token of one request's page: it changes with every change of the request."""
        session = await self._session(request)
        if session is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        view = None
        if _REQUEST_ID.fullmatch(request_id):
            view = await self._reads.request_for(session.person, request_id)
        if view is None:
            return JSONResponse({"error": "no such request"}, status_code=404)
        return JSONResponse({"token": _request_token(view.item.request)})


def _request_token(request: ApprovalRequest) -> str:
    """What a request page showed, in a word: every change of the request bumps its version."""
    return f"{request.status.value}:{request.version}"


def _rows_token(rows: list[InboxItem]) -> str:
    """What a pending list showed, in a word: which requests, in which versions, and which
    of them the person may vote on."""
    shown = "|".join(f"{row.request.id}:{row.request.version}:{row.can_vote}" for row in rows)
    return hashlib.sha256(shown.encode()).hexdigest()[:16]


def _grant_for(form: dict[str, str]) -> timedelta | str | None:
    """The "Approve for ..." length an approve form asked for (its button's
    ``grant_seconds``), ``None`` for a plain approval, or what is wrong with it. The core
    checks the length against the policy."""
    seconds = form.get("grant_seconds", "")
    if not seconds:
        return None
    if not _GRANT_SECONDS.fullmatch(seconds):
        return "Nothing was recorded: the grant length must be a whole number of seconds."
    return timedelta(seconds=int(seconds))
