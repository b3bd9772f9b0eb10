"""The client commands of the command line: ``signoff request`` and ``signoff run``.

They talk to a running signoff over the agent API: ``SIGNOFF_URL`` (default
``http://127.0.0.1:8080``) and ``SIGNOFF_API_KEY``. The exit code tells the outcome: 0
approved (or, without waiting, created), 1 denied, 3 expired, 4 cancelled, 2 usage or error;
``run`` exits with the command's own exit code once it is approved.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType
from typing import Any

import httpx
from rich.console import Console
from rich.text import Text

from approvals.edits import param_changes
from signoff_client import (
    ApiError,
    Client,
    NetworkError,
    ReceiptError,
    RetryPolicy,
    SignoffError,
    wire,
)
from signoff_client.canonical import CanonicalJsonError, canonical_json, payload_sha256
from signoff_client.wire import NO_RETRIES

EXIT_APPROVED = 0
EXIT_CREATED = 0
"""``request`` without ``--wait``: the request was made, whatever its state."""
EXIT_DENIED = 1
EXIT_ERROR = 2
EXIT_EXPIRED = 3
EXIT_CANCELLED = 4
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
"""``run`` could not start the approved command (the shell's conventions)."""

EXIT_FOR_STATUS = {
    "approved": EXIT_APPROVED,
    "denied": EXIT_DENIED,
    "expired": EXIT_EXPIRED,
    "cancelled": EXIT_CANCELLED,
}
STATUS_STYLES = {
    "pending": "cyan",
    "approved": "bold green",
    "denied": "bold red",
    "expired": "yellow",
    "cancelled": "magenta",
}

DEFAULT_URL = "http://127.0.0.1:8080"
LONG_POLL_SECONDS = 50
"""Each wait asks the server to hold the answer this long (the API allows at most 60)."""
CREATE_RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0)
WAIT_RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
"""Backoff between attempts while waiting: about 30 s, enough to ride out a server restart."""
MAX_RETRY_AFTER = 60.0
MAX_TITLE_CHARS = 500
INTERRUPT_REASON = "interrupted on the command line"


class ClientError(Exception):
    """Something the user must fix or know about: printed without a traceback, exit 2."""


class ApiFailure(ClientError):
    """The server answered with an error (``{"error": {"code", "message"}}``)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = f"{self.message} ({self.code}, HTTP {self.status})"
        if self.status == 401:
            text += "; check SIGNOFF_API_KEY (an admin makes keys with: signoff agents add NAME)"
        return text


class Unreachable(ClientError):
    """The server could not be reached, or the connection broke."""


@dataclass(frozen=True)
class ClientSettings:
    """Where the server is and how to authenticate, from the environment."""

    base_url: str
    api_key: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ClientSettings:
        url = (environ.get("SIGNOFF_URL") or DEFAULT_URL).strip().rstrip("/")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ClientError(f"SIGNOFF_URL={url!r} is not a URL: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ClientError(
                f"SIGNOFF_URL={url!r} must be an http:// or https:// URL, such as {DEFAULT_URL}"
            )
        key = environ.get("SIGNOFF_API_KEY", "").strip()
        if not key:
            raise ClientError(
                "SIGNOFF_API_KEY is not set: export the agent's API key "
                "(an admin makes one with: signoff agents add NAME)"
            )
        return cls(base_url=url, api_key=key)


class ApprovalClient:
    """The agent API for the command line: ``signoff_client.Client`` underneath (its
    transport, long-polls and retries), with JSON passed through as the server sent it and
    failures as ``ClientError`` for printing."""

    def __init__(
        self,
        settings: ClientSettings,
        *,
        wait_retry_delays: Sequence[float] = WAIT_RETRY_DELAYS,
        create_retry_delays: Sequence[float] = CREATE_RETRY_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[str, float], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        # No jitter: one command line retrying is no herd, and its messages say the delay.
        self._wait_retry = RetryPolicy(
            delays=tuple(wait_retry_delays), max_retry_after=MAX_RETRY_AFTER, jitter=0
        )
        self._create_retry = RetryPolicy(
            delays=tuple(create_retry_delays), max_retry_after=MAX_RETRY_AFTER, jitter=0
        )
        self._sleep = sleep
        self._on_retry = on_retry
        self._transport = transport
        self._client = self._new_client()

    def _new_client(self) -> Client:
        try:
            return Client(
                self.settings.base_url,
                self.settings.api_key,
                long_poll_seconds=LONG_POLL_SECONDS,
                retry=self._wait_retry,
                transport=self._transport,
                user_agent="signoff-cli",
                on_retry=self._report_retry,
                sleep=self._sleep,
            )
        except SignoffError as exc:
            raise _client_error(exc) from exc

    def _report_retry(self, error: SignoffError, delay: float) -> None:
        if self._on_retry is not None:
            self._on_retry(str(_client_error(error)), delay)

    def close(self) -> None:
        self._client.close()

    def reconnect(self) -> None:
        """Drop connections an interrupt may have left half-read."""
        with contextlib.suppress(Exception):
            self._client.close()
        self._client = self._new_client()

    def create(self, body: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """Ask for approval; retried briefly (the idempotency key makes a retry safe)."""
        call = wire.create_call(body, idempotency_key)
        with _translated():
            answer = self._client.perform(call, retry=self._create_retry)
            return wire.check_request_json(answer, self.settings.base_url)

    def get(self, request_id: str, *, wait: int = 0) -> dict[str, Any]:
        with _translated():
            answer = self._client.perform(wire.get_call(request_id, wait), retry=NO_RETRIES)
            return wire.check_request_json(answer, self.settings.base_url)

    def cancel(self, request_id: str, reason: str) -> dict[str, Any]:
        with _translated():
            answer = self._client.perform(wire.cancel_call(request_id, reason), retry=NO_RETRIES)
            return wire.check_request_json(answer, self.settings.base_url)

    def wait_final(self, approval: dict[str, Any]) -> dict[str, Any]:
        """Long-poll until the request is final; transient failures are retried with backoff."""
        if approval["status"] != "pending":
            return approval
        with _translated():
            return self._client.wait_json(approval["id"])

    def verified_receipt(
        self, request_id: str, action: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """The request's signed receipt, checked against ``action`` and ``params``.

        Raises:
            ReceiptError: when it does not approve exactly that (never run anything then).
        """
        with _translated():
            return self._client.verified_receipt(request_id, action, params)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """The client's errors as the command line's; a refused receipt stays what it is."""
    try:
        yield
    except ReceiptError:
        raise
    except SignoffError as exc:
        raise _client_error(exc) from exc


def _client_error(error: SignoffError) -> ClientError:
    if isinstance(error, ApiError):
        return ApiFailure(error.status, error.code, error.message, error.retry_after)
    if isinstance(error, NetworkError):
        return Unreachable(str(error))
    return ClientError(str(error))


# -- signals ------------------------------------------------------------------------------


@dataclass
class InterruptGuard:
    """Ctrl-C (SIGINT) and SIGTERM while a client command talks to the server.

    While a request is being created the first signal is only recorded, so the request it
    interrupts can still be cancelled once its id is known; a second one aborts at once.
    Otherwise either signal raises ``KeyboardInterrupt``.
    """

    deferring: bool = False
    requested: bool = False
    _previous: dict[signal.Signals, Any] = field(default_factory=dict)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.deferring and not self.requested:
            self.requested = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[InterruptGuard]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
            self._previous.clear()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.requested:
            raise KeyboardInterrupt


# -- output ---------------------------------------------------------------------------------


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def say(*parts: str | Text | tuple[str, str]) -> None:
    """One progress or result line on stderr (agent text is never read as markup)."""
    _stderr().print(Text.assemble(*parts))


def _status(status: str) -> tuple[str, str]:
    return (status, STATUS_STYLES.get(status, ""))


def _when(text: str | None) -> str:
    if not text:
        return "?"
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return _shown(text)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _shown(value: object) -> str:
    """Server text made safe for a terminal: control characters (escape sequences) escaped."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in str(value)
    )


def outcome_line(approval: dict[str, Any]) -> Text:
    """``request ID approved by alice (web): reason``, for any state."""
    status = _shown(approval.get("status"))
    line = Text.assemble("request ", (_shown(approval.get("id")), "bold"), " ", _status(status))
    decision = approval.get("decision")
    if status == "pending" or not isinstance(decision, dict):
        policy = _shown(approval.get("policy"))
        line.append(f" (policy {policy}, deadline {_when(approval.get('deadline'))})")
        return line
    deciders = [_shown(decision.get("by"))]
    if status == "approved":
        approvers = [
            _shown(vote.get("person"))
            for vote in approval.get("votes") or []
            if isinstance(vote, dict) and vote.get("verdict") == "approve"
        ]
        deciders = approvers or deciders
    if decision.get("platform") == "system":
        line.append(f" ({', '.join(deciders)})")
    else:
        line.append(f" by {', '.join(deciders)} ({_shown(decision.get('platform'))})")
    if decision.get("reason"):
        line.append(f": {_shown(decision['reason'])}")
    return line


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False), flush=True)


# -- the request body -----------------------------------------------------------------------


def parse_params(plain: Sequence[str], as_json: Sequence[str]) -> dict[str, Any]:
    """``--param k=v`` (text) and ``--param-json k=JSON`` into one params object."""
    params: dict[str, Any] = {}

    def split(item: str, option: str) -> tuple[str, str]:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise ClientError(f"{option} {item!r}: expected KEY=VALUE")
        if key in params:
            raise ClientError(f"{option} {item!r}: parameter {key!r} is given twice")
        return key, value

    for item in plain:
        key, value = split(item, "--param")
        params[key] = value
    for item in as_json:
        key, value = split(item, "--param-json")
        try:
            params[key] = json.loads(value)
        except ValueError as exc:
            raise ClientError(f"--param-json {item!r}: the value is not JSON ({exc})") from exc
    return params


def parse_timeout(text: str | None) -> int | None:
    """``--timeout``: seconds, or a duration such as ``15m``."""
    if text is None:
        return None
    from config import parse_duration

    try:
        duration = parse_duration(text)
    except ValueError as exc:
        raise ClientError(f"--timeout {text!r}: {exc}") from exc
    return max(1, int(duration.total_seconds()))


@dataclass(frozen=True)
class RequestSpec:
    """What to ask for."""

    action: str
    title: str
    details: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    requested_by: str | None = None
    timeout_seconds: int | None = None

    def body(self) -> dict[str, Any]:
        """The create body; ``ClientError`` if it has no JSON form (such as non-UTF-8 text)."""
        body: dict[str, Any] = {"action": self.action, "title": self.title, "params": self.params}
        if self.details:
            body["details"] = self.details
        if self.requested_by:
            body["requested_by"] = self.requested_by
        if self.timeout_seconds is not None:
            body["timeout_seconds"] = self.timeout_seconds
        try:
            canonical_json(body)
        except CanonicalJsonError as exc:
            raise ClientError(f"the request cannot be sent as JSON: {exc}") from exc
        return body


# -- asking and waiting ---------------------------------------------------------------------


@dataclass
class Asked:
    """How asking went: the request's id, its last known state, and whether it was interrupted."""

    request_id: str
    approval: dict[str, Any]
    interrupted: bool = False


def ask(
    client: ApprovalClient,
    spec: RequestSpec,
    *,
    idempotency_key: str | None,
    wait: bool,
    on_created: Callable[[dict[str, Any]], None] = lambda _approval: None,
) -> Asked:
    """Create the request and, with ``wait``, wait for its final state.

    An interrupt (Ctrl-C or SIGTERM) after the request exists cancels it on the server.
    """
    key = idempotency_key or secrets.token_urlsafe(18)
    body = spec.body()
    guard = InterruptGuard()
    created: dict[str, Any] | None = None
    with guard.installed():
        try:
            with guard.deferred():
                created = client.create(body, idempotency_key=key)
            if not wait:
                return Asked(created["id"], created)
            on_created(created)
            return Asked(created["id"], client.wait_final(created))
        except KeyboardInterrupt:
            if created is None:
                raise ClientError(
                    "interrupted while the request was being sent; it may exist on the "
                    "server (list it with GET /v1/approvals?status=pending)"
                ) from None
            # A second interrupt while cancelling gives up at once.
            guard.deferring = False
            return Asked(created["id"], _cancel(client, created), interrupted=True)


def _cancel(client: ApprovalClient, approval: dict[str, Any]) -> dict[str, Any]:
    request_id = approval["id"]
    client.reconnect()
    try:
        return client.cancel(request_id, INTERRUPT_REASON)
    except ApiFailure as exc:
        if exc.code != "already_decided":
            raise ClientError(
                f"interrupted, but request {request_id} was not cancelled: {exc}"
            ) from exc
    except Unreachable as exc:
        raise ClientError(
            f"interrupted, but request {request_id} could not be cancelled: {exc}"
        ) from exc
    # Decided in the meantime: report what it became.
    return client.get(request_id)


def report_retry(problem: str, delay: float) -> None:
    say(("retrying", "yellow"), f" in {delay:g} s: {problem}")


def client_from_environ(environ: Mapping[str, str] | None = None) -> ApprovalClient:
    """A client for ``SIGNOFF_URL`` with ``SIGNOFF_API_KEY``; ``ClientError`` if unusable."""
    settings = ClientSettings.from_environ(os.environ if environ is None else environ)
    return ApprovalClient(settings, on_retry=report_retry)


def request_command(
    spec: RequestSpec,
    *,
    wait: bool,
    as_json: bool,
    idempotency_key: str | None,
    client: ApprovalClient | None = None,
) -> int:
    """``signoff request``: ask, optionally wait, and exit with the outcome."""
    client = client or client_from_environ()
    try:
        asked = ask(
            client,
            spec,
            idempotency_key=idempotency_key,
            wait=wait,
            on_created=lambda created: say(
                outcome_line(created), "; waiting for a decision (Ctrl-C cancels it)"
            ),
        )
    finally:
        client.close()
    approval = asked.approval
    if as_json:
        _print_json(approval)
    else:
        _stdout().print(outcome_line(approval))
    if not wait and not asked.interrupted:
        return EXIT_CREATED
    return EXIT_FOR_STATUS.get(str(approval["status"]), EXIT_ERROR)


def run_command(
    argv: Sequence[str],
    *,
    action: str,
    title: str | None,
    details: str,
    requested_by: str | None,
    timeout_seconds: int | None,
    client: ApprovalClient | None = None,
) -> int:
    """``signoff run``: ask to run ``argv`` here, and run it only once exactly that is approved."""
    if not argv:
        raise ClientError("nothing to run: give the command after --, such as: -- ls -l")
    if shutil.which(argv[0]) is None:
        raise ClientError(f"command {argv[0]!r} is not found or not executable; nothing asked")
    params: dict[str, Any] = {"argv": list(argv), "cwd": os.getcwd()}
    spec = RequestSpec(
        action=action,
        title=title or _shorten(shlex.join(argv), MAX_TITLE_CHARS),
        details=details,
        params=params,
        requested_by=requested_by,
        timeout_seconds=timeout_seconds,
    )
    client = client or client_from_environ()
    try:
        asked = ask(
            client,
            spec,
            idempotency_key=None,
            wait=True,
            on_created=lambda created: say(
                "asking to run ",
                (shlex.join(argv), "bold"),
                ": ",
                outcome_line(created),
                "; waiting (Ctrl-C cancels it)",
            ),
        )
        approval = asked.approval
        status = str(approval["status"])
        if status != "approved" or asked.interrupted:
            if status == "approved":
                say(outcome_line(approval), "; interrupted, so not running the command")
                return EXIT_CANCELLED
            say(outcome_line(approval), "; not running the command")
            return EXIT_FOR_STATUS.get(status, EXIT_ERROR)
        mismatch = _payload_mismatch(approval, expected_id=asked.request_id, spec=spec)
        if mismatch:
            say(("refusing to run", "bold red"), f": {mismatch}")
            return EXIT_ERROR
        to_run = argv
        approved_params = spec.params
        edited = approval.get("edited_params")
        if edited is not None:
            # Approved with edits: the original argv was not approved, so it never runs.
            edit = _edited_command(approval, spec)
            if isinstance(edit, str):
                say(("refusing to run", "bold red"), f": {edit}")
                return EXIT_ERROR
            to_run, approved_params = edit, edited
            for change in param_changes(spec.params, edited):
                say("approvers edited the command: ", change.describe())
        # The answer above could come from anything that speaks the API; the signed receipt
        # proves that signoff itself approved exactly this argv in this directory.
        try:
            client.verified_receipt(asked.request_id, spec.action, approved_params)
        except ReceiptError as exc:
            say(("refusing to run", "bold red"), f": {exc}")
            return EXIT_ERROR
    finally:
        client.close()
    edited_note = " with edits" if to_run is not argv else ""
    say(
        outcome_line(approval),
        f"; receipt verified; running{edited_note} ",
        (shlex.join(to_run), "bold"),
    )
    return execute(to_run)


def _edited_command(approval: dict[str, Any], spec: RequestSpec) -> list[str] | str:
    """The argv the approvers edited the command to, or why it will not be run.

    Approvers may change the command, not where it runs: an edit of ``cwd``, of the
    params' shape, or to a program that is not found here is refused (nothing runs).
    """
    edited = approval.get("edited_params")
    if not isinstance(edited, dict) or set(edited) != {"argv", "cwd"}:
        return "the approvers' edit is not a command (it must keep exactly argv and cwd)"
    if edited["cwd"] != spec.params["cwd"]:
        return (
            f"the approvers changed the directory to {edited['cwd']!r}; signoff run only runs "
            f"where it was asked ({spec.params['cwd']!r})"
        )
    new_argv = edited["argv"]
    if (
        not isinstance(new_argv, list)
        or not new_argv
        or not all(isinstance(part, str) and part and "\x00" not in part for part in new_argv)
    ):
        return "the approvers' argv is not a non-empty list of words"
    try:
        edited_hash = payload_sha256(spec.action, edited)
    except CanonicalJsonError:
        return "the approvers' edit has no JSON form"
    if approval.get("edited_payload_sha256") != edited_hash:
        return "the edited payload hash does not match the edited command"
    if shutil.which(new_argv[0]) is None:
        return f"the edited command {new_argv[0]!r} is not found or not executable"
    return [str(part) for part in new_argv]


def _payload_mismatch(approval: dict[str, Any], *, expected_id: str, spec: RequestSpec) -> str:
    """Why the approved request does not cover exactly this command, or ``""``."""
    if approval.get("id") != expected_id:
        return f"the server answered about request {approval.get('id')!r}, not {expected_id!r}"
    if approval.get("action") != spec.action:
        return f"the approved action is {approval.get('action')!r}, not {spec.action!r}"
    approved_params = approval.get("params")
    try:
        same_params = canonical_json(approved_params) == canonical_json(spec.params)
    except CanonicalJsonError:
        same_params = False
    if not same_params:
        return "the approved params are not the command and directory that were asked for"
    if approval.get("payload_sha256") != payload_sha256(spec.action, spec.params):
        return "the approved payload hash does not match this command"
    return ""


def execute(argv: Sequence[str]) -> int:
    """Run ``argv`` with this process's stdio; its exit code (128+N when killed by signal N).

    Ctrl-C reaches the command from the terminal, so here it is only kept from killing this
    process first; SIGTERM is passed on to the command.
    """
    child: subprocess.Popen[bytes] | None = None

    def ignore(signum: int, frame: FrameType | None) -> None:
        return None

    def forward(signum: int, frame: FrameType | None) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    # Python-level handlers are reset to the default in the child when it execs.
    in_main = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main:
        previous = {
            signal.SIGINT: signal.signal(signal.SIGINT, ignore),
            signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
        }
    try:
        try:
            # Running the approved argv is this command's purpose.
            child = subprocess.Popen(list(argv))  # noqa: S603
        except FileNotFoundError:
            say(("cannot run", "bold red"), f": command {argv[0]!r} not found")
            return EXIT_NOT_FOUND
        except OSError as exc:
            say(("cannot run", "bold red"), f" {argv[0]!r}: {exc.strerror or exc}")
            return EXIT_NOT_EXECUTABLE
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code if code >= 0 else 128 - code


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
