"""Turning a request's state into "go ahead" or the exception that says why not."""

from __future__ import annotations

from signoff_client.errors import Cancelled, Denied, Expired, WaitTimeout
from signoff_client.models import Approval


def approved_or_raise(approval: Approval) -> Approval:
    """``approval`` when it is approved.

    Raises:
        Denied, Expired, Cancelled: for those final states.
        WaitTimeout: when it is still pending.
    """
    if approval.status == "approved":
        return approval
    if approval.status == "denied":
        raise Denied(approval)
    if approval.status == "expired":
        raise Expired(approval)
    if approval.status == "cancelled":
        raise Cancelled(approval)
    raise WaitTimeout(approval)
