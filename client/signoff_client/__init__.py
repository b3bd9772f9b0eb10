"""The Python client of signoff: what an agent imports to ask a person before acting.

It needs only httpx (and ``cryptography`` to check receipts)::

    from signoff_client import Client, require_approval

    with Client() as signoff:  # SIGNOFF_URL, SIGNOFF_API_KEY
        asked = signoff.request("db.drop_table", "Drop table users", params={"table": "users"})
        approval = signoff.wait_approved(asked.id)  # raises Denied / Expired / Cancelled

    @require_approval(action="db.drop_table", title="Drop a table")
    def drop_table(table: str) -> None: ...  # runs only once this exact call is approved

``verify_receipt`` checks a signed receipt against the payload about to be run, and
``verify_webhook`` checks a webhook delivery. Nothing here imports the server's modules.
"""

from signoff_client.aio import AsyncClient
from signoff_client.decorator import require_approval
from signoff_client.errors import (
    ApiError,
    Cancelled,
    ConfigurationError,
    Denied,
    EditedParamsError,
    Expired,
    NetworkError,
    NotApproved,
    ReceiptError,
    SignoffError,
    WaitTimeout,
    WebhookError,
)
from signoff_client.models import Approval, ApprovalStatus, Decision, Vote
from signoff_client.outcome import approved_or_raise
from signoff_client.sync import Client
from signoff_client.verify import verify_receipt, verify_webhook, webhook_signature
from signoff_client.wire import RetryPolicy

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
    "EditedParamsError",
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
