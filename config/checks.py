"""Checks that need the whole config: names refer to things that exist, policies fit together.

Each section's own rules are in ``config.schema``; these run once the schema is
satisfied, and report where each problem is as a key path.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from approvals.directory import DM, WEB
from config.problems import KeyPath
from config.schema import EMAIL_PLATFORM, PolicySettings, SignoffSettings

RESERVED_NOTIFY_NAMES = frozenset({DM, WEB})
"""Notify targets with a fixed meaning, which channels cannot be named."""


@dataclass(frozen=True)
class Finding:
    """One problem a whole-config check found.

    Attributes:
        path: where in the document.
        message: what is wrong.
    """

    path: KeyPath
    message: str


def find_problems(settings: SignoffSettings) -> list[Finding]:
    """Run every whole-config check.

    Args:
        settings: a config that satisfies the schema.

    Returns:
        The problems, in the order of the sections they are in.
    """
    findings: list[Finding] = []
    findings += _check_people(settings)
    findings += _check_groups(settings)
    findings += _check_admins(settings)
    findings += _check_channels(settings)
    findings += _check_platforms(settings)
    findings += _check_policies(settings)
    findings += _check_email(settings)
    return findings


def _suggestion(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_people(settings: SignoffSettings) -> list[Finding]:
    findings: list[Finding] = []
    owners: dict[tuple[str, str], str] = {}
    for name, person in settings.people.items():
        for platform, identity in person.identities().items():
            owner = owners.setdefault((platform, identity), name)
            if owner != name:
                findings.append(
                    Finding(
                        ("people", name, platform),
                        f"{platform} id {identity} is already {owner}'s "
                        f"(people.{owner}.{platform}); one identity belongs to one person",
                    )
                )
    return findings


def _check_groups(settings: SignoffSettings) -> list[Finding]:
    findings: list[Finding] = []
    for group, members in settings.groups.items():
        if group in settings.people:
            findings.append(
                Finding(
                    ("groups", group),
                    f"{group!r} is both a person and a group, so an approver named {group!r} "
                    "would be ambiguous; rename one of them",
                )
            )
        for index, member in enumerate(members):
            if member in settings.people:
                continue
            if member in settings.groups:
                message = f"{member!r} is a group; groups list people only"
            else:
                message = f"unknown person {member!r}" + _suggestion(member, settings.people)
                message += "; groups list names from people"
            findings.append(Finding(("groups", group, index), message))
    return findings


def _check_admins(settings: SignoffSettings) -> list[Finding]:
    return [
        Finding(
            ("admins", index),
            f"unknown person {name!r}"
            + _suggestion(name, settings.people)
            + "; admins lists names from people",
        )
        for index, name in enumerate(settings.admins)
        if name not in settings.people
    ]


def _check_channels(settings: SignoffSettings) -> list[Finding]:
    findings: list[Finding] = []
    configured = settings.platforms.delivery_platforms
    for name, channel in settings.channels.items():
        if name in RESERVED_NOTIFY_NAMES:
            findings.append(
                Finding(
                    ("channels", name),
                    f"{name!r} is reserved in notify lists; give the channel another name",
                )
            )
        for platform in channel.ids():
            if platform not in configured:
                findings.append(
                    Finding(
                        ("channels", name, platform),
                        f"{platform} is not configured: add it under platforms, or remove "
                        f"this channel's {platform} id",
                    )
                )
    return findings


def _check_platforms(settings: SignoffSettings) -> list[Finding]:
    if settings.platforms.web.enabled or settings.platforms.chat_platforms:
        return []
    return [
        Finding(
            ("platforms", "web", "enabled"),
            "with the web inbox disabled and no chat platform configured, nobody can be "
            "asked; enable the web inbox or configure slack, telegram, discord or teams",
        )
    ]


def _check_policies(settings: SignoffSettings) -> list[Finding]:
    findings: list[Finding] = []
    first_index_by_name: dict[str, int] = {}
    last = len(settings.policies) - 1
    for index, policy in enumerate(settings.policies):
        path: KeyPath = ("policies", index)
        earlier = first_index_by_name.setdefault(policy.name, index)
        if earlier != index:
            findings.append(
                Finding(
                    (*path, "name"),
                    f"policy name {policy.name!r} is already used by policies[{earlier}]; "
                    "policy names must be unique",
                )
            )
        if policy.match.is_catch_all and index != last:
            findings.append(
                Finding(
                    (*path, "match"),
                    f"policy {policy.name!r} matches every request, so the policies after it "
                    "would never apply; only the last policy may match everything",
                )
            )
        if index == last and not policy.match.is_catch_all:
            findings.append(
                Finding(
                    (*path, "match"),
                    "the last policy must match every request (write match: {} or leave "
                    "match out), so that every request has a policy",
                )
            )
        findings += _check_levels(settings, policy, path)
    return findings


def _check_levels(
    settings: SignoffSettings, policy: PolicySettings, path: KeyPath
) -> list[Finding]:
    findings: list[Finding] = []
    approver_names = [*settings.people, *settings.groups]
    notify_names = [*settings.channels, DM, WEB]
    for level_index, level in enumerate(policy.levels):
        level_path: KeyPath = (*path, "levels", level_index)
        for index, approver in enumerate(level.approvers):
            if approver not in settings.people and approver not in settings.groups:
                findings.append(
                    Finding(
                        (*level_path, "approvers", index),
                        f"unknown approver {approver!r}"
                        + _suggestion(approver, approver_names)
                        + "; approvers are names from people or groups",
                    )
                )
        for index, target in enumerate(level.notify):
            if target == WEB and not settings.platforms.web.enabled:
                findings.append(
                    Finding(
                        (*level_path, "notify", index),
                        "the web inbox is disabled (platforms.web.enabled is false)",
                    )
                )
            elif target not in settings.channels and target not in RESERVED_NOTIFY_NAMES:
                findings.append(
                    Finding(
                        (*level_path, "notify", index),
                        f"unknown channel {target!r}"
                        + _suggestion(target, notify_names)
                        + "; notify lists names from channels, dm or web",
                    )
                )
    if policy.levels:
        persons = {
            person
            for level in policy.levels
            for person in settings.expand_approvers(level.approvers)
        }
        if policy.quorum > len(persons):
            listed = ", ".join(sorted(persons)) or "none"
            findings.append(
                Finding(
                    (*path, "quorum"),
                    f"quorum {policy.quorum} needs that many distinct people, but the levels "
                    f"name only {len(persons)} ({listed})",
                )
            )
    return findings


# --- email ---------------------------------------------------------------------------------


def _is_mailing_list(settings: SignoffSettings, target: str) -> bool:
    """Whether a notify target is a channel that reaches people only by email."""
    channel = settings.channels.get(target)
    return channel is not None and set(channel.ids()) == {EMAIL_PLATFORM}


def _check_email(settings: SignoffSettings) -> list[Finding]:
    """Email's own rules.

    Its Approve / Deny links open confirm pages in the web inbox, so email needs the inbox.
    A mailing list (a channel with only an email address) gets cards without links: one
    link for a whole list could not tell who decided. So a level may notify a list only
    next to a place where its approvers can decide (``dm``, ``web`` or a chat channel);
    a level that notifies lists alone would leave its approvers nothing to click.
    """
    findings: list[Finding] = []
    if settings.platforms.email is not None and not settings.platforms.web.enabled:
        findings.append(
            Finding(
                ("platforms", "email"),
                "email's Approve / Deny links open confirm pages in the web inbox, which is "
                "disabled; set platforms.web.enabled to true, or remove platforms.email",
            )
        )
    for index, policy in enumerate(settings.policies):
        for level_index, level in enumerate(policy.levels):
            lists = [target for target in level.notify if _is_mailing_list(settings, target)]
            if not lists or len(lists) < len(set(level.notify)):
                continue
            findings.append(
                Finding(
                    ("policies", index, "levels", level_index, "notify"),
                    f"{', '.join(lists)} only reach{'es' if len(lists) == 1 else ''} a "
                    "mailing list, whose mail has no Approve / Deny links; add dm, web or a "
                    "chat channel to this notify list so that the approvers can decide",
                )
            )
    return findings
