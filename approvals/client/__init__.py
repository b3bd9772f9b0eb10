"""The Python client of signoff: what an agent imports to ask a person before acting.

It needs only httpx (and ``cryptography`` to check receipts)::

    from approvals.client import Client, require_approval

    with Client() as signoff:  # SIGNOFF_URL, SIGNOFF_API_KEY
        asked = signoff.request("db.drop_table", "Drop table users", params={"table": "users"})
        approval = signoff.wait_approved(asked.id)  # raises Denied / Expired / Cancelled

    @require_approval(action="db.drop_table", title="Drop a table")
    def drop_table(table: str) -> None: ...  # runs only once this exact call is approved

``verify_receipt`` checks a signed receipt against the payload about to be run, and
``verify_webhook`` checks a webhook delivery. Nothing here imports the server's modules.
"""

from approvals.client.aio import AsyncClient
from approvals.client.decorator import require_approval
from approvals.client.errors import (
    ApiError,
    Cancelled,
    ConfigurationError,
    Denied,
    Expired,
    NetworkError,
    NotApproved,
    ReceiptError,
    SignoffError,
    WaitTimeout,
    WebhookError,
)
from approvals.client.models import Approval, ApprovalStatus, Decision, Vote
from approvals.client.outcome import approved_or_raise
from approvals.client.sync import Client
from approvals.client.verify import verify_receipt, verify_webhook, webhook_signature
from approvals.client.wire import RetryPolicy

__all__ = [
    "ApiError",
    "Approval",
    "ApprovalStatus",
    "AsyncClient",
    "Cancelled",
    "Client",
    "ConfigurationError",
    "Decision",
    "Denied",
    "Expired",
    "NetworkError",
    "NotApproved",
    "ReceiptError",
    "RetryPolicy",
    "SignoffError",
    "Vote",
    "WaitTimeout",
    "WebhookError",
    "approved_or_raise",
    "require_approval",
    "verify_receipt",
    "verify_webhook",
    "webhook_signature",
]
