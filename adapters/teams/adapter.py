"""The Microsoft Teams adapter: Adaptive Cards out, Universal Action clicks in, on the Teams SDK.

Inbound, the Bot Connector POSTs every activity to ``/teams/messages`` with a JWT. The Teams
SDK (``microsoft_teams.apps.App``) validates it against the configured OpenID metadata's
signing keys (RS256, issuer, audience = our app id, expiry, and the ``serviceurl`` claim
equal to the activity's ``serviceUrl``) and only then runs a handler; anything else is 401.
We mount the SDK's handler on our own router (so a config reload can swap it like any
adapter's routes) and refuse a body that is not a JSON object with 400 before it sees it.
Known cost of the SDK: it fetches the signing keys with a blocking call, at most every five
minutes (and when a token names a key it has not seen, at most every 30 s).

A click is an ``adaptiveCard/action`` invoke. Under a policy that needs approvals
confirmed, Approve is answered with a confirmation card for that person (the risk, the
describe line, the params) whose Confirm approve carries their confirmation token; that
press is the approval, and Cancel answers with the card again. The person is their Entra object id
(``from.aadObjectId``) in our tenant; a click from another tenant is refused as foreign.
The core decides everything else (see ``approvals.clicks``). The answer goes back in the
HTTP response: the card as it now stands when the click decided (Teams shows it to the
person at once; the outbox then edits the message for everyone), or a short message for
the person. Teams redelivers an invoke it got no timely answer for, and a replayed one
must not count twice: an activity id seen before gets the answer it got the first time.

Outbound, cards go through the SDK's API client to the service URL Teams last told us
(``api_url`` until then) with app tokens from :class:`~adapters.teams.tokens.AppTokens`.
A direct message goes to the person's 1:1 chat with the bot, which exists once the app is
installed for them; signoff creates (or finds) it by their Entra object id, and when Teams
refuses because the app is not installed, the delivery fails for good with that reason.
Rate limits and failures become :class:`DeliveryError`: the outbox waits out a 429's
``Retry-After`` on that conversation's lane and retries what can heal.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeGuard

import httpx
import jwt
from fastapi import APIRouter
from microsoft_teams.api.activities.message.message import MessageActivityInput
from microsoft_teams.api.auth.cloud_environment import PUBLIC, with_overrides
from microsoft_teams.api.clients.conversation.params import CreateConversationParams
from microsoft_teams.api.models.account import Account
from microsoft_teams.api.models.attachment.attachment import Attachment
from microsoft_teams.api.models.conversation.conversation_resource import ConversationResource
from microsoft_teams.apps import App
from microsoft_teams.apps.http.adapter import HttpMethod, HttpRequest, HttpRouteHandler
from microsoft_teams.common import ClientOptions
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters.pacing import SendLimit, SendPacer
from adapters.teams import MESSAGES_PATH
from adapters.teams.cards import (
    ACTIONS,
    APPROVE,
    CANCEL,
    CONFIRM,
    DENY_WITH_REASON,
    GRANT_SECONDS,
    REASON_LIMIT,
    notice_text,
    render_card,
    render_confirmation,
    render_notice,
)
from adapters.teams.tokens import AppTokens, TokenError
from approvals.card import ApprovalCard
from approvals.clicks import Click, ClickOutcome, Foreign, click_notice
from approvals.directory import Destination, DestinationKind
from approvals.model import Verdict
from approvals.ports import DeliveryError, MessageRef, VoteSink, parse_retry_after

log = logging.getLogger(__name__)

PLATFORM = "teams"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MESSAGE_CONTENT_TYPE = "application/vnd.microsoft.activity.message"
DEFAULT_API_URL = "https://smba.trafficmanager.net/teams/"
CONVERSATION_LIMITS = (
    SendLimit(7, timedelta(seconds=1)),
    SendLimit(8, timedelta(seconds=2)),
    SendLimit(60, timedelta(seconds=30)),
    SendLimit(1800, timedelta(hours=1)),
)
"""What Teams allows one bot in one conversation (a 1:1 chat, a group chat, a channel)."""
TENANT_LIMIT = SendLimit(30, timedelta(seconds=1))
"""What Teams allows one app in one tenant, all conversations together."""
DEFAULT_RETRY_AFTER = timedelta(seconds=2)
"""The wait after a 429 that came without a usable ``Retry-After``."""
HTTP_TIMEOUT = 20.0
"""Seconds for one Bot Connector call: well inside the outbox's own send timeout."""
SEEN_ACTIVITIES = 10_000
"""How many answered invokes are remembered to recognise a replay."""
RETRYABLE_STATUSES = frozenset({401, 408, 412, 429, 500, 502, 503, 504})
"""Bot Connector answers worth retrying (Microsoft names 412, 502 and 504 besides 429;
a 401 is a token that went stale)."""
NOT_INSTALLED = frozenset({403, 404})
"""What Teams answers for a 1:1 chat with someone who does not have the app installed."""
FOREIGN_TENANT = "foreign_tenant"
"""Audit code of a click from a Microsoft Entra tenant other than ours."""
GENERIC_FAILURE = "Something went wrong and your click was not counted. Please try again."
NOT_RUNNING = "signoff is starting or stopping; please try again."
REASON_NEEDED = "This request's policy needs a reason to deny."
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class _RouteCapture:
    """The SDK's HTTP-server port, implemented by keeping the activity handler: the route
    itself is ours (:meth:`TeamsAdapter.router`), mounted like every adapter's."""

    def __init__(self) -> None:
        self.handler: HttpRouteHandler | None = None

    def register_route(self, method: HttpMethod, path: str, handler: HttpRouteHandler) -> None:
        self.handler = handler

    def serve_static(self, path: str, directory: str) -> None:
        raise NotImplementedError("signoff serves no static files for Teams")

    async def start(self, port: int) -> None:
        raise NotImplementedError("signoff's own server serves the Teams route")

    async def stop(self) -> None:
        return None


def delivery_error(exc: Exception) -> DeliveryError:
    """A Bot Connector failure as the outbox understands it: when to retry, or not at all."""
    if isinstance(exc, TokenError):
        return DeliveryError(f"Teams app token: {exc}", permanent=exc.permanent)
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        status = response.status_code
        detail = _error_text(response)
        if status == 429:
            raw = response.headers.get("Retry-After")
            wait = parse_retry_after(raw, default=DEFAULT_RETRY_AFTER)
            return DeliveryError(f"Teams rate limit (HTTP 429){detail}", retry_after=wait)
        return DeliveryError(
            f"Teams answered HTTP {status}{detail}", permanent=status not in RETRYABLE_STATUSES
        )
    return DeliveryError(f"Teams unreachable: {type(exc).__name__}: {exc}")


def _status_of(error: DeliveryError) -> int | None:
    """The HTTP status behind a delivery error, if Teams answered at all."""
    cause = error.__cause__
    return cause.response.status_code if isinstance(cause, httpx.HTTPStatusError) else None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        text = ": ".join(str(part) for part in (code, message) if part)
        return f" ({text[:300]})" if text else ""
    return ""


class TeamsAdapter:
    """Microsoft Teams for signoff. See the module docstring.

    Attributes:
        platform: ``teams``.
        min_send_interval: the outbox's least time between two sends to one conversation;
            none by default, as the adapter keeps Teams' windows itself.
    """

    platform = PLATFORM

    def __init__(
        self,
        *,
        app_id: str,
        tenant_id: str,
        tokens: AppTokens,
        public_url: str,
        api_url: str = DEFAULT_API_URL,
        openid_metadata_url: str = PUBLIC.openid_metadata_url,
        token_issuer: str = PUBLIC.token_issuer,
        login_url: str = PUBLIC.login_endpoint,
        min_send_interval: timedelta = timedelta(0),
        conversation_limits: Sequence[SendLimit] = CONVERSATION_LIMITS,
        tenant_limit: SendLimit = TENANT_LIMIT,
        http_timeout: float = HTTP_TIMEOUT,
    ) -> None:
        self.min_send_interval = min_send_interval
        self._pacer = SendPacer(
            per_destination=lambda _conversation: conversation_limits,
            overall=(tenant_limit,),
            label=lambda conversation: f"conversation {conversation}",
        )
        self._tenant_id = tenant_id.lower()
        self._tokens = tokens
        self._public_url = public_url
        self._service_url = api_url.rstrip("/")
        self._routes = _RouteCapture()
        cloud = with_overrides(
            PUBLIC,
            openid_metadata_url=openid_metadata_url,
            token_issuer=token_issuer,
            login_endpoint=login_url.rstrip("/"),
        )
        # Every option is given: App() would otherwise read CLIENT_ID, SERVICE_URL,
        # DANGEROUSLY_ALLOW_UNAUTHENTICATED_REQUESTS and others from the environment.
        self._app = App(
            client_id=app_id,
            client_secret=None,
            token=tokens,
            tenant_id=tenant_id,
            cloud=cloud,
            service_url=self._service_url,
            client=ClientOptions(timeout=http_timeout),
            http_server_adapter=self._routes,
            messaging_endpoint=MESSAGES_PATH,
            dangerously_allow_unauthenticated_requests=False,
            state=False,
        )
        # The SDK's handler type names its response models; a plain dict is what it sends.
        self._app.on_card_action_execute(self._on_card_action)  # type: ignore[arg-type]
        self._app.on_install_add(self._on_installed)
        self._app.on_conversation_update(self._on_conversation_update)
        self._sink: VoteSink | None = None
        self._chats: dict[str, str] = {}
        """Entra object id -> the id of the person's 1:1 chat with the bot."""
        self._answered: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._initialized = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, sink: VoteSink) -> None:
        """Take clicks into ``sink``. Nothing to connect: activities arrive over HTTP."""
        if not self._initialized:
            await self._app.initialize()
            self._initialized = True
        self._sink = sink

    async def stop(self) -> None:
        """Stop taking clicks and close every connection (the SDK's and the token source's)."""
        self._sink = None
        # The SDK never closes its HTTP clients itself: the app's and its API client's.
        for http in {
            id(h): h for h in (self._app.http_client.http, self._app.api.http.http)
        }.values():
            await http.aclose()
        await self._tokens.aclose()

    async def check_health(self) -> bool:
        """Whether the app's credentials still get a token for the Bot Connector."""
        try:
            await self._tokens(PUBLIC.bot_scope, self._tenant_id)
        except TokenError:
            return False
        return True

    def router(self) -> APIRouter:
        """``POST /teams/messages``: where the Bot Connector delivers activities."""
        router = APIRouter()

        async def teams_messages(request: Request) -> Response:
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict) or _malformed_card_action(body):
                return JSONResponse(
                    {"error": "bad_request", "message": "expected a JSON activity"},
                    status_code=400,
                )
            if _never_expires(request.headers.get("authorization", "")):
                log.warning("Teams activity refused: its token has no expiry (responding 401)")
                return JSONResponse({"error": "Unauthorized"}, status_code=401)
            handler = self._routes.handler
            if handler is None:
                return JSONResponse(
                    {"error": "unavailable", "message": NOT_RUNNING}, status_code=503
                )
            result = await handler(HttpRequest(body=body, headers=dict(request.headers)))
            if result.get("body") is None:
                return Response(status_code=result["status"])
            return JSONResponse(result["body"], status_code=result["status"])

        router.add_api_route(
            MESSAGES_PATH, teams_messages, methods=["POST"], include_in_schema=False
        )
        return router

    # -- outbound ---------------------------------------------------------------------------

    async def send(self, card: ApprovalCard, destination: Destination) -> MessageRef:
        personal = destination.kind is DestinationKind.USER
        conversation = (
            await self._personal_chat(destination.target) if personal else destination.target
        )
        activity = _card_activity(render_card(card, public_url=self._public_url))
        try:
            sent = await self._post(conversation, activity)
        except DeliveryError as exc:
            if personal and _status_of(exc) in NOT_INSTALLED:
                # Uninstalled since: ask Teams for the chat again next time.
                self._chats.pop(destination.target.lower(), None)
            raise
        return MessageRef(PLATFORM, {"conversation_id": conversation, "activity_id": str(sent.id)})

    async def edit(self, ref: MessageRef, card: ApprovalCard) -> None:
        conversation, activity_id = _where(ref)
        activity = _card_activity(render_card(card, public_url=self._public_url))
        activity.id = activity_id
        await self._post(conversation, activity)

    async def reply(self, ref: MessageRef, card: ApprovalCard, text: str) -> None:
        """A follow-up in the card's thread (channels) or under it (1:1 chats)."""
        conversation, activity_id = _where(ref)
        activity = _card_activity(render_notice(text))
        if conversation.startswith("19:") and activity_id.isdigit():
            await self._post(conversation, activity, thread_of=activity_id)
            return
        activity.reply_to_id = activity_id
        await self._post(conversation, activity)

    async def _personal_chat(self, person: str) -> str:
        """The person's 1:1 chat with the bot, created (or found) by Teams if unknown."""
        aad_object_id = person.lower()
        chat = self._chats.get(aad_object_id)
        if chat is not None:
            return chat
        params = CreateConversationParams(
            members=[Account(id=aad_object_id)],
            tenant_id=self._tenant_id,
            channel_data={"tenant": {"id": self._tenant_id}},
        )
        try:
            created: ConversationResource = await self._call(
                self._app.api.conversations.create(params)
            )
        except DeliveryError as exc:
            status = _status_of(exc)
            if status in NOT_INSTALLED:
                raise DeliveryError(
                    f"cannot open a Teams chat with {aad_object_id}: the signoff app is not "
                    f"installed for them ({exc}); install it for them, see docs/teams.md",
                    permanent=True,
                ) from exc
            raise
        conversation = str(created.id)
        self._chats[aad_object_id] = conversation
        return conversation

    async def _post(
        self, conversation: str, activity: MessageActivityInput, *, thread_of: str | None = None
    ) -> Any:
        """Send (or, with an ``id``, edit) ``activity`` in ``conversation``, in the channel
        thread of ``thread_of`` if given, once Teams' windows have room for it (a
        :class:`~adapters.pacing.PacingDelay` when they will not soon)."""
        async with self._pacer.slot(_base_conversation(conversation)):
            if thread_of is not None:
                return await self._call(
                    self._app.reply(
                        conversation, thread_of, activity, service_url=self._service_url
                    )
                )
            return await self._call(
                self._app.send(conversation, activity, service_url=self._service_url)
            )

    async def _call(self, request: Any) -> Any:
        try:
            return await request
        except (httpx.HTTPError, TokenError) as exc:
            if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 401:
                self._tokens.forget()
            raise delivery_error(exc) from exc

    # -- inbound ----------------------------------------------------------------------------

    async def _on_installed(self, ctx: Any) -> None:
        """Remember a person's 1:1 chat (and Teams' service URL) when they install the app."""
        self._learn(ctx.activity)

    async def _on_conversation_update(self, ctx: Any) -> None:
        self._learn(ctx.activity)

    def _learn(self, activity: Any) -> None:
        if _tenant_of(activity) != self._tenant_id:
            return
        service_url = str(activity.service_url or "").rstrip("/")
        if service_url:
            # Teams may move a tenant to another service URL: always use the latest.
            self._service_url = service_url
        conversation = activity.conversation
        person = getattr(activity.from_, "aad_object_id", None)
        if conversation.conversation_type == "personal" and person:
            self._chats[str(person).lower()] = str(conversation.id)

    async def _on_card_action(self, ctx: Any) -> dict[str, Any]:
        """One click: answered from memory if it was seen, else decided by the core."""
        activity = ctx.activity
        seen_key = (str(activity.conversation.id), str(activity.id))
        answered = self._answered.get(seen_key)
        if answered is not None:
            log.info("Teams activity %s arrived again; answered as before", activity.id)
            return answered
        try:
            answer = await self._decide(activity)
        except Exception:
            log.exception(
                "Teams click failed (user %s, data %r)",
                getattr(activity.from_, "aad_object_id", None),
                _data(activity),
            )
            return _message(GENERIC_FAILURE)
        self._answered[seen_key] = answer
        while len(self._answered) > SEEN_ACTIVITIES:
            self._answered.popitem(last=False)
        return answer

    async def _decide(self, activity: Any) -> dict[str, Any]:
        sink = self._sink
        if sink is None:
            return _message(NOT_RUNNING)
        data = _data(activity)
        action = data.get("action")
        raw_reference = data.get("request")
        request_id = (
            raw_reference
            if action in ACTIONS
            and isinstance(raw_reference, str)
            and _REQUEST_ID.fullmatch(raw_reference)
            else None
        )
        if action == CANCEL and request_id is not None:
            shown = await sink.card(request_id)
            if shown is not None:
                return _card_answer(render_card(shown, public_url=self._public_url))
        reason = data.get("reason") if action == DENY_WITH_REASON else None
        reason = reason.strip()[:REASON_LIMIT] if isinstance(reason, str) else None
        if action == DENY_WITH_REASON and not reason and request_id is not None:
            card = await sink.card(request_id)
            if card is not None and card.require_reason:
                return _message(REASON_NEEDED)
        person = getattr(activity.from_, "aad_object_id", None)
        tenant = _tenant_of(activity)
        foreign = None
        if tenant != self._tenant_id:
            foreign = Foreign(
                FOREIGN_TENANT,
                f"tenant {tenant}: click from Microsoft Entra tenant {tenant!r}, "
                f"not {self._tenant_id!r}",
                "only members of the organisation signoff is installed in can decide",
            )
        grant_seconds = data.get(GRANT_SECONDS) if action == APPROVE else None
        if grant_seconds is not None and not _is_grant_length(grant_seconds):
            request_id = None  # not a button signoff made: refused as malformed
        click = Click(
            platform=PLATFORM,
            identity=str(person or activity.from_.id).lower(),
            request_id=request_id,
            raw_reference=str(raw_reference)[:200] if raw_reference is not None else None,
            message={
                "conversation_id": _base_conversation(str(activity.conversation.id)),
                "activity_id": str(activity.reply_to_id or ""),
            },
            verdict=Verdict.APPROVE if action in (APPROVE, CONFIRM) else Verdict.DENY,
            reason=reason or None,
            foreign=foreign,
            grant_for=(
                timedelta(seconds=grant_seconds) if _is_grant_length(grant_seconds) else None
            ),
        )
        if action == CONFIRM:
            token = data.get("token")
            click = replace(click, confirm_token=token if isinstance(token, str) else None)
        elif action == APPROVE:
            prompt = await sink.confirm_prompt(click)
            if prompt is not None:
                return _card_answer(render_confirmation(prompt))
        outcome = await sink.handle_click(click)
        return await self._answer(sink, request_id, outcome)

    async def _answer(
        self, sink: VoteSink, request_id: str | None, outcome: ClickOutcome
    ) -> dict[str, Any]:
        """The card as it now stands when the click decided, else the notice."""
        notice = click_notice(outcome)
        if notice is not None:
            return _message(notice)
        card = await sink.card(request_id) if request_id else None
        if card is None:
            return _message("Done.")
        return _card_answer(render_card(card, public_url=self._public_url))


def _is_grant_length(value: object) -> TypeGuard[int]:
    """Whether an "Approve for ..." button's length is one signoff could have made."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**9


def _malformed_card_action(body: dict[str, Any]) -> bool:
    """Whether a card action's ``value`` is not the objects Teams sends (``{action: {data:
    {...}}}``): the SDK's activity models fail on it with an error, so it is refused here."""
    if body.get("type") != "invoke" or body.get("name") != "adaptiveCard/action":
        return False
    value = body.get("value")
    action = value.get("action") if isinstance(value, dict) else None
    if not isinstance(action, dict):
        return True
    return "data" in action and not isinstance(action["data"], dict)


def _never_expires(authorization: str) -> bool:
    """Whether a bearer token says nothing of when it expires. The Teams SDK checks ``exp``
    only when a token has one; the Bot Connector's tokens always do (Microsoft's own
    validators require it), so one without is refused here rather than taken as valid for
    ever. Whatever cannot be read is left to the SDK, which refuses it; so is every other
    check, the signature first."""
    if not authorization.startswith("Bearer "):
        return False
    try:
        claims = jwt.decode(
            authorization.removeprefix("Bearer "), options={"verify_signature": False}
        )
    except jwt.InvalidTokenError:
        return False
    expiry = claims.get("exp")
    return not isinstance(expiry, int | float) or isinstance(expiry, bool)


def _message(text: str) -> dict[str, Any]:
    """An invoke answer Teams shows the person who clicked, and no one else."""
    return {"statusCode": 200, "type": MESSAGE_CONTENT_TYPE, "value": notice_text(text)}


def _card_answer(card: dict[str, Any]) -> dict[str, Any]:
    """An invoke answer that shows ``card`` to the person who clicked, in place of theirs."""
    return {"statusCode": 200, "type": CARD_CONTENT_TYPE, "value": card}


def _card_activity(card: dict[str, Any]) -> MessageActivityInput:
    return MessageActivityInput().add_attachments(
        Attachment(content_type=CARD_CONTENT_TYPE, content=card)
    )


def _data(activity: Any) -> dict[str, Any]:
    value = getattr(activity, "value", None)
    action = getattr(value, "action", None)
    data = getattr(action, "data", None)
    return data if isinstance(data, dict) else {}


def _tenant_of(activity: Any) -> str | None:
    """The activity's tenant: the conversation's, else the channel data's."""
    tenant = getattr(activity.conversation, "tenant_id", None)
    if not tenant:
        channel_data = getattr(activity, "channel_data", None)
        tenant_info = getattr(channel_data, "tenant", None)
        tenant = getattr(tenant_info, "id", None)
    return str(tenant).lower() if tenant else None


def _base_conversation(conversation_id: str) -> str:
    """A channel thread's conversation id names the thread (``;messageid=``); the card's
    reference names the channel."""
    return conversation_id.split(";", 1)[0]


def _where(ref: MessageRef) -> tuple[str, str]:
    conversation, activity = ref.data.get("conversation_id"), ref.data.get("activity_id")
    if not isinstance(conversation, str) or not isinstance(activity, str):
        raise DeliveryError(f"not a Teams message reference: {ref.data!r}", permanent=True)
    return conversation, activity
