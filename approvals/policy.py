"""Policies: which rule governs a request, and what that rule demands.

Policies are ordered; the first whose match fits the request wins, and the last one
always matches (config validation guarantees it). A policy is snapshotted onto every
request it governs, so later config changes never alter a request already in flight.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from approvals.describe import DescribeTemplate
from approvals.grants import GrantRule

_MISSING = object()


class AutoDecision(StrEnum):
    """What a policy does with a request when it is created."""

    ASK = "ask"
    APPROVE = "approve"
    DENY = "deny"


class Risk(StrEnum):
    """How much harm an approved request of a policy can do, as the admin rates it: every
    card and the inbox show it as a coloured label, first."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class TimeoutOutcome(StrEnum):
    """What happens when nobody decides before the deadline. Deny is the default."""

    DENY = "deny"
    EXPIRE = "expire"
    APPROVE = "approve"


class EditsRule(StrEnum):
    """Whether an approver may change a request's params before approving it.

    ``forbidden`` is the default: an approval then covers exactly what the agent asked for.
    """

    ALLOWED = "allowed"
    FORBIDDEN = "forbidden"


class PredicateOp(StrEnum):
    """Operators a params predicate may use."""

    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    GLOB = "glob"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    EXISTS = "exists"


class _Undecidable(Exception):
    """The predicate cannot be evaluated on this value (missing, or a type that cannot compare)."""


class _Kind(StrEnum):
    """The JSON type of a value; predicates compare values of one kind only."""

    NULL = "null"
    BOOL = "true/false"
    NUMBER = "a number"
    TEXT = "text"
    LIST = "a list"
    OBJECT = "an object"


def _kind(value: Any) -> _Kind:
    # bool before int: in Python True is an int, in JSON it is not a number.
    if value is None:
        return _Kind.NULL
    if isinstance(value, bool):
        return _Kind.BOOL
    if isinstance(value, int | float):
        return _Kind.NUMBER
    if isinstance(value, str):
        return _Kind.TEXT
    if isinstance(value, list | tuple):
        return _Kind.LIST
    if isinstance(value, dict):
        return _Kind.OBJECT
    raise _Undecidable


def _as_number(value: Any) -> Decimal:
    """A JSON number as an exact decimal; anything else (text such as ``"10"``, a bool) is
    undecidable, never parsed: text that looks like a number is not one."""
    if _kind(value) is not _Kind.NUMBER:
        raise _Undecidable
    number = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    if not number.is_finite():
        raise _Undecidable
    return number


def _same(left: Any, right: Any) -> bool:
    """JSON equality: equal kinds and equal values, all the way down.

    Python's ``==`` says ``True == 1`` and ``[True] == [1]``; here a bool never equals a
    number, nor text a number, at any depth. ``1 == 1.0`` stays true: both are numbers.
    """
    kind = _kind(left)
    if kind is not _kind(right):
        return False
    if kind is _Kind.NUMBER:
        return _as_number(left) == _as_number(right)
    if kind is _Kind.LIST:
        return len(left) == len(right) and all(
            _same(a, b) for a, b in zip(left, right, strict=True)
        )
    if kind is _Kind.OBJECT:
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    return bool(left == right)


def _comparable_kinds(operand: Any) -> frozenset[_Kind]:
    """The kinds of value an ``eq``/``ne``/``in``/``not_in`` operand can judge."""
    return (
        frozenset(_kind(item) for item in operand)
        if isinstance(operand, list)
        else frozenset({_kind(operand)})
    )


@dataclass(frozen=True)
class ParamPredicate:
    """A test on one value inside ``params``, addressed by a dotted path (``db.name``)."""

    path: str
    op: PredicateOp
    operand: Any = None

    def _lookup(self, params: dict[str, Any]) -> Any:
        value: Any = params
        for part in self.path.split("."):
            if isinstance(value, dict) and part in value:
                value = value[part]
            else:
                return _MISSING
        return value

    def evaluate(self, params: dict[str, Any]) -> bool:
        """True or False; raises ``_Undecidable`` when the value cannot be judged."""
        value = self._lookup(params)
        if self.op is PredicateOp.EXISTS:
            return (value is not _MISSING) == bool(self.operand)
        if value is _MISSING:
            # Doubt: the policy that would auto-approve must not match, a stricter one does.
            raise _Undecidable
        if self.op is PredicateOp.GLOB:
            if _kind(value) is not _Kind.TEXT:
                raise _Undecidable
            return fnmatch.fnmatchcase(value, str(self.operand))
        if self.op in _NUMERIC_OPS:
            left, right = _as_number(value), _as_number(self.operand)
            if self.op is PredicateOp.GT:
                return left > right
            if self.op is PredicateOp.GTE:
                return left >= right
            if self.op is PredicateOp.LT:
                return left < right
            return left <= right
        if self.op in (PredicateOp.IN, PredicateOp.NOT_IN):
            # A value of a kind no item has cannot be judged: "10" is neither in nor out
            # of [10, 20], it is the wrong type.
            if _kind(value) not in _comparable_kinds(self.operand):
                raise _Undecidable
            found = any(_same(value, item) for item in self.operand)
            return found if self.op is PredicateOp.IN else not found
        if _kind(value) is not _kind(self.operand):
            raise _Undecidable  # "10" is neither equal nor unequal to 10
        equal = _same(value, self.operand)
        return equal if self.op is PredicateOp.EQ else not equal

    def judge(self, params: dict[str, Any]) -> bool | None:
        """Like :meth:`evaluate`, but ``None`` when the value cannot be judged."""
        try:
            return self.evaluate(params)
        except _Undecidable:
            return None

    def describe(self) -> str:
        """The test in words, such as ``params.amount > 1000``."""
        subject = f"params.{self.path}"
        if self.op is PredicateOp.EXISTS:
            return f"{subject} {'is present' if self.operand else 'is absent'}"
        return f"{subject} {_OP_WORDS[self.op]} {_show(self.operand)}"

    def describe_value(self, params: dict[str, Any]) -> str:
        """What the request has at this predicate's path, and why it cannot be judged if so."""
        subject = f"params.{self.path}"
        value = self._lookup(params)
        if value is _MISSING:
            return f"{subject} is missing"
        shown = f"{subject} is {_show(value)}"
        try:
            kind = _kind(value)
        except _Undecidable:
            return f"{shown}, not a JSON value"
        if self.op is PredicateOp.GLOB and kind is not _Kind.TEXT:
            return f"{shown}, {kind.value}, not text"
        if self.op in _NUMERIC_OPS and kind is not _Kind.NUMBER:
            return f"{shown}, {kind.value}, not a number"
        if self.op in (PredicateOp.IN, PredicateOp.NOT_IN):
            if kind not in _comparable_kinds(self.operand):
                return f"{shown}, {kind.value}, a type none of the listed values has"
        elif self.op in (PredicateOp.EQ, PredicateOp.NE) and kind is not _kind(self.operand):
            return f"{shown}, {kind.value}, where {_kind(self.operand).value} was expected"
        return shown

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "op": self.op.value, "operand": self.operand}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ParamPredicate:
        return cls(path=data["path"], op=PredicateOp(data["op"]), operand=data.get("operand"))


_OP_WORDS = {
    PredicateOp.EQ: "==",
    PredicateOp.NE: "!=",
    PredicateOp.IN: "in",
    PredicateOp.NOT_IN: "not in",
    PredicateOp.GLOB: "matches",
    PredicateOp.GT: ">",
    PredicateOp.GTE: ">=",
    PredicateOp.LT: "<",
    PredicateOp.LTE: "<=",
}
_NUMERIC_OPS = frozenset({PredicateOp.GT, PredicateOp.GTE, PredicateOp.LT, PredicateOp.LTE})
_SHOWN_CHARS = 60


def _show(value: Any) -> str:
    """A value as JSON, cut short: for explanations, never for decisions."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


@dataclass(frozen=True)
class Mismatch:
    """Why a policy's match does not fit a request: the first test that failed.

    Attributes:
        part: which part of the match failed: ``action``, ``agent`` or ``params``.
        reason: the failure in words, for people.
        predicate: the params predicate that failed, for ``params``.
        undecidable: the predicate could not be judged, and the policy is strict (it would
            auto-approve), so doubt counts as no match.
    """

    part: str
    reason: str
    predicate: ParamPredicate | None = None
    undecidable: bool = False


@dataclass(frozen=True)
class Match:
    """Which requests a policy governs. Empty tuples match everything.

    Attributes:
        actions: globs over the action name (``db.*``); any one may match.
        agents: globs over the requesting agent's name; any one may match.
        params: predicates that must all hold.
    """

    actions: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    params: tuple[ParamPredicate, ...] = ()

    @property
    def is_catch_all(self) -> bool:
        return not (self.actions or self.agents or self.params)

    def fits(self, action: str, agent: str, params: dict[str, Any], *, strict: bool) -> bool:
        """Whether a request fits.

        Args:
            strict: how to treat a params predicate that cannot be judged (a missing number,
                a string compared with ``gt``). Fail closed: a policy that would auto-approve
                must not match on doubt (``strict=True``); a policy that asks or denies does.
        """
        return self.mismatch(action, agent, params, strict=strict) is None

    def mismatch(
        self, action: str, agent: str, params: dict[str, Any], *, strict: bool
    ) -> Mismatch | None:
        """Why a request does not fit (the first failing test), or ``None`` when it fits.

        ``fits`` is defined by this method, so an explanation never disagrees with a choice.
        """
        if self.actions and not any(fnmatch.fnmatchcase(action, g) for g in self.actions):
            return Mismatch("action", f"action {action!r} matches none of {_show(self.actions)}")
        if self.agents and not any(fnmatch.fnmatchcase(agent, g) for g in self.agents):
            return Mismatch("agent", f"agent {agent!r} matches none of {_show(self.agents)}")
        for predicate in self.params:
            try:
                holds = predicate.evaluate(params)
            except _Undecidable:
                if strict:
                    return Mismatch(
                        "params",
                        f"{predicate.describe()} cannot be judged "
                        f"({predicate.describe_value(params)}); a policy that auto-approves "
                        "does not match on doubt",
                        predicate,
                        undecidable=True,
                    )
                continue
            if not holds:
                return Mismatch(
                    "params",
                    f"{predicate.describe()} is false ({predicate.describe_value(params)})",
                    predicate,
                )
        return None

    def doubts(self, params: dict[str, Any]) -> tuple[ParamPredicate, ...]:
        """The params predicates that cannot be judged on ``params``.

        A policy that asks or denies still matches on doubt (the stricter outcome); these
        are the predicates that let it match that way.
        """
        return tuple(p for p in self.params if p.judge(params) is None)

    def to_json(self) -> dict[str, Any]:
        return {
            "actions": list(self.actions),
            "agents": list(self.agents),
            "params": [p.to_json() for p in self.params],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Match:
        return cls(
            actions=tuple(data.get("actions", ())),
            agents=tuple(data.get("agents", ())),
            params=tuple(ParamPredicate.from_json(p) for p in data.get("params", ())),
        )


@dataclass(frozen=True)
class Level:
    """One escalation level: who may decide, where to tell them, and for how long.

    Attributes:
        approvers: person names (groups already expanded), in config order, no repeats.
        notify: destination names: channel names, ``dm`` or ``web``.
        timeout: how long this level has before the request escalates (or times out).
        remind_every: how often to remind this level while it waits; ``None`` for never.
    """

    approvers: tuple[str, ...]
    notify: tuple[str, ...]
    timeout: timedelta
    remind_every: timedelta | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "approvers": list(self.approvers),
            "notify": list(self.notify),
            "timeout_seconds": self.timeout.total_seconds(),
            "remind_every_seconds": (
                None if self.remind_every is None else self.remind_every.total_seconds()
            ),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Level:
        remind = data.get("remind_every_seconds")
        return cls(
            approvers=tuple(data["approvers"]),
            notify=tuple(data["notify"]),
            timeout=timedelta(seconds=data["timeout_seconds"]),
            remind_every=None if remind is None else timedelta(seconds=remind),
        )


@dataclass(frozen=True)
class Policy:
    """A rule for a class of requests. See DESIGN.md, "Policies"."""

    name: str
    levels: tuple[Level, ...]
    match: Match = field(default_factory=Match)
    risk: Risk | None = None
    describe: DescribeTemplate | None = None
    """The line every card and the inbox show first (see :mod:`approvals.describe`)."""
    decision: AutoDecision = AutoDecision.ASK
    quorum: int = 1
    require_reason: bool = False
    deny_repeat: timedelta | None = None
    """Denial memory: how long after people denied a request the agent's same ask is
    denied at once (``None``: not at all)."""
    grants: GrantRule | None = None
    """Time-boxed grants: whether and how an approver may approve for a while
    (:mod:`approvals.grants`; ``None``: not at all)."""
    on_timeout: TimeoutOutcome = TimeoutOutcome.DENY
    min_timeout: timedelta | None = None
    max_timeout: timedelta | None = None
    edits: EditsRule = EditsRule.FORBIDDEN
    confirm: bool | None = None
    """Whether an approval needs a second, explicit confirmation (see
    :mod:`approvals.confirm`); ``None``: as the risk says (:attr:`needs_confirmation`)."""

    def __post_init__(self) -> None:
        if self.decision is AutoDecision.ASK and not self.levels:
            raise ValueError(f"policy {self.name!r} asks people, so it needs at least one level")
        if self.quorum < 1:
            raise ValueError(f"policy {self.name!r}: quorum must be at least 1")
        for level in self.levels:
            if level.timeout <= timedelta(0):
                raise ValueError(f"policy {self.name!r}: level timeouts must be positive")

    @property
    def is_strict(self) -> bool:
        """Whether doubt about a params predicate keeps this policy from matching.

        Fail closed: a policy that would auto-approve must not match on doubt; one that
        asks or denies does.
        """
        return self.decision is AutoDecision.APPROVE

    @property
    def allows_edits(self) -> bool:
        """Whether an approver may approve the request with changed params."""
        return self.edits is EditsRule.ALLOWED

    @property
    def needs_confirmation(self) -> bool:
        """Whether Approve takes a second, explicit confirmation: as the policy says, and
        when it does not say, for critical risk only."""
        if self.confirm is not None:
            return self.confirm
        return self.risk is Risk.CRITICAL

    @property
    def total_timeout(self) -> timedelta:
        """The time from creation to the final deadline when the agent asks for none."""
        return sum((level.timeout for level in self.levels), timedelta(0))

    def approvers_through(self, level: int) -> frozenset[str]:
        """Everyone who may vote once the request has reached ``level`` (earlier levels too)."""
        return frozenset(p for lv in self.levels[: level + 1] for p in lv.approvers)

    def timeout_for(self, requested: timedelta | None) -> timedelta:
        """The request's overall timeout: the agent's wish clamped to the policy's bounds."""
        timeout = self.total_timeout if requested is None else requested
        if self.min_timeout is not None and timeout < self.min_timeout:
            timeout = self.min_timeout
        if self.max_timeout is not None and timeout > self.max_timeout:
            timeout = self.max_timeout
        return timeout

    def to_json(self) -> dict[str, Any]:
        """The snapshot stored on each request."""
        return {
            "name": self.name,
            "match": self.match.to_json(),
            "risk": self.risk.value if self.risk else None,
            "describe": self.describe.source if self.describe else None,
            "decision": self.decision.value,
            "quorum": self.quorum,
            "require_reason": self.require_reason,
            "deny_repeat_seconds": _seconds(self.deny_repeat),
            "grants": self.grants.to_json() if self.grants else None,
            "levels": [level.to_json() for level in self.levels],
            "on_timeout": self.on_timeout.value,
            "min_timeout_seconds": _seconds(self.min_timeout),
            "max_timeout_seconds": _seconds(self.max_timeout),
            "edits": self.edits.value,
            "confirm": self.confirm,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Policy:
        return cls(
            name=data["name"],
            match=Match.from_json(data.get("match", {})),
            risk=Risk(data["risk"]) if data.get("risk") else None,
            describe=DescribeTemplate.parse(data["describe"]) if data.get("describe") else None,
            decision=AutoDecision(data.get("decision", "ask")),
            quorum=int(data.get("quorum", 1)),
            require_reason=bool(data.get("require_reason", False)),
            deny_repeat=_delta(data.get("deny_repeat_seconds")),
            grants=GrantRule.from_json(data["grants"]) if data.get("grants") else None,
            levels=tuple(Level.from_json(level) for level in data["levels"]),
            on_timeout=TimeoutOutcome(data.get("on_timeout", "deny")),
            min_timeout=_delta(data.get("min_timeout_seconds")),
            max_timeout=_delta(data.get("max_timeout_seconds")),
            # Snapshots taken before the key existed forbid edits, as the default does.
            edits=EditsRule(data.get("edits", EditsRule.FORBIDDEN.value)),
            # Absent (snapshots taken before the key existed) or null, it follows the risk as
            # the config default does:
            # a critical request made just before an upgrade still needs confirming.
            confirm=data.get("confirm"),
        )


def _seconds(delta: timedelta | None) -> float | None:
    return None if delta is None else delta.total_seconds()


def _delta(seconds: float | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


@dataclass(frozen=True)
class PolicySet:
    """The ordered policies from config; the last one catches everything."""

    policies: tuple[Policy, ...]

    def __post_init__(self) -> None:
        if not self.policies:
            raise ValueError("at least one policy is needed")
        if not self.policies[-1].match.is_catch_all:
            raise ValueError("the last policy must match everything (match: {})")
        names = [p.name for p in self.policies]
        if len(set(names)) != len(names):
            raise ValueError("policy names must be unique")

    def named(self, name: str) -> Policy | None:
        """The policy called ``name`` in this set, if there is one."""
        return next((p for p in self.policies if p.name == name), None)

    def select(self, action: str, agent: str, params: dict[str, Any]) -> Policy:
        """The first policy whose match fits the request."""
        for policy in self.policies:
            if policy.match.fits(action, agent, params, strict=policy.is_strict):
                return policy
        return self.policies[-1]  # unreachable while the last policy catches all

    def explain(self, action: str, agent: str, params: dict[str, Any]) -> Selection:
        """The policy :meth:`select` picks, with why each policy before it did not match."""
        skipped: list[Skipped] = []
        for policy in self.policies:
            mismatch = policy.match.mismatch(action, agent, params, strict=policy.is_strict)
            if mismatch is None:
                return Selection(policy, tuple(skipped))
            skipped.append(Skipped(policy, mismatch))
        return Selection(self.policies[-1], tuple(skipped[:-1]))  # unreachable, as above


@dataclass(frozen=True)
class Skipped:
    """A policy passed over while selecting, and why."""

    policy: Policy
    mismatch: Mismatch


@dataclass(frozen=True)
class Selection:
    """The outcome of :meth:`PolicySet.explain`.

    Attributes:
        policy: the policy that governs the request (the one ``select`` returns).
        skipped: every policy before it, in order, with the reason it did not match.
    """

    policy: Policy
    skipped: tuple[Skipped, ...]
