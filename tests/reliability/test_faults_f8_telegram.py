"""F8 on Telegram: getUpdates fails (502, then 409 Conflict) while a person clicks; polling
recovers by itself and the click is taken, answered and counted once.

Built on the Telegram adapter's world (real python-telegram-bot against the fake Bot API),
in polling mode. (A poller killed mid-batch and the duplicate it leaves behind are covered
across processes in tests/multiprocess/test_telegram_across_processes.py.)
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from approvals.machine import Status
from tests.adapters.telegram.conftest import (  # noqa: F401 - fixtures used by name
    ALICE,
    _ptb_timedelta,
    adapter_options,
    fake,
    rules,
    telegram,
)
from tests.reliability.invariants import check_invariants, rendered_cards, telegram_reader
from tests.waiting import wait_for

CONFLICT = "Conflict: terminated by other getUpdates request"


@pytest.fixture
def mode() -> str:
    return "polling"


async def test_F8_telegram_get_updates_errors_recover_and_the_click_made_meanwhile_counts_once(
    telegram,  # noqa: F811
):
    """F8: two failed getUpdates in a row; a click made during them is answered once."""
    request = await telegram.create()
    card = await telegram.posted_card(request)
    telegram.fake.fail("getUpdates", 502)
    telegram.fake.fail("getUpdates", 409, description=CONFLICT)

    async def failing() -> bool:
        return any(
            call.method == "getUpdates" and call.status == 502 for call in telegram.fake.calls
        )

    await wait_for(failing)
    clicked = time.monotonic()
    update = await telegram.fake.click(ALICE, card, card.button_data("Approve"))
    toast = await telegram.toast(update)
    answered_after = time.monotonic() - clicked
    assert toast == "Approved"
    failed = [
        call.status
        for call in telegram.fake.calls
        if call.method == "getUpdates" and call.status != 200
    ]
    assert failed == [502, 409]

    await wait_for(_status_is(telegram, request.id, Status.APPROVED))
    answers = [
        call
        for call in telegram.fake.calls
        if call.method == "answerCallbackQuery"
        and str(call.params.get("callback_query_id")) == update["callback_query"]["id"]
    ]
    assert len(answers) == 1
    await telegram.deliver()
    cards = await rendered_cards(telegram.store, telegram_reader(telegram.fake))
    report = await check_invariants(
        telegram.store,
        now=telegram.clock.now(),
        sweep_interval=timedelta(seconds=1),
        accepted=[request.id],
        cards=cards,
    )
    assert (report.final, report.votes, report.cards_checked) == (1, 1, 1)
    print(
        f"F8 Telegram: getUpdates failed {failed}; the click made meanwhile was answered "
        f"{answered_after:.2f} s later and counted once"
    )


def _status_is(harness, request_id: str, status: Status):
    async def check() -> bool:
        return (await harness.service.get(request_id)).status is status

    return check
