"""The outbox dispatcher: delivers queued card sends and edits through the adapters.

Rows are written in the same transaction as the change that caused them, so nothing is
lost between a decision and its message. The dispatcher leases the oldest row of each
ready destination (so every destination sees its messages in order), sends through that
platform's adapter, records the platform's message reference, and on failure retries with
capped exponential backoff and jitter, honouring the platform's ``Retry-After``. A row
that keeps failing past the maximum age is dead-lettered and logged. Destinations are
independent: one platform being down never delays another.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from approvals import flood
from approvals.audit import AuditKind
from approvals.card import ApprovalCard, CardBuilder, build_card, build_digest_card
from approvals.clicks import RecentCards
from approvals.clock import Clock
from approvals.crashpoints import CrashPoint, crash_point
from approvals.directory import Destination
from approvals.log_context import about_request
from approvals.model import ApprovalRequest
from approvals.ports import Adapter, DeliveryError, MessageRef
from approvals.service import DIGEST, EDIT, REMIND, SEND, WEBHOOK
from approvals.store import (
    DeliveryRecord,
    OutboxItem,
    SqlStore,
    StoreBusyError,
    SyncReads,
    WriteTx,
)
from approvals.webhooks import WebhookDelivered, WebhookSender

log = logging.getLogger(__name__)

SENT = "sent"
DEAD = "dead"
DEFAULT_LEASE = timedelta(seconds=180)
"""How long a claimed row is this dispatcher's alone; a process that dies holding rows
delays them by this much at most (another dispatcher takes them over after it)."""
_RECORD_ATTEMPTS = 5
MIN_IDLE_WAIT = 0.002
"""Seconds: the shortest idle sleep, so a row due "now" cannot make the loop spin."""


class SendPace:
    """When a destination may be sent to next, as close to its limit as is safe.

    A platform counts a message when the message reaches it: somewhere between our call
    and its answer. Counting the interval from the answer (or from when the result is
    written) wastes the call's own time on every message; counting it from the call is
    right while calls take their usual time, but after a call that was slow to arrive the
    next, faster one would reach the platform too soon. So the interval counts from the
    call, plus however much longer this call took than the fastest recent call to the same
    platform: a slow call's message is assumed to have arrived late by that much. Until a
    platform has answered ``trusted_after`` calls, its fastest call is not known (the first
    calls pay for new connections), and the interval counts from the answer.
    """

    def __init__(self, remembered: int = 32, trusted_after: int = 8) -> None:
        self._recent: dict[str, deque[timedelta]] = {}
        self._remembered = remembered
        self._trusted_after = trusted_after

    def next_send_at(
        self, platform: str, called_at: datetime, answered_at: datetime, interval: timedelta
    ) -> datetime:
        took = max(answered_at - called_at, timedelta(0))
        recent = self._recent.get(platform)
        if recent is None:
            recent = self._recent[platform] = deque(maxlen=self._remembered)
        recent.append(took)
        fastest = min(recent) if len(recent) >= self._trusted_after else timedelta(0)
        return called_at + interval + (took - fastest)


@dataclass(frozen=True)
class RetryPolicy:
    """How failed deliveries are retried.

    Attributes:
        base_delay: the first retry's delay before jitter; each further attempt doubles it.
        max_delay: the cap on any one delay (a platform's Retry-After may exceed it).
        max_age: a row still failing this long after it was written is dead-lettered.
    """

    base_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(hours=24)

    def delay(self, attempts: int, rng: random.Random) -> timedelta:
        """Capped exponential backoff with "equal jitter": half fixed, half random."""
        ceiling = min(self.max_delay, self.base_delay * (1 << min(attempts - 1, 30)))
        half = ceiling / 2
        return half + half * rng.random()


def _plain_card(request: ApprovalRequest, note: str | None) -> ApprovalCard:
    return build_card(request, note=note)


class OutboxDispatcher:
    """Sends outbox rows through adapters. Several dispatchers may share one database."""

    def __init__(
        self,
        store: SqlStore,
        adapters: Mapping[str, Adapter],
        clock: Clock,
        *,
        retry: RetryPolicy | None = None,
        lease: timedelta = DEFAULT_LEASE,
        batch: int = 50,
        rng: random.Random | None = None,
        on_result: Callable[[str, str], None] | None = None,
        webhooks: WebhookSender | None = None,
        recent_cards: RecentCards | None = None,
        cards: CardBuilder | None = None,
    ) -> None:
        self._store = store
        self._adapters = dict(adapters)
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._lease = lease
        self._batch = batch
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._wake = asyncio.Event()
        self._on_result = on_result
        self._webhooks = webhooks
        self._pace = SendPace()
        self._recent_cards = recent_cards
        self._cards: CardBuilder = cards or _plain_card

    def _report(self, destination: str, result: str) -> None:
        if self._on_result is not None:
            self._on_result(Destination.from_key(destination).platform, result)

    def use_adapter(self, platform: str, adapter: Adapter | None) -> None:
        """Deliver to ``platform`` through ``adapter`` from now on (``None``: no adapter).

        Used when a config reload replaces an adapter; rows already handed to the old one
        finish there.
        """
        if adapter is None:
            self._adapters.pop(platform, None)
        else:
            self._adapters[platform] = adapter

    def wake(self) -> None:
        """Look at the outbox now rather than at the next idle tick (new rows were written)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Deliver every row that is ready now, one per destination. Returns rows handled."""
        items = await self._claim(self._batch)
        if items:
            await asyncio.gather(*(self._deliver_tagged(item) for item in items))
        return len(items)

    async def drain(self, *, max_rounds: int = 1000) -> int:
        """Run until nothing is ready (tests and shutdown). Returns rows handled."""
        total = 0
        for _round in range(max_rounds):
            handled = await self.run_once()
            if not handled:
                break
            total += handled
        return total

    async def run_forever(
        self, stop: asyncio.Event, *, idle: float = 0.5, max_in_flight: int = 256
    ) -> None:
        """Deliver until ``stop`` is set, sleeping up to ``idle`` seconds when idle.

        Every destination is its own lane: a claimed row is delivered in a task of its own,
        and the loop claims again at once instead of waiting for the round to finish, so a
        slow or stuck destination (a webhook receiver that holds the connection, a channel
        paused by a 429) never delays another. A destination has at most one row in flight
        (the claim takes only the oldest unfinished row of each), which keeps a card's post
        and its later edits in order. At most ``max_in_flight`` deliveries run at once.
        """
        in_flight: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            self._wake.set()  # its destination's next row may be ready now

        try:
            while not stop.is_set():
                # Cleared before the claim, so a wake() during it is not lost.
                self._wake.clear()
                room = max_in_flight - len(in_flight)
                claimed: list[OutboxItem] = []
                if room > 0:
                    try:
                        claimed = await self._claim(min(room, self._batch))
                    except Exception:
                        log.exception("outbox claim failed; trying again")
                for item in claimed:
                    task = asyncio.create_task(self._deliver_logged(item))
                    in_flight.add(task)
                    task.add_done_callback(finished)
                if claimed and len(claimed) == min(room, self._batch):
                    continue  # there may be more ready rows than one claim takes
                waiters = {
                    asyncio.ensure_future(self._wake.wait()),
                    asyncio.ensure_future(stop.wait()),
                }
                _done, pending = await asyncio.wait(
                    waiters,
                    timeout=await self._idle_wait(idle),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for waiter in pending:
                    waiter.cancel()
        except asyncio.CancelledError:
            for task in in_flight:
                task.cancel()
            raise
        finally:
            # Stopping lets deliveries already on the wire finish (each is bounded by its
            # timeout); what is not finished is picked up again after its lease.
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _claim(self, limit: int) -> list[OutboxItem]:
        now = self._clock.now()
        lease_until = now + self._lease
        return await self._store.run(lambda tx: tx.claim_outbox(now, lease_until, limit))

    async def _deliver_logged(self, item: OutboxItem) -> None:
        try:
            await self._deliver_tagged(item)
        except Exception:
            log.exception(
                "delivery of outbox row %s failed; it is retried after its lease", item.id
            )

    async def _idle_wait(self, idle: float) -> float:
        """How long to sleep with nothing ready: until the next paced or retried row is due
        (so a destination paced at 10 messages a second really gets 10), at most ``idle``."""
        now = self._clock.now()
        try:
            ready_at = await self._store.query(lambda reads: reads.next_outbox_ready_at(now))
        except Exception:
            log.exception("could not read the outbox's next ready time")
            return idle
        if ready_at is None:
            return idle
        return min(idle, max(MIN_IDLE_WAIT, (ready_at - now).total_seconds()))

    async def _deliver_tagged(self, item: OutboxItem) -> None:
        """Deliver one row; whatever is logged meanwhile names its request."""
        with about_request(item.request_id):
            await self._deliver(item)

    async def _deliver(self, item: OutboxItem) -> None:
        if item.kind == WEBHOOK:
            await self._deliver_webhook(item)
            return
        destination = Destination.from_key(item.destination)
        adapter = self._adapters.get(destination.platform)
        if adapter is None:
            await self._dead(item, f"no adapter for platform {destination.platform!r}")
            return
        card, deliveries = await self._store.query(lambda reads: self._card_now(reads, item))
        if card is None:
            await self._dead(item, f"request {item.request_id} no longer exists")
            return
        delivery = next((d for d in deliveries if d.destination == item.destination), None)
        ref = None
        if delivery and delivery.ref and flood.digest_of(delivery.ref) is None:
            ref = MessageRef(destination.platform, delivery.ref)
        if ref is None and item.kind not in (SEND, DIGEST):
            # The card was never posted (its send was dead-lettered): nothing to update.
            await self._finish(item, error="no posted card to update")
            return
        if item.kind not in (SEND, EDIT, REMIND, DIGEST):
            await self._dead(item, f"unknown outbox kind {item.kind!r}")
            return
        # The destination's pace counts from this call (see SendPace): reading the card,
        # waiting for the answer and recording it overlap the interval, not add to it.
        called_at = self._clock.now()
        try:
            # Only the platform call is timed: a send that outlives its lease would be sent
            # twice, so give up well before that.
            async with asyncio.timeout(self._lease.total_seconds() / 2):
                posted = await self._call_platform(item, adapter, destination, card, ref)
        except DeliveryError as exc:
            await self._failed(item, str(exc), retry_after=exc.retry_after, permanent=exc.permanent)
            return
        except TimeoutError:
            await self._failed(item, "the platform did not answer in time")
            return
        except Exception as exc:
            log.exception("adapter %s failed on outbox row %s", adapter.platform, item.id)
            await self._failed(item, f"{type(exc).__name__}: {exc}")
            return
        next_send_at = self._pace.next_send_at(
            destination.platform, called_at, self._clock.now(), adapter.min_send_interval
        )
        if posted is not None:
            if self._recent_cards is not None:
                # A click on the new card may come before its reference is written.
                self._recent_cards.remember(posted.platform, posted.data, item.request_id)
            crash_point(CrashPoint.AFTER_SEND_BEFORE_REF)
        await self._record_success(item, destination, posted, next_send_at)

    def _card_now(
        self, reads: SyncReads, item: OutboxItem
    ) -> tuple[ApprovalCard | None, list[DeliveryRecord]]:
        """The card as it stands now (``None`` if its request is gone), and the request's
        deliveries; one read."""
        card: ApprovalCard | None = None
        if item.kind == DIGEST:
            # A digest card is counted at delivery, so it is never stale.
            agent = str(item.payload.get("agent", ""))
            digest = flood.digest_state(reads, item.request_id, item.destination, agent)
            card = build_digest_card(digest, now=self._clock.now())
        else:
            request = reads.get_request(item.request_id)
            if request is not None:
                note = item.payload.get("note")
                card = self._cards(request, note if isinstance(note, str) else None)
        return card, reads.deliveries(item.request_id)

    async def _deliver_webhook(self, item: OutboxItem) -> None:
        """POST the request's final state to its callback URL (one attempt)."""
        if self._webhooks is None:
            await self._dead(item, "webhooks are not enabled in this process")
            return
        request = await self._store.get_request(item.request_id)
        if request is None:
            await self._dead(item, f"request {item.request_id} no longer exists")
            return
        event_id = str(item.payload.get("event_id") or f"evt_{item.request_id}")
        try:
            async with asyncio.timeout(self._lease.total_seconds() / 2):
                delivered = await self._webhooks.deliver(request, event_id)
        except DeliveryError as exc:
            await self._failed(item, str(exc), retry_after=exc.retry_after, permanent=exc.permanent)
            return
        except TimeoutError:
            await self._failed(item, "the callback URL did not answer in time")
            return
        except Exception as exc:
            log.exception("webhook for outbox row %s failed", item.id)
            await self._failed(item, f"{type(exc).__name__}: {exc}")
            return
        await self._record_webhook(item, delivered)

    async def _record_webhook(self, item: OutboxItem, delivered: WebhookDelivered) -> None:
        def record(tx: WriteTx) -> None:
            now = self._clock.now()
            tx.append_audit(
                AuditKind.DELIVERED,
                at=now,
                actor="webhook",
                request_id=item.request_id,
                data={
                    "destination": item.destination,
                    "url": delivered.url,
                    "status_code": delivered.status_code,
                    "event_id": delivered.event_id,
                },
            )
            tx.finish_outbox(item.id, state=SENT, at=now)

        await self._record_sent(item, record)

    async def _call_platform(
        self,
        item: OutboxItem,
        adapter: Adapter,
        destination: Destination,
        card: ApprovalCard,
        ref: MessageRef | None,
    ) -> MessageRef | None:
        """Send, edit or reply; returns the new message's reference when one was posted."""
        if item.kind in (SEND, DIGEST) and ref is None:
            return await adapter.send(card, destination)
        assert ref is not None
        if item.kind == REMIND:
            await adapter.reply(ref, card, str(item.payload.get("text", "Reminder")))
        else:
            # An edit, a digest's new count, or a send whose card is already posted (a
            # re-run after a crash): either way, bring the posted card up to date.
            await adapter.edit(ref, card)
        return None

    async def _record_success(
        self,
        item: OutboxItem,
        destination: Destination,
        posted: MessageRef | None,
        next_send_at: datetime,
    ) -> None:
        def record(tx: WriteTx) -> None:
            now = self._clock.now()
            if posted is not None:
                tx.set_delivery_ref(item.request_id, item.destination, posted.data, now)
                tx.append_audit(
                    AuditKind.DELIVERED,
                    at=now,
                    actor=destination.platform,
                    request_id=item.request_id,
                    data={"destination": item.destination, "ref": posted.data},
                )
            tx.finish_outbox(item.id, state=SENT, at=now)
            tx.pause_destination(item.destination, next_send_at)

        await self._record_sent(item, record)

    async def _record_sent(self, item: OutboxItem, record: Callable[[WriteTx], None]) -> None:
        """Store the outcome of a delivery that happened. A lost write here would send it
        again, so a busy database is waited out (a few tries) rather than given up."""
        for attempt in range(_RECORD_ATTEMPTS):
            try:
                await self._store.run(record)
            except StoreBusyError:
                if attempt + 1 == _RECORD_ATTEMPTS:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            self._report(item.destination, SENT)
            return

    async def _finish(self, item: OutboxItem, *, error: str | None = None) -> None:
        now = self._clock.now()
        await self._store.run(lambda tx: tx.finish_outbox(item.id, state=SENT, at=now, error=error))

    async def _failed(
        self,
        item: OutboxItem,
        error: str,
        *,
        retry_after: timedelta | None = None,
        permanent: bool = False,
    ) -> None:
        now = self._clock.now()
        attempts = item.attempts + 1
        if permanent or now - item.created_at >= self._retry.max_age:
            await self._dead(item, error, pause_for=retry_after)
            return
        delay = self._retry.delay(attempts, self._rng)
        if retry_after is not None:
            delay = max(delay, retry_after)
        log.warning(
            "delivery of outbox row %s to %s failed (attempt %s): %s; retrying in %.1fs",
            item.id,
            item.destination,
            attempts,
            error,
            delay.total_seconds(),
        )

        def record(tx: WriteTx) -> None:
            tx.retry_outbox(item.id, attempts=attempts, at=now + delay, error=error)
            if retry_after is not None:
                # The platform said "not before": nothing else goes to this destination either.
                tx.pause_destination(item.destination, now + retry_after)

        await self._store.run(record)
        self._report(item.destination, "retry")

    async def _dead(
        self, item: OutboxItem, error: str, *, pause_for: timedelta | None = None
    ) -> None:
        now: datetime = self._clock.now()
        log.error(
            "outbox row %s (%s to %s for request %s) dead-lettered: %s",
            item.id,
            item.kind,
            item.destination,
            item.request_id,
            error,
        )

        def record(tx: WriteTx) -> None:
            tx.finish_outbox(item.id, state=DEAD, at=now, error=error)
            tx.append_audit(
                AuditKind.DELIVERY_FAILED,
                at=now,
                actor="outbox",
                request_id=item.request_id,
                data={"destination": item.destination, "kind": item.kind, "error": error},
            )
            if pause_for is not None:
                # Giving up on this row does not lift the platform's "not before".
                tx.pause_destination(item.destination, now + pause_for)

        await self._store.run(record)
        self._report(item.destination, DEAD)
