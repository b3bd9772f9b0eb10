"""``require_approval``: a function that runs only once a person approved this exact call."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import math
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TypeVar, cast

from signoff_client.aio import AsyncClient
from signoff_client.canonical import CanonicalJsonError, canonical_json
from signoff_client.errors import EditedParamsError, ReceiptError, SignoffError, WaitTimeout
from signoff_client.models import Approval
from signoff_client.sync import Client

F = TypeVar("F", bound=Callable[..., Any])
ParamsFrom = Callable[..., Mapping[str, Any]]

WAIT_GRACE_SECONDS = 30.0
"""With a ``timeout``, how much longer than it to wait for the server's own deadline."""
CANCEL_REASON = "the caller stopped waiting"
_RECEIVER_NAMES = ("self", "cls")


def require_approval(
    *,
    action: str,
    title: str | Callable[[dict[str, Any]], str],
    params_from: ParamsFrom | None = None,
    client: Client | AsyncClient | None = None,
    timeout: float | None = None,
    details: str | None = None,
    requested_by: str | None = None,
) -> Callable[[F], F]:
    """Make a function (sync or async) run only when a person approves this very call.

    Each call asks signoff for approval of ``action`` with the call's arguments as params
    (bound by the function's signature, defaults applied; a leading ``self`` or ``cls`` is
    left out), or with ``params_from(*args, **kwargs)`` when given. The call blocks until
    the request is final. The function body runs only if it was approved *and* the signed
    receipt (checked with keys fetched from the server) covers exactly the params derived
    from the arguments again right before running: if an argument changed while waiting,
    nothing runs.

    When the approvers edited the params (a policy with ``edits: allowed``), the function
    runs with the edited params as its arguments, and only after the receipt was checked
    against them: the original call was not approved. Edited params that do not bind to
    the signature (or a function whose params come from ``params_from``) raise
    ``EditedParamsError`` and nothing runs.

    Args:
        action: the action name, such as ``db.drop_table``.
        title: one line for the approvers, or a function of the params that makes it.
        params_from: makes the params from the call's arguments instead.
        client: the ``Client`` (sync functions) or ``AsyncClient`` (async functions) to
            use; by default one is made per call from ``SIGNOFF_URL`` / ``SIGNOFF_API_KEY``.
        timeout: seconds the approvers have (the policy may bound it). The call stops
            waiting 30 s after that at the latest; it then cancels the request and raises
            ``WaitTimeout``.
        details: more text for the approvers.
        requested_by: the person the agent acts for (who may then not approve it).

    Raises (from the decorated function, whose body then never runs):
        TypeError: an argument has no JSON form (before anything is asked).
        Denied, Expired, Cancelled: the request was not approved.
        ReceiptError: the receipt does not cover the call as it is now.
        EditedParamsError: approved with edited params that cannot be run.
        WaitTimeout: ``timeout`` (plus the grace) ran out.
        SignoffError: any other failure talking to signoff.
    """
    timeout_seconds = None if timeout is None else max(1, math.ceil(timeout))
    wait_limit = None if timeout is None else timeout + WAIT_GRACE_SECONDS

    def decorate(func: F) -> F:
        signature = inspect.signature(func)
        is_async = inspect.iscoroutinefunction(func)
        if is_async and isinstance(client, Client):
            raise TypeError(f"{func.__qualname__} is async: give it an AsyncClient")
        if not is_async and isinstance(client, AsyncClient):
            raise TypeError(f"{func.__qualname__} is not async: give it a Client")

        def current_params(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            if params_from is not None:
                return _params_from_callable(func, params_from, args, kwargs)
            return _params_from_signature(func, signature, args, kwargs)

        def params_again(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            try:
                return current_params(args, kwargs)
            except (TypeError, ValueError) as exc:
                raise ReceiptError(
                    f"the call's params cannot be derived again: {exc}", code="payload_mismatch"
                ) from exc

        def edited_call(
            approval: Approval, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            if params_from is not None:
                raise EditedParamsError(
                    approval,
                    f"{func.__qualname__} takes its params from params_from, so edited params "
                    "cannot be turned back into its arguments",
                )
            assert approval.edited_params is not None
            return _bind_edited(func, signature, args, kwargs, approval)

        def title_for(params: dict[str, Any]) -> str:
            return title(params) if callable(title) else title

        if is_async:

            @functools.wraps(func)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                params = current_params(args, kwargs)
                async with _async_client(client) as api:
                    asked = await api.request(
                        action,
                        title_for(params),
                        details=details,
                        params=params,
                        requested_by=requested_by,
                        timeout_seconds=timeout_seconds,
                    )
                    try:
                        approval = await api.wait_approved(asked.id, timeout=wait_limit)
                    except (WaitTimeout, asyncio.CancelledError):
                        await _cancel_quietly_async(api, asked.id)
                        raise
                    if approval.edited_params is not None:
                        run_args, run_kwargs = edited_call(approval, args, kwargs)
                        await api.verified_receipt(approval.id, action, approval.edited_params)
                        return await func(*run_args, **run_kwargs)
                    await api.verified_receipt(approval.id, action, params_again(args, kwargs))
                return await func(*args, **kwargs)

            return cast(F, guarded_async)

        @functools.wraps(func)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            params = current_params(args, kwargs)
            with _sync_client(client) as api:
                asked = api.request(
                    action,
                    title_for(params),
                    details=details,
                    params=params,
                    requested_by=requested_by,
                    timeout_seconds=timeout_seconds,
                )
                try:
                    approval = api.wait_approved(asked.id, timeout=wait_limit)
                except (WaitTimeout, KeyboardInterrupt):
                    _cancel_quietly(api, asked.id)
                    raise
                if approval.edited_params is not None:
                    run_args, run_kwargs = edited_call(approval, args, kwargs)
                    api.verified_receipt(approval.id, action, approval.edited_params)
                    return func(*run_args, **run_kwargs)
                api.verified_receipt(approval.id, action, params_again(args, kwargs))
            return func(*args, **kwargs)

        return cast(F, guarded)

    return decorate


def _params_from_signature(
    func: Callable[..., Any],
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    first = next(iter(signature.parameters), None)
    if first in _RECEIVER_NAMES:
        arguments.pop(first, None)
    for name, value in arguments.items():
        try:
            canonical_json(value)
        except CanonicalJsonError as exc:
            raise TypeError(
                f"{func.__qualname__}: argument {name!r} ({type(value).__name__}) cannot be "
                f"part of the approved params: {exc}. Pass only JSON values (dict, list, str, "
                "int, float, bool, None), or give params_from= to choose the params"
            ) from exc
    return _detached(arguments)


def _bind_edited(
    func: Callable[..., Any],
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    approval: Approval,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call with the approvers' edited params as its arguments (the receiver, ``self``
    or ``cls``, kept from the call), or :class:`EditedParamsError` when they do not bind:
    the edit must name exactly the function's parameters, ``*args`` as a list and
    ``**kwargs`` as an object."""
    edited = approval.edited_params
    assert edited is not None
    original = signature.bind(*args, **kwargs)
    names = list(signature.parameters)
    receiver = names[0] if names and names[0] in _RECEIVER_NAMES else None
    expected = [name for name in names if name != receiver]
    missing = [name for name in expected if name not in edited]
    unknown = sorted(set(edited) - set(expected))
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown {', '.join(unknown)}")
        raise EditedParamsError(
            approval,
            f"the edited params do not fit {func.__qualname__}{signature} ({'; '.join(problems)})",
        )
    arguments: dict[str, Any] = {}
    if receiver is not None and receiver in original.arguments:
        arguments[receiver] = original.arguments[receiver]
    for name in expected:
        value = _detached({"value": edited[name]})["value"]
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            if not isinstance(value, list):
                raise EditedParamsError(
                    approval, f"the edited {name!r} must be a list (it is *{name})"
                )
            value = tuple(value)
        elif kind is inspect.Parameter.VAR_KEYWORD and not isinstance(value, dict):
            raise EditedParamsError(
                approval, f"the edited {name!r} must be an object (it is **{name})"
            )
        arguments[name] = value
    bound = inspect.BoundArguments(signature, arguments)
    return bound.args, bound.kwargs


def _params_from_callable(
    func: Callable[..., Any],
    params_from: ParamsFrom,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    params = params_from(*args, **kwargs)
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params_from of {func.__qualname__} returned {type(params).__name__}, not a dict"
        )
    try:
        canonical_json(dict(params))
    except CanonicalJsonError as exc:
        raise TypeError(
            f"params_from of {func.__qualname__} returned params with no JSON form: {exc}"
        ) from exc
    return _detached(dict(params))


def _detached(params: dict[str, Any]) -> dict[str, Any]:
    """A JSON copy: later changes to the caller's objects cannot reach what was asked."""
    copied: dict[str, Any] = json.loads(canonical_json(params))
    return copied


@contextlib.contextmanager
def _sync_client(given: Client | AsyncClient | None) -> Iterator[Client]:
    if isinstance(given, Client):
        yield given
        return
    with Client() as made:
        yield made


@contextlib.asynccontextmanager
async def _async_client(given: Client | AsyncClient | None) -> AsyncIterator[AsyncClient]:
    if isinstance(given, AsyncClient):
        yield given
        return
    async with AsyncClient() as made:
        yield made


def _cancel_quietly(api: Client, request_id: str) -> None:
    # The caller is leaving anyway; a request that cannot be cancelled now still ends at
    # its deadline, so a failure here must not hide why the caller left.
    with contextlib.suppress(SignoffError):
        api.cancel(request_id, CANCEL_REASON)


async def _cancel_quietly_async(api: AsyncClient, request_id: str) -> None:
    with contextlib.suppress(SignoffError, TimeoutError):
        await asyncio.wait_for(api.cancel(request_id, CANCEL_REASON), timeout=15)
