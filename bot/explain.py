"""``signoff policy explain``: what config would do with a request, worked out from the file.

:func:`explain` runs the real policy selection (``PolicySet.explain``, the same code that
routes live requests) and gathers what follows from the chosen policy: the decision, who is
asked at each level (groups expanded to persons), where cards go (channels resolved to
platform ids, ``dm`` per approver and platform, ``web``), timeouts, reminders, quorum, the
four-eyes rule and what silence leads to. :func:`render` writes it for people;
:meth:`Explanation.to_json` for scripts. No server or database is involved.
"""

from __future__ import annotations

import fnmatch
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from approvals.directory import DM, WEB, Destination, DestinationKind, Directory
from approvals.policy import AutoDecision, Policy, TimeoutOutcome
from config import LoadedConfig, default_config, format_duration, load_config
from config.schema import PolicySettings, SignoffSettings

STAND_IN = "unset"
"""What an ``${ENV_VAR}`` that is not set reads as while explaining (secrets do not matter)."""

_OUTCOME_WORDS = {
    TimeoutOutcome.DENY: "the request is denied (silence denies)",
    TimeoutOutcome.EXPIRE: "the request expires (neither approved nor denied)",
    TimeoutOutcome.APPROVE: "the request is APPROVED (this policy lets silence approve)",
}


class _StandInEnvironment(Mapping[str, str]):
    """The process environment, where a variable that is not set reads as ``STAND_IN``."""

    def __init__(self, real: Mapping[str, str]) -> None:
        self._real = real
        self.stood_in: list[str] = []

    def __getitem__(self, name: str) -> str:
        if name in self._real:
            return self._real[name]
        if name not in self.stood_in:
            self.stood_in.append(name)
        return STAND_IN

    def __iter__(self) -> Iterator[str]:
        return iter(self._real)

    def __len__(self) -> int:
        return len(self._real)


def load_for_explain(
    path: str | None, environ: Mapping[str, str] | None = None
) -> tuple[LoadedConfig, tuple[str, ...]]:
    """Load a config for explaining, without needing its secrets in the environment.

    Args:
        path: the config file; ``None`` for the built-in default.
        environ: the environment (``os.environ`` if omitted).

    Returns:
        The config and the names of the variables that were not set (read as ``STAND_IN``).

    Raises:
        ConfigError: the file has problems other than unset variables.
    """
    if path is None:
        return default_config(), ()
    environment = _StandInEnvironment(os.environ if environ is None else environ)
    config = load_config(path, environ=environment)
    return config, tuple(environment.stood_in)


@dataclass(frozen=True)
class RuleCheck:
    """One policy looked at while selecting.

    Attributes:
        index: the policy's position in ``policies``.
        policy: its name.
        matched: whether it matched (only the last one checked does).
        part: for a skipped policy, what failed: ``action``, ``agent`` or ``params``.
        reason: why it matched or why not, in words.
    """

    index: int
    policy: str
    matched: bool
    part: str | None
    reason: str


@dataclass(frozen=True)
class Target:
    """One place a card is posted.

    Attributes:
        platform: ``slack``, ``telegram``, ``discord``, ``teams``, ``email`` or ``web``.
        kind: ``channel``, ``user`` (a direct message) or ``inbox``.
        id: the platform id of the channel or user (empty for the web inbox).
        person: for a direct message, whose.
    """

    platform: str
    kind: str
    id: str
    person: str | None = None

    def describe(self) -> str:
        if self.kind == "inbox":
            return "the web inbox"
        place = {"channel": "channel", "user": "user"}[self.kind]
        if self.platform == "telegram" and self.kind == "channel":
            place = "chat"
        if self.platform == "email":
            # A list gets the card without Approve / Deny links (see config.checks).
            place = "to" if self.kind == "user" else "to the list (no decision links)"
        text = f"{self.platform} {place} {self.id}"
        return f"{text} ({self.person})" if self.person else text


@dataclass(frozen=True)
class NotifyPlan:
    """One entry of a level's ``notify`` list, resolved.

    Attributes:
        name: as written: a channel name, ``dm`` or ``web``.
        targets: where cards actually go.
        notes: what a reader should know (an approver ``dm`` cannot reach, ...).
    """

    name: str
    targets: tuple[Target, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LevelPlan:
    """One escalation level of the chosen policy, worked out.

    Attributes:
        number: 0 for the first level, as the agent API, status, cards and pages number
            levels.
        approvers: approver names as written (people and groups).
        groups: group name -> its members, for the groups among ``approvers``.
        persons: the persons those names stand for.
        may_decide: everyone who may vote once the request is at this level (earlier
            levels' approvers too), minus the person it was requested by.
        notify: where cards go when the request reaches this level.
        starts_after: time from creation until the level begins.
        timeout: how long the level lasts before the request moves on.
        remind_every: how often its approvers are reminded.
        reminders: how many reminders the level sends at most.
        reached: whether the level starts before the request's default deadline.
        then: what happens when the level's time is up.
    """

    number: int
    approvers: tuple[str, ...]
    groups: Mapping[str, tuple[str, ...]]
    persons: tuple[str, ...]
    may_decide: tuple[str, ...]
    notify: tuple[NotifyPlan, ...]
    starts_after: timedelta
    timeout: timedelta
    remind_every: timedelta | None
    reminders: int
    reached: bool
    then: str


@dataclass(frozen=True)
class Explanation:
    """Everything ``signoff policy explain`` says about one would-be request."""

    source: str
    action: str
    agent: str | None
    params: Mapping[str, Any]
    requested_by: str | None
    agent_notes: tuple[str, ...]
    rules: tuple[RuleCheck, ...]
    policy: str
    policy_index: int
    decision: AutoDecision
    doubts: tuple[str, ...]
    quorum: int
    require_reason: bool
    levels: tuple[LevelPlan, ...]
    default_timeout: timedelta
    min_timeout: timedelta | None
    max_timeout: timedelta | None
    on_timeout: TimeoutOutcome
    outcome: str
    notes: tuple[str, ...] = ()
    stand_ins: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """A JSON object with every field; durations in seconds."""
        return {
            "config": self.source,
            "request": {
                "action": self.action,
                "agent": self.agent,
                "params": dict(self.params),
                "requested_by": self.requested_by,
            },
            "agent_notes": list(self.agent_notes),
            "rules": [
                {
                    "index": rule.index,
                    "policy": rule.policy,
                    "matched": rule.matched,
                    "part": rule.part,
                    "reason": rule.reason,
                }
                for rule in self.rules
            ],
            "policy": self.policy,
            "policy_index": self.policy_index,
            "decision": self.decision.value,
            "doubts": list(self.doubts),
            "quorum": self.quorum,
            "require_reason": self.require_reason,
            "levels": [_level_json(level) for level in self.levels],
            "timeout": {
                "default_seconds": self.default_timeout.total_seconds(),
                "min_seconds": _seconds(self.min_timeout),
                "max_seconds": _seconds(self.max_timeout),
            },
            "on_timeout": self.on_timeout.value,
            "outcome": self.outcome,
            "notes": list(self.notes),
            "stand_ins": list(self.stand_ins),
        }


def _seconds(delta: timedelta | None) -> float | None:
    return None if delta is None else delta.total_seconds()


def _level_json(level: LevelPlan) -> dict[str, Any]:
    return {
        "level": level.number,
        "approvers": list(level.approvers),
        "groups": {name: list(members) for name, members in level.groups.items()},
        "persons": list(level.persons),
        "may_decide": list(level.may_decide),
        "notify": [
            {
                "name": plan.name,
                "targets": [
                    {
                        "platform": target.platform,
                        "kind": target.kind,
                        "id": target.id,
                        "person": target.person,
                    }
                    for target in plan.targets
                ],
                "notes": list(plan.notes),
            }
            for plan in level.notify
        ],
        "starts_after_seconds": level.starts_after.total_seconds(),
        "timeout_seconds": level.timeout.total_seconds(),
        "remind_every_seconds": _seconds(level.remind_every),
        "reminders": level.reminders,
        "reached": level.reached,
        "then": level.then,
    }


def explain(
    config: LoadedConfig,
    *,
    action: str,
    agent: str | None = None,
    params: Mapping[str, Any] | None = None,
    requested_by: str | None = None,
    stand_ins: tuple[str, ...] = (),
) -> Explanation:
    """Work out what ``config`` does with a request.

    Args:
        config: the loaded config.
        action: the action name, such as ``db.migrate``.
        agent: the asking agent's name; without one, policies that match on the agent are
            judged against the empty name.
        params: the request's params.
        requested_by: the person the agent acts for.
        stand_ins: variables that were not set while loading (reported back).

    Returns:
        The explanation.
    """
    request_params = dict(params or {})
    settings = config.settings
    policies = config.policy_set()
    selection = policies.explain(action, agent or "", request_params)
    chosen = selection.policy
    index = policies.policies.index(chosen)
    rules = [
        RuleCheck(
            index=policies.policies.index(skipped.policy),
            policy=skipped.policy.name,
            matched=False,
            part=skipped.mismatch.part,
            reason=skipped.mismatch.reason,
        )
        for skipped in selection.skipped
    ]
    doubts = chosen.match.doubts(request_params)
    rules.append(
        RuleCheck(
            index=index,
            policy=chosen.name,
            matched=True,
            part=None,
            reason=_why_it_matches(chosen, action, agent or "", request_params),
        )
    )
    chosen_settings = settings.policies[index]
    notes: list[str] = []
    levels: tuple[LevelPlan, ...] = ()
    if chosen.decision is AutoDecision.ASK:
        levels = _plan_levels(settings, config.directory(), chosen, chosen_settings, requested_by)
        notes += _asking_notes(settings, chosen, requested_by, levels)
    if agent is not None and agent not in settings.agents:
        notes.append(f"agent {agent!r} is not configured under agents:, so the API refuses it")
    return Explanation(
        source=config.source,
        action=action,
        agent=agent,
        params=request_params,
        requested_by=requested_by,
        agent_notes=tuple(_agent_notes(settings, action, agent)),
        rules=tuple(rules),
        policy=chosen.name,
        policy_index=index,
        decision=chosen.decision,
        doubts=tuple(
            f"{predicate.describe()} cannot be judged ({predicate.describe_value(request_params)});"
            " on doubt this policy, which does not auto-approve, still applies"
            for predicate in doubts
        ),
        quorum=chosen.quorum,
        require_reason=chosen.require_reason,
        levels=levels,
        default_timeout=chosen.timeout_for(None),
        min_timeout=chosen.min_timeout,
        max_timeout=chosen.max_timeout,
        on_timeout=chosen.on_timeout,
        outcome=_outcome(chosen),
        notes=tuple(notes),
        stand_ins=stand_ins,
    )


def _why_it_matches(policy: Policy, action: str, agent: str, params: dict[str, Any]) -> str:
    match = policy.match
    if match.is_catch_all:
        return "matches every request (the catch-all)"
    reasons: list[str] = []
    if match.actions:
        glob = next(g for g in match.actions if fnmatch.fnmatchcase(action, g))
        reasons.append(f"action {action!r} matches {glob!r}")
    if match.agents:
        glob = next(g for g in match.agents if fnmatch.fnmatchcase(agent, g))
        reasons.append(f"agent {agent!r} matches {glob!r}")
    for predicate in match.params:
        if predicate.judge(params) is None:
            reasons.append(f"{predicate.describe()} cannot be judged (counted as a match)")
        else:
            reasons.append(f"{predicate.describe()} holds ({predicate.describe_value(params)})")
    return "; ".join(reasons)


def _agent_notes(settings: SignoffSettings, action: str, agent: str | None) -> list[str]:
    if agent is None:
        return ["no --agent given: policies that match on the agent see an empty name"]
    found = settings.agents.get(agent)
    if found is None:
        known = ", ".join(sorted(settings.agents)) or "none"
        return [f"agent {agent!r} is not configured (configured: {known}); the API refuses it"]
    allowed = ", ".join(found.allow)
    if any(fnmatch.fnmatchcase(action, pattern) for pattern in found.allow):
        return [f"agent {agent!r} may request {action!r} (allow: {allowed})"]
    return [
        f"agent {agent!r} may NOT request {action!r} (allow: {allowed}): the API refuses it "
        "with 403 before any policy applies"
    ]


def _plan_levels(
    settings: SignoffSettings,
    directory: Directory,
    policy: Policy,
    policy_settings: PolicySettings,
    requested_by: str | None,
) -> tuple[LevelPlan, ...]:
    deadline = policy.timeout_for(None)
    plans: list[LevelPlan] = []
    starts_after = timedelta(0)
    for number, (level, written) in enumerate(
        zip(policy.levels, policy_settings.levels, strict=True)
    ):
        reached = number == 0 or starts_after < deadline
        is_last = number == len(policy.levels) - 1
        ends_at = deadline if is_last else min(starts_after + level.timeout, deadline)
        length = max(ends_at - starts_after, timedelta(0))
        reminders = 0
        if level.remind_every is not None and reached:
            reminders = max(math.ceil(length / level.remind_every) - 1, 0)
        may_decide = [
            person for person in policy.approvers_through(number) if person != requested_by
        ]
        ordered = [p for lv in policy.levels[: number + 1] for p in lv.approvers]
        plans.append(
            LevelPlan(
                number=number,
                approvers=tuple(written.approvers),
                groups={
                    name: tuple(settings.groups[name])
                    for name in written.approvers
                    if name in settings.groups
                },
                persons=level.approvers,
                may_decide=tuple(dict.fromkeys(p for p in ordered if p in may_decide)),
                notify=tuple(
                    _plan_notify(settings, directory, name, level.approvers)
                    for name in level.notify
                ),
                starts_after=starts_after,
                timeout=level.timeout,
                remind_every=level.remind_every,
                reminders=reminders,
                reached=reached,
                then=_level_end(policy, number, starts_after + level.timeout, deadline),
            )
        )
        starts_after += level.timeout
    return tuple(plans)


def _level_end(policy: Policy, number: int, ends_after: timedelta, deadline: timedelta) -> str:
    final = (
        f"at {format_duration(deadline)} with no decision, on_timeout "
        f"{policy.on_timeout.value}: {_OUTCOME_WORDS[policy.on_timeout]}"
    )
    if number == len(policy.levels) - 1 or ends_after >= deadline:
        return final
    return f"escalates to level {number + 1} after {format_duration(ends_after)}"


def _plan_notify(
    settings: SignoffSettings, directory: Directory, name: str, approvers: tuple[str, ...]
) -> NotifyPlan:
    if name == WEB:
        return NotifyPlan(
            name,
            (Target("web", "inbox", ""),),
            ("listed in the web inbox for its approvers; nothing is posted",),
        )
    if name == DM:
        targets: list[Target] = []
        notes: list[str] = []
        for person in approvers:
            found = [
                _target(destination, person)
                for destination in directory.destinations([DM], [person])
            ]
            if not found:
                where = "the web inbox" if settings.platforms.web.enabled else "nowhere"
                notes.append(
                    f"{person} has no id on a configured chat platform: reached in {where}"
                )
            targets += found
        return NotifyPlan(name, tuple(targets), tuple(notes))
    return NotifyPlan(
        name, tuple(_target(destination) for destination in directory.channels.get(name, ()))
    )


def _target(destination: Destination, person: str | None = None) -> Target:
    kind = "user" if destination.kind is DestinationKind.USER else "channel"
    return Target(destination.platform, kind, destination.target, person)


def _asking_notes(
    settings: SignoffSettings,
    policy: Policy,
    requested_by: str | None,
    levels: tuple[LevelPlan, ...],
) -> list[str]:
    notes: list[str] = []
    everyone = policy.approvers_through(len(policy.levels) - 1)
    if requested_by is not None:
        if requested_by not in settings.people:
            notes.append(
                f"four-eyes: requested_by {requested_by!r} is not a person in config, so it "
                "excludes no approver"
            )
        elif requested_by in everyone:
            at = ", ".join(str(level.number) for level in levels if requested_by in level.persons)
            notes.append(
                f"four-eyes: {requested_by} is an approver (level {at}) but asked for this "
                f"request (requested_by), so {requested_by} cannot decide it; someone else must"
            )
        else:
            notes.append(
                f"four-eyes: {requested_by} is not an approver of this policy, so it changes "
                "nothing"
            )
    eligible = everyone - {requested_by} if requested_by else everyone
    if len(eligible) < policy.quorum:
        notes.append(
            f"quorum {policy.quorum} cannot be met: only {len(eligible)} person(s) may approve "
            f"({', '.join(sorted(eligible)) or 'none'}); the request ends by on_timeout "
            f"{policy.on_timeout.value}"
        )
    if settings.platforms.web.enabled and all(
        plan.name != WEB for level in levels for plan in level.notify
    ):
        notes.append("the web inbox also lists the request for its approvers")
    return notes


def _outcome(policy: Policy) -> str:
    if policy.decision is AutoDecision.APPROVE:
        return (
            f"approved at once by policy {policy.name} (audited); nobody is asked and no "
            "card is posted"
        )
    if policy.decision is AutoDecision.DENY:
        return (
            f"denied at once by policy {policy.name} (audited); nobody is asked and no card "
            "is posted"
        )
    return (
        f"with no decision after {format_duration(policy.timeout_for(None))}, on_timeout "
        f"{policy.on_timeout.value}: {_OUTCOME_WORDS[policy.on_timeout]}"
    )


# --- rendering -------------------------------------------------------------------------------


def render(explanation: Explanation) -> str:
    """The explanation as text for a terminal."""
    e = explanation
    lines: list[str] = [f"config: {e.source}"]
    if e.stand_ins:
        lines.append(
            "  not set in the environment (read as placeholders; they do not affect policy): "
            + ", ".join(e.stand_ins)
        )
    request = f"request: action {e.action}"
    if e.agent is not None:
        request += f", agent {e.agent}"
    if e.params:
        shown = ", ".join(f"{key}={value!r}" for key, value in e.params.items())
        request += f", params {shown}"
    if e.requested_by is not None:
        request += f", requested by {e.requested_by}"
    lines.append(request)
    lines += [f"  {note}" for note in e.agent_notes]

    lines += ["", f"policy: {e.policy} (policies[{e.policy_index}])"]
    for rule in e.rules:
        verdict = "matched" if rule.matched else "skipped"
        lines.append(f"  {verdict} {rule.policy} (policies[{rule.index}]): {rule.reason}")
    lines += [f"  doubt: {doubt}" for doubt in e.doubts]

    lines += ["", f"decision: {_decision_words(e.decision)}"]
    if e.decision is AutoDecision.ASK:
        lines.append(f"  quorum: {e.quorum} distinct person(s) must approve; one deny decides")
        lines.append(
            "  require_reason: "
            + ("a deny must give a reason" if e.require_reason else "no (a deny may be bare)")
        )
        for level in e.levels:
            lines += ["", *_render_level(level)]
        lines += ["", f"timeout: {format_duration(e.default_timeout)} in all"]
        if e.min_timeout or e.max_timeout:
            low = format_duration(e.min_timeout) if e.min_timeout else "any"
            high = format_duration(e.max_timeout) if e.max_timeout else "any"
            lines[-1] += f"; an agent may ask for {low} to {high}"
        lines.append(f"at the end: {e.outcome}")
    else:
        lines.append(f"  {e.outcome}")
    if e.notes:
        lines += ["", "notes:"]
        lines += [f"  - {note}" for note in e.notes]
    return "\n".join(lines) + "\n"


def _decision_words(decision: AutoDecision) -> str:
    return {
        AutoDecision.ASK: "ask people",
        AutoDecision.APPROVE: "auto approve",
        AutoDecision.DENY: "auto deny",
    }[decision]


def _render_level(level: LevelPlan) -> list[str]:
    when = "from the start" if level.number == 0 else f"after {format_duration(level.starts_after)}"
    head = f"level {level.number} ({when}, for {format_duration(level.timeout)}"
    if level.remind_every is not None:
        head += (
            f"; reminders every {format_duration(level.remind_every)}, {level.reminders} at most"
        )
    head += ")"
    if not level.reached:
        head += ": never reached, the request times out before it starts"
    written = []
    for name in level.approvers:
        members = level.groups.get(name)
        written.append(f"{name} ({', '.join(members)})" if members else name)
    lines = [
        head,
        f"  asks: {', '.join(written)} -> {', '.join(level.persons)}",
        f"  may decide: {', '.join(level.may_decide) or 'nobody'}",
        "  cards:",
    ]
    for plan in level.notify:
        places = ", ".join(target.describe() for target in plan.targets) or "nowhere"
        lines.append(f"    {plan.name}: {places}")
        lines += [f"      {note}" for note in plan.notes]
    lines.append(f"  then: {level.then}")
    return lines
