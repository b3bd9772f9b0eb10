"""What can go wrong when an agent asks for approval, as one exception tree.

``SignoffError`` is the base of all of them. An answer that is not "approved" is an
exception (``Denied``, ``Expired``, ``Cancelled``, all ``NotApproved``), so code that only
runs on approval cannot forget to check; a receipt or webhook that does not verify is
``ReceiptError`` / ``WebhookError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signoff_client.models import Approval

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
"""Answers that mean "not now" (rate limited, busy, a proxy in between failing)."""


class SignoffError(Exception):
    """Base class of every error the client raises.

    Attributes:
        request_id: set on an error raised while waiting for a request (the server could
            not be reached, or answered with an error): that request exists and may still
            be pending, so wait for it again rather than asking anew. None otherwise.
    """

    request_id: str | None = None

    def __str__(self) -> str:
        text = super().__str__()
        if self.request_id is None:
            return text
        return f"{text} (while waiting for request {self.request_id})"


class ConfigurationError(SignoffError):
    """The client cannot be set up: no API key, or a base URL that is not http(s)."""


class NetworkError(SignoffError):
    """The server could not be reached, or the connection broke before an answer came.

    Attributes:
        retryable: False when trying again cannot help (such as an unsupported URL scheme).
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ApiError(SignoffError):
    """The server answered with an error: ``{"error": {"code", "message"}}``.

    Attributes:
        status: the HTTP status code.
        code: the machine-readable error code, such as ``not_found`` or ``rate_limited``.
        message: the server's explanation.
        retry_after: seconds from a ``Retry-After`` header, when there was one.
    """

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """True when asking again later may succeed (429, 502, 503, 504)."""
        return self.status in RETRYABLE_STATUSES


class NotApproved(SignoffError):
    """The request became final without being approved.

    Attributes:
        approval: the final request, as the server reported it.
    """

    def __init__(self, approval: Approval, message: str) -> None:
        super().__init__(message)
        self.approval = approval


class Denied(NotApproved):
    """A person denied the request (or a policy denied it, or nobody answered in time and
    the policy says silence denies).

    Attributes:
        reason: the reason given, if any.
        decided_by: who decided: a person's name (or what, for a policy or a timeout).
    """

    def __init__(self, approval: Approval) -> None:
        decision = approval.decision
        self.reason = decision.reason if decision else None
        self.decided_by = decision.by if decision else None
        text = f"request {approval.id} was denied"
        if self.decided_by:
            text += f" by {self.decided_by}"
        if self.reason:
            text += f": {self.reason}"
        super().__init__(approval, text)


class Expired(NotApproved):
    """Nobody decided before the deadline, and the policy lets such requests expire."""

    def __init__(self, approval: Approval) -> None:
        super().__init__(approval, f"request {approval.id} expired without a decision")


class Cancelled(NotApproved):
    """The request was withdrawn before anyone decided.

    Attributes:
        reason: why it was cancelled, if a reason was given.
    """

    def __init__(self, approval: Approval) -> None:
        self.reason = approval.decision.reason if approval.decision else None
        text = f"request {approval.id} was cancelled"
        if self.reason:
            text += f": {self.reason}"
        super().__init__(approval, text)


class WaitTimeout(SignoffError):
    """The caller's own deadline passed while the request was still pending.

    The request is left as it is on the server (``require_approval`` cancels it).

    Attributes:
        approval: the request as last seen, still pending.
    """

    def __init__(self, approval: Approval) -> None:
        super().__init__(f"request {approval.id} is still pending; stopped waiting")
        self.approval = approval


class ReceiptError(SignoffError):
    """A receipt does not prove what it must: never act on it.

    Attributes:
        reason: what is wrong, in words.
        code: the same as a short machine name: ``malformed``, ``unknown_key``,
            ``bad_signature``, ``payload_mismatch``, ``wrong_request``, ``expired`` or
            ``wrong_status``.
    """

    def __init__(self, reason: str, *, code: str = "malformed") -> None:
        super().__init__(f"receipt refused: {reason}")
        self.reason = reason
        self.code = code


class EditedParamsError(SignoffError):
    """The approvers edited the params, and the edit cannot be run as the code is called.

    Raised by ``require_approval`` when the edited params do not bind to the decorated
    function's signature (a parameter added, removed or of the wrong shape), or when its
    params come from ``params_from`` and so cannot be turned back into arguments. Nothing
    ran: neither the original call (which was not approved) nor a guess at the edit.

    Attributes:
        approval: the approved request, with ``edited_params``.
        reason: what does not fit, in words.
    """

    def __init__(self, approval: Approval, reason: str) -> None:
        super().__init__(
            f"request {approval.id} was approved with edited params that cannot be run: {reason}"
        )
        self.approval = approval
        self.reason = reason


class WebhookError(SignoffError):
    """A webhook delivery is not a genuine, fresh one from signoff: answer it with 400.

    Attributes:
        reason: what is wrong, in words.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"webhook refused: {reason}")
        self.reason = reason
