"""The state machine table, checked over every (status, event) pair."""

import itertools

import pytest

from approvals.machine import TRANSITIONS, Event, IllegalTransitionError, Status, next_status

EXPECTED_FROM_PENDING = {
    Event.VOTE: Status.PENDING,
    Event.REMIND: Status.PENDING,
    Event.ESCALATE: Status.PENDING,
    Event.APPROVE: Status.APPROVED,
    Event.DENY: Status.DENIED,
    Event.EXPIRE: Status.EXPIRED,
    Event.CANCEL: Status.CANCELLED,
}


@pytest.mark.parametrize(("status", "event"), list(itertools.product(Status, Event)))
def test_every_status_event_pair(status, event):
    if status is Status.PENDING:
        assert next_status(status, event) is EXPECTED_FROM_PENDING[event]
    else:
        with pytest.raises(IllegalTransitionError) as raised:
            next_status(status, event)
        assert raised.value.status is status
        assert raised.value.event is event
        assert status.value in str(raised.value)


def test_final_states_have_no_exits():
    for (status, _event), _target in TRANSITIONS.items():
        assert status is Status.PENDING


def test_only_pending_is_open():
    assert [s for s in Status if not s.is_final] == [Status.PENDING]
