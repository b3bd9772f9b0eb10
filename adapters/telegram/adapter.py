"""The Telegram adapter: cards out through the Bot API, clicks and reasons in as votes.

python-telegram-bot runs inside our event loop (``initialize``/``start``, and
``updater.start_polling`` in polling mode; never ``run_polling``). In webhook mode our own
route at ``/telegram/webhook`` checks Telegram's secret header in constant time and hands
updates to the same application. Polling can be switched on and off on its own
(``start_inbound``/``stop_inbound``): with several processes only one polls, while every
process sends. Buttons carry an opaque reference; a click counts only when it comes from
the message we posted for that request, and the same update twice changes nothing. The
core decides; this module only translates.

Under a policy that needs approvals confirmed, Approve answers with a second message (a
reply to the card, mentioning the person): the risk, the describe line and the params,
with "Confirm approve", whose reference carries the confirmation token bound to that
person, and "Cancel". Confirm approve counts as a press on the card it replies to; the
message is then edited to say what happened, without buttons.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import warnings
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from telegram import CallbackQuery as TelegramCallbackQuery
from telegram import (
    ForceReply,
    LinkPreviewOptions,
    MaybeInaccessibleMessage,
    Message,
    ReplyParameters,
    Update,
)
from telegram import User as TelegramUser
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application, ContextTypes, TypeHandler
from telegram.warnings import PTBDeprecationWarning

from adapters.telegram.callbacks import ButtonAction, ButtonRef, decode_button
from adapters.telegram.pacing import (
    GROUP_LIMIT,
    MAX_PACING_WAIT,
    OVERALL_LIMIT,
    PER_CHAT_INTERVAL,
    SendLimit,
    SendPacer,
)
from adapters.telegram.rendering import (
    ASK_REASON,
    CONFIRM_SHOWN,
    FAILED,
    WORKING,
    confirmation_closed,
    late_answer,
    outcome_text,
    reason_prompt,
    render_card,
    render_confirmation,
    render_notice,
)
from approvals.card import ApprovalCard
from approvals.clicks import Click, ClickOutcome, ConfirmPrompt, ReasonPrompt
from approvals.directory import Destination
from approvals.model import Verdict
from approvals.outcomes import Applied
from approvals.ports import DeliveryError, MessageRef, VoteSink

STOP_GRACE_SECONDS = 5.0
"""How long stop() lets acknowledged votes finish before cancelling them."""

log = logging.getLogger(__name__)

PLATFORM = "telegram"
WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
DEFAULT_API_URL = "https://api.telegram.org/bot"
ALLOWED_UPDATES = ("callback_query", "message")
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
ACK_BUDGET = timedelta(milliseconds=250)
"""How long a click waits for the core before the spinner is answered with "received".

A vote usually takes milliseconds, so its outcome is the toast. Under load the spinner
is stopped at this point instead, and the outcome follows: the card's edit when the vote
counted, otherwise a reply to the card naming the person."""
POLL_TIMEOUT = timedelta(seconds=10)
CONCURRENT_UPDATES = 32
SEEN_UPDATES = 10_000
"""How many recent update ids are remembered to drop replays."""
"""Cards sent by this process, accepted before the outbox has stored their reference."""
RECONNECT_DELAY = timedelta(seconds=1)
MAX_RECONNECT_DELAY = timedelta(minutes=1)
"""Backoff while the Bot API is unreachable at start-up."""
PROMPT_LIFETIME = timedelta(hours=1)
MAX_PROMPTS = 1_000

Mode = Literal["polling", "webhook"]


class TelegramConfigError(ValueError):
    """The adapter cannot run with these settings (webhook mode without a secret...)."""


@dataclass(frozen=True)
class _Prompt:
    """A "why deny?" question waiting for one person's reply, and the card it is about."""

    request_id: str
    user_id: int
    expires: float
    card: dict[str, int]


class _RecentIds:
    """A bounded set that remembers insertion order and forgets the oldest."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[object, None] = OrderedDict()

    def add(self, item: object) -> bool:
        """Add ``item``; ``False`` when it was already there."""
        if item in self._items:
            return False
        self._items[item] = None
        while len(self._items) > self._size:
            self._items.popitem(last=False)
        return True


def _retry_after(exc: RetryAfter) -> timedelta:
    with warnings.catch_warnings():
        # Without PTB_TIMEDELTA=1 the attribute is an int and reading it warns.
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = exc.retry_after
    return value if isinstance(value, timedelta) else timedelta(seconds=float(value))


def _is_not_modified(exc: TelegramError) -> bool:
    return isinstance(exc, BadRequest) and "not modified" in exc.message.lower()


class TelegramAdapter:
    """Approval cards in Telegram chats, groups and private chats.

    Attributes:
        platform: ``telegram``.
        min_send_interval: the least time between two messages to one chat.
    """

    platform = PLATFORM

    def __init__(
        self,
        *,
        token: str,
        public_url: str,
        mode: Mode = "polling",
        webhook_secret: str | None = None,
        api_url: str = DEFAULT_API_URL,
        min_send_interval: timedelta = PER_CHAT_INTERVAL,
        group_limit: SendLimit = GROUP_LIMIT,
        overall_limit: SendLimit = OVERALL_LIMIT,
        max_pacing_wait: timedelta = MAX_PACING_WAIT,
        poll_timeout: timedelta = POLL_TIMEOUT,
        ack_budget: timedelta = ACK_BUDGET,
    ) -> None:
        if mode not in ("polling", "webhook"):
            raise TelegramConfigError(f"unknown Telegram mode {mode!r}")
        if mode == "webhook" and not webhook_secret:
            raise TelegramConfigError(
                "Telegram webhook mode needs a webhook_secret: without it anyone who finds "
                f"{WEBHOOK_PATH} could post fake clicks"
            )
        self._token = token
        self._public_url = public_url.rstrip("/")
        self.mode: Mode = mode
        self._webhook_secret = webhook_secret
        self._api_url = api_url
        self.min_send_interval = min_send_interval
        self._pacer = SendPacer(
            per_chat=min_send_interval,
            group=group_limit,
            overall=overall_limit,
            max_wait=max_pacing_wait,
        )
        self._poll_timeout = poll_timeout
        self._ack_budget = ack_budget.total_seconds()
        self._application: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._sink: VoteSink | None = None
        self._seen = _RecentIds(SEEN_UPDATES)
        self._prompts: OrderedDict[tuple[int, int], _Prompt] = OrderedDict()
        self._background: set[asyncio.Future[Any]] = set()
        self._connecting: asyncio.Task[None] | None = None
        self._inbound_wanted = True
        self._polling_switch = asyncio.Lock()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def webhook_url(self) -> str:
        return f"{self._public_url}{WEBHOOK_PATH}"

    @property
    def inbound_is_singleton(self) -> bool:
        """Polling is one-per-token (Telegram answers a second poller with 409 Conflict)."""
        return self.mode == "polling"

    async def start(self, sink: VoteSink, *, inbound: bool = True) -> None:
        """Connect (``getMe``), then poll or register the webhook.

        With ``inbound=False`` polling waits for :meth:`start_inbound` (another process may
        be polling with this token). A rejected token fails at once. When the Bot API cannot
        be reached, start returns anyway and keeps trying in the background: cards wait in
        the outbox meanwhile, and the rest of signoff runs.
        """
        if self._application is not None or self._connecting is not None:
            return
        self._sink = sink
        self._inbound_wanted = inbound
        try:
            await self._connect()
        except NetworkError as exc:
            if isinstance(exc, BadRequest):
                raise
            log.warning("Telegram is unreachable (%s); retrying in the background", exc)
            self._connecting = asyncio.create_task(self._keep_connecting(), name="telegram-connect")

    async def _keep_connecting(self) -> None:
        delay = RECONNECT_DELAY.total_seconds()
        try:
            while True:
                await asyncio.sleep(delay)
                try:
                    await self._connect()
                except NetworkError as exc:
                    delay = min(delay * 2, MAX_RECONNECT_DELAY.total_seconds())
                    log.warning("Telegram still unreachable (%s); next try in %.0fs", exc, delay)
                else:
                    return
        except Exception:
            log.exception("the Telegram adapter could not start")
        finally:
            self._connecting = None

    async def _connect(self) -> None:
        builder = (
            Application.builder()
            .token(self._token)
            .base_url(self._api_url)
            .concurrent_updates(CONCURRENT_UPDATES)
            .job_queue(None)
        )
        if self.mode == "webhook":
            builder = builder.updater(None)
        application = builder.build()
        application.add_handler(TypeHandler(Update, self._on_update))
        application.add_error_handler(self._on_error)
        try:
            await application.initialize()
        except BaseException:
            await application.bot.shutdown()  # close the HTTP clients getMe opened
            raise
        try:
            await application.start()
            # Set before updates can arrive: the webhook route hands them to this application.
            self._application = application
            if self.mode == "polling":
                await self._switch_polling(application)
            else:
                await application.bot.set_webhook(
                    url=self.webhook_url,
                    secret_token=self._webhook_secret,
                    allowed_updates=ALLOWED_UPDATES,
                )
        except BaseException:
            self._application = None
            if application.running:
                await application.stop()
            await application.shutdown()
            raise
        log.info("Telegram adapter started in %s mode", self.mode)

    async def start_inbound(self) -> None:
        """Start polling (in polling mode), now or as soon as the Bot API is reachable."""
        self._inbound_wanted = True
        application = self._application
        if application is not None and self.mode == "polling":
            await self._switch_polling(application)

    async def stop_inbound(self) -> None:
        """Stop polling at once (confirming the last offset); sending keeps working."""
        self._inbound_wanted = False
        application = self._application
        if application is not None and self.mode == "polling":
            await self._switch_polling(application)

    async def _switch_polling(self, application: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Make polling match ``_inbound_wanted``; one switch at a time."""
        updater = application.updater
        assert updater is not None
        async with self._polling_switch:
            if self._inbound_wanted and not updater.running:
                await updater.start_polling(
                    timeout=self._poll_timeout,
                    allowed_updates=ALLOWED_UPDATES,
                    drop_pending_updates=False,
                    error_callback=self._on_polling_error,
                )
                log.info("Telegram polling started")
            elif not self._inbound_wanted and updater.running:
                # Cancels the parked getUpdates at once, then confirms the last offset.
                await updater.stop()
                log.info("Telegram polling stopped")

    async def stop(self) -> None:
        """Stop polling (confirming the last offset) and close the HTTP clients."""
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
        application, self._application = self._application, None
        if application is None:
            return
        try:
            if application.updater is not None and application.updater.running:
                await application.updater.stop()
            if application.running:
                await application.stop()
        finally:
            if self._background:
                # Votes already acknowledged ("counting your vote") get time to finish.
                await asyncio.wait(set(self._background), timeout=STOP_GRACE_SECONDS)
            for task in list(self._background):
                task.cancel()
            await application.shutdown()

    async def check_health(self) -> bool:
        application = self._application
        if application is None:
            return False
        try:
            await application.bot.get_me()
        except TelegramError as exc:
            log.warning("Telegram health check failed: %s", exc)
            return False
        return True

    # -- delivery ---------------------------------------------------------------------------

    def _bot(self) -> Any:
        application = self._application
        if application is None:
            raise DeliveryError("the Telegram adapter is not running")
        return application.bot

    @contextlib.asynccontextmanager
    async def _sending(self, chat_id: int) -> AsyncIterator[Any]:
        """One paced request to ``chat_id`` (yields the bot); errors become DeliveryError."""
        bot = self._bot()
        try:
            async with self._pacer.slot(chat_id):
                yield bot
        except TelegramError as exc:
            raise self._delivery_error(exc, chat_id) from exc

    def _delivery_error(self, exc: TelegramError, chat_id: int) -> DeliveryError:
        if isinstance(exc, RetryAfter):
            # The outbox holds the chat until then, in every process.
            wait = _retry_after(exc)
            return DeliveryError(f"Telegram flood control for chat {chat_id}", retry_after=wait)
        if isinstance(exc, ChatMigrated):
            return DeliveryError(
                f"chat {chat_id} became supergroup {exc.new_chat_id}: update the config",
                permanent=True,
            )
        if isinstance(exc, Forbidden | BadRequest):
            # Bot removed or blocked, person never started the bot, chat not found, message
            # gone or rejected: the same request will fail again.
            return DeliveryError(f"Telegram refused: {exc.message}", permanent=True)
        return DeliveryError(f"Telegram unreachable: {exc.message}")

    async def send(self, card: ApprovalCard, destination: Destination) -> MessageRef:
        """Post a card to a chat or group, or privately to a person (their user id)."""
        try:
            chat_id = int(destination.target)
        except ValueError as exc:
            raise DeliveryError(
                f"not a Telegram chat id: {destination.target!r}", permanent=True
            ) from exc
        rendered = render_card(card, self._public_url)
        async with self._sending(chat_id) as bot:
            message = await bot.send_message(
                chat_id=chat_id,
                text=rendered.text,
                parse_mode=ParseMode.HTML,
                reply_markup=rendered.keyboard,
                link_preview_options=NO_PREVIEW,
            )
        return MessageRef(PLATFORM, {"chat_id": chat_id, "message_id": message.message_id})

    @staticmethod
    def _where(ref: MessageRef) -> tuple[int, int]:
        try:
            return int(ref.data["chat_id"]), int(ref.data["message_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DeliveryError(f"not a Telegram message: {ref.data!r}", permanent=True) from exc

    async def edit(self, ref: MessageRef, card: ApprovalCard) -> None:
        """Re-render a posted card; a final card loses its buttons."""
        chat_id, message_id = self._where(ref)
        rendered = render_card(card, self._public_url)
        async with self._sending(chat_id) as bot:
            try:
                await bot.edit_message_text(
                    text=rendered.text,
                    chat_id=chat_id,
                    message_id=message_id,
                    parse_mode=ParseMode.HTML,
                    reply_markup=rendered.keyboard,
                    link_preview_options=NO_PREVIEW,
                )
            except BadRequest as exc:
                if not _is_not_modified(exc):
                    raise

    async def reply(self, ref: MessageRef, card: ApprovalCard, text: str) -> None:
        """A reminder, as a reply to the card."""
        chat_id, message_id = self._where(ref)
        async with self._sending(chat_id) as bot:
            await bot.send_message(
                chat_id=chat_id,
                text=render_notice(text),
                parse_mode=ParseMode.HTML,
                reply_parameters=ReplyParameters(message_id, allow_sending_without_reply=True),
                link_preview_options=NO_PREVIEW,
            )

    # -- webhook ----------------------------------------------------------------------------

    def router(self) -> APIRouter:
        """``POST /telegram/webhook`` in webhook mode; no routes in polling mode."""
        router = APIRouter()
        if self.mode != "webhook":
            return router

        @router.post(WEBHOOK_PATH, include_in_schema=False)
        async def telegram_webhook(request: Request) -> Response:
            return await self.handle_webhook(request)

        return router

    async def handle_webhook(self, request: Request) -> Response:
        """Check the secret header in constant time, then queue the update."""
        secret = self._webhook_secret
        given = request.headers.get(SECRET_HEADER, "")
        if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
            log.warning("Telegram webhook call with a wrong or missing secret refused")
            return _error(403, "forbidden", "wrong or missing secret token")
        application = self._application
        if application is None or not application.running:
            return _error(503, "unavailable", "the Telegram adapter is not running")
        try:
            data = await request.json()
            update = Update.de_json(data, application.bot) if isinstance(data, dict) else None
        except Exception:
            update = None
        if update is None:
            return _error(400, "invalid", "not a Telegram update")
        await application.update_queue.put(update)
        return Response(status_code=200)

    # -- inbound ----------------------------------------------------------------------------

    @property
    def _clicks(self) -> VoteSink:
        """Where clicks go: the sink given to :meth:`start` (updates come only after it)."""
        if self._sink is None:
            raise RuntimeError("the Telegram adapter took a click before it was started")
        return self._sink

    async def _on_update(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        if not self._seen.add(update.update_id):
            log.info("Telegram update %s seen before; ignored", update.update_id)
            return
        if update.callback_query is not None:
            query = update.callback_query
            try:
                await self._on_click(query)
            except Exception:
                # A store error must not leave the person with a spinner and no answer.
                log.exception("handling Telegram click %s failed", query.id)
                await self._answer(query, FAILED)
        elif update.message is not None and update.message.reply_to_message is not None:
            await self._on_reply(update.message)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error(
            "handling Telegram update failed: %r",
            getattr(update, "update_id", update),
            exc_info=context.error,
        )

    def _on_polling_error(self, exc: TelegramError) -> None:
        log.warning("Telegram getUpdates failed (retrying): %s", exc)

    async def _answer(self, query: TelegramCallbackQuery, text: str) -> None:
        try:
            await query.answer(text=text)
        except TelegramError as exc:
            log.warning("answering Telegram callback %s failed: %s", query.id, exc)

    async def _on_click(self, query: TelegramCallbackQuery) -> None:
        ref = decode_button(query.data)
        message = query.message
        card = None
        if message is not None:
            card = {"chat_id": message.chat.id, "message_id": message.message_id}
        if ref is not None and ref.action is ButtonAction.DENY_WITH_REASON:
            await self._ask_reason(query, ref, card)
            return
        if ref is not None and ref.action in (ButtonAction.CONFIRM, ButtonAction.CANCEL):
            await self._on_confirmation_button(query, ref)
            return
        verdict = (
            Verdict.DENY if ref is not None and ref.action is ButtonAction.DENY else Verdict.APPROVE
        )
        click = Click(
            platform=PLATFORM,
            identity=str(query.from_user.id),
            request_id=ref.request_id if ref is not None else None,
            raw_reference=query.data,
            message=card,
            verdict=verdict,
            grant_for=(
                timedelta(seconds=ref.grant_seconds)
                if ref is not None and ref.grant_seconds is not None
                else None
            ),
        )
        if verdict is Verdict.APPROVE and ref is not None:
            prompt = await self._clicks.confirm_prompt(click)
            if prompt is not None:
                await self._show_confirmation(query, prompt)
                return
        vote = asyncio.ensure_future(self._clicks.handle_click(click))
        # Waited for off the update handler: a slow vote must not hold one of the few
        # updates handled at once while other people's clicks wait for their answer.
        self._keep(asyncio.ensure_future(self._answer_vote(query, vote, message, click.request_id)))

    async def _answer_vote(
        self,
        query: TelegramCallbackQuery,
        vote: asyncio.Future[ClickOutcome],
        message: MaybeInaccessibleMessage | None,
        request_id: str | None,
    ) -> None:
        """Answer a click with its vote's outcome, or with "received" once the budget is
        spent (the outcome then follows, see :meth:`_answer_late`)."""
        try:
            outcome = await asyncio.wait_for(asyncio.shield(vote), self._ack_budget)
        except TimeoutError:
            # Stop the spinner now; the outcome follows once the vote is through.
            await self._answer(query, WORKING)
            self._keep(vote)
            if message is not None:
                self._keep(asyncio.ensure_future(self._answer_late(vote, query.from_user, message)))
            return
        except Exception:
            log.exception(
                "Telegram vote on request %s failed", request_id, extra={"request_id": request_id}
            )
            await self._answer(query, FAILED)
            return
        await self._answer(query, outcome_text(outcome))

    async def _answer_late(
        self, vote: asyncio.Future[ClickOutcome], user: TelegramUser, card: MaybeInaccessibleMessage
    ) -> None:
        """Tell the outcome of a vote whose spinner was stopped before it was through.

        A vote that counted shows on the card (its edit is queued with the vote); anything
        else (a refusal, already decided, a failure) is a reply to the card.
        """
        try:
            outcome: ClickOutcome | None = await vote
        except Exception:
            outcome = None  # logged where the vote is kept
        if isinstance(outcome, Applied):
            return
        text = FAILED if outcome is None else outcome_text(outcome)
        try:
            async with self._sending(card.chat.id) as bot:
                await bot.send_message(
                    chat_id=card.chat.id,
                    text=late_answer(user.id, user.first_name, text),
                    parse_mode=ParseMode.HTML,
                    reply_parameters=ReplyParameters(
                        card.message_id, allow_sending_without_reply=True
                    ),
                    link_preview_options=NO_PREVIEW,
                )
        except DeliveryError as exc:
            log.warning("telling a late outcome in Telegram chat %s failed: %s", card.chat.id, exc)

    async def _show_confirmation(self, query: TelegramCallbackQuery, prompt: ConfirmPrompt) -> None:
        """The second button: a reply to the card that shows what is approved, with
        Confirm approve (carrying the person's confirmation token) and Cancel."""
        card = query.message
        assert card is not None, "the core offers a confirmation only for a click on the card"
        user = query.from_user
        text, keyboard = render_confirmation(user.id, user.first_name, prompt, self._public_url)
        await self._answer(query, CONFIRM_SHOWN)
        try:
            async with self._sending(card.chat.id) as bot:
                await bot.send_message(
                    chat_id=card.chat.id,
                    text=text,
                    parse_mode=ParseMode.HTML,
                    reply_markup=keyboard,
                    reply_parameters=ReplyParameters(
                        card.message_id, allow_sending_without_reply=True
                    ),
                    link_preview_options=NO_PREVIEW,
                )
        except DeliveryError as exc:
            log.warning("showing a confirmation in Telegram chat %s failed: %s", card.chat.id, exc)

    async def _on_confirmation_button(self, query: TelegramCallbackQuery, ref: ButtonRef) -> None:
        """Confirm approve or Cancel on a confirmation message.

        Confirm approve is the approval, as a press on the card the confirmation replies to
        (so the core checks that card as for any click); its token is checked by the core
        against the person pressing. Cancel works only for the person it was shown to.
        """
        message = query.message
        user = query.from_user
        shown_for = message if isinstance(message, Message) else None
        if ref.action is ButtonAction.CANCEL:
            if ref.extra != str(user.id):
                await self._answer(query, "This confirmation is someone else's")
                return
            await self._answer(query, "Cancelled: nothing was recorded")
            await self._close_confirmation(shown_for, user, "cancelled; nothing was recorded.")
            return
        replied = shown_for.reply_to_message if shown_for is not None else None
        card = None
        if replied is not None:
            card = {"chat_id": replied.chat.id, "message_id": replied.message_id}
        click = Click(
            platform=PLATFORM,
            identity=str(user.id),
            request_id=ref.request_id,
            raw_reference=query.data,
            message=card,
            verdict=Verdict.APPROVE,
            confirm_token=ref.extra,
        )
        try:
            outcome = await self._clicks.handle_click(click)
        except Exception:
            log.exception(
                "Telegram vote on request %s failed",
                ref.request_id,
                extra={"request_id": ref.request_id},
            )
            await self._answer(query, FAILED)
            return
        await self._answer(query, outcome_text(outcome))
        if isinstance(outcome, Applied):
            await self._close_confirmation(shown_for, user, "approval confirmed and counted.")

    async def _close_confirmation(
        self, message: Message | None, user: TelegramUser, what: str
    ) -> None:
        """Tidy up a used or cancelled confirmation: its text says so, its buttons go."""
        if message is None:
            return
        try:
            async with self._sending(message.chat.id) as bot:
                await bot.edit_message_text(
                    chat_id=message.chat.id,
                    message_id=message.message_id,
                    text=confirmation_closed(user.id, user.first_name, what),
                    parse_mode=ParseMode.HTML,
                    link_preview_options=NO_PREVIEW,
                )
        except DeliveryError as exc:
            log.warning("closing a Telegram confirmation failed: %s", exc)

    def _keep(self, task: asyncio.Future[Any]) -> None:
        def done(finished: asyncio.Future[Any]) -> None:
            self._background.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("Telegram vote failed", exc_info=finished.exception())

        self._background.add(task)
        task.add_done_callback(done)

    async def _ask_reason(
        self, query: TelegramCallbackQuery, ref: ButtonRef, card: dict[str, int] | None
    ) -> None:
        """Check the person may deny, then ask for the reason with a ForceReply message."""
        user = query.from_user
        click = Click(
            platform=PLATFORM,
            identity=str(user.id),
            request_id=ref.request_id,
            raw_reference=query.data,
            message=card,
            verdict=Verdict.DENY,
        )
        prompt_or_refusal = await self._clicks.reason_prompt(click)
        if not isinstance(prompt_or_refusal, ReasonPrompt):
            await self._answer(query, outcome_text(prompt_or_refusal))
            return
        assert card is not None, "the core offers the form only for a click on the card"
        chat_id, card_message_id = card["chat_id"], card["message_id"]
        await self._answer(query, ASK_REASON)
        try:
            async with self._sending(chat_id) as bot:
                prompt: Message = await bot.send_message(
                    chat_id=chat_id,
                    text=reason_prompt(user.id, user.first_name),
                    parse_mode=ParseMode.HTML,
                    reply_markup=ForceReply(selective=True, input_field_placeholder="Reason"),
                    reply_parameters=ReplyParameters(
                        card_message_id, allow_sending_without_reply=True
                    ),
                    link_preview_options=NO_PREVIEW,
                )
        except DeliveryError as exc:
            log.warning("asking for a reason in Telegram chat %s failed: %s", chat_id, exc)
            return
        loop = asyncio.get_running_loop()
        self._prompts[(chat_id, prompt.message_id)] = _Prompt(
            ref.request_id, user.id, loop.time() + PROMPT_LIFETIME.total_seconds(), card
        )
        while len(self._prompts) > MAX_PROMPTS:
            self._prompts.popitem(last=False)

    async def _on_reply(self, message: Message) -> None:
        """A reply to a reason prompt, from the person it asked, is their reason."""
        replied = message.reply_to_message
        user = message.from_user
        if replied is None or user is None:
            return
        key = (message.chat.id, replied.message_id)
        prompt = self._prompts.get(key)
        if prompt is None or prompt.user_id != user.id:
            return
        now = asyncio.get_running_loop().time()
        reason = (message.text or message.caption or "").strip()
        if prompt.expires < now:
            del self._prompts[key]
            return
        if not reason:
            return
        del self._prompts[key]
        click = Click(
            platform=PLATFORM,
            identity=str(user.id),
            request_id=prompt.request_id,
            raw_reference=None,
            message=prompt.card,
            verdict=Verdict.DENY,
            reason=reason,
        )
        try:
            text = outcome_text(await self._clicks.handle_click(click))
        except Exception:
            log.exception(
                "Telegram vote on request %s failed",
                prompt.request_id,
                extra={"request_id": prompt.request_id},
            )
            text = FAILED
        try:
            async with self._sending(message.chat.id) as bot:
                await bot.send_message(
                    chat_id=message.chat.id,
                    text=render_notice(text),
                    parse_mode=ParseMode.HTML,
                    reply_parameters=ReplyParameters(
                        message.message_id, allow_sending_without_reply=True
                    ),
                    link_preview_options=NO_PREVIEW,
                )
        except DeliveryError as exc:
            log.warning("answering a reason in Telegram chat %s failed: %s", message.chat.id, exc)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
