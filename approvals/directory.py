"""People, their platform identities, and where cards go: the routing half of config.

Authorization uses immutable platform ids only (Slack user id, Telegram user id, Discord
snowflake, the web inbox's sign-in name), never display names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from approvals.requester import RequesterMatch, match_requester

WEB_PLATFORM = "web"
DM = "dm"
"""Reserved notify target: each approver of the level, directly, on every platform they use."""
WEB = "web"
"""Reserved notify target: the web inbox, which shows every pending request to its approvers."""


class DestinationKind(StrEnum):
    CHANNEL = "channel"
    USER = "user"
    ENDPOINT = "endpoint"
    """An agent's webhook receiver (platform ``webhook``), one per request."""


@dataclass(frozen=True, order=True)
class Destination:
    """One place a card is posted: a channel or chat, or one user directly."""

    platform: str
    kind: DestinationKind
    target: str

    @property
    def key(self) -> str:
        """Stable text form, used to order and rate-limit deliveries per destination."""
        return f"{self.platform}:{self.kind.value}:{self.target}"

    @classmethod
    def from_key(cls, key: str) -> Destination:
        platform, kind, target = key.split(":", 2)
        return cls(platform, DestinationKind(kind), target)


@dataclass(frozen=True)
class Person:
    """A human who may approve, with at most one identity per platform."""

    name: str
    identities: Mapping[str, str] = field(default_factory=dict)

    def identity_on(self, platform: str) -> str | None:
        if platform == WEB_PLATFORM:
            return self.name
        return self.identities.get(platform)


@dataclass(frozen=True)
class Directory:
    """Who is who, and which named channels exist.

    Attributes:
        people: person name -> person.
        channels: channel name -> destinations (usually one platform each).
        platforms: the chat platforms that are configured (``slack``, ``telegram``, ...);
            ``dm`` only reaches people on these.
        admins: people who may read every request and the whole audit log in the inbox.
    """

    people: Mapping[str, Person] = field(default_factory=dict)
    channels: Mapping[str, tuple[Destination, ...]] = field(default_factory=dict)
    platforms: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()
    _by_identity: dict[tuple[str, str], str] = field(init=False, repr=False, compare=False)
    _requesters: dict[str, RequesterMatch] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[tuple[str, str], str] = {}
        for person in self.people.values():
            for platform, identity in person.identities.items():
                owner = index.setdefault((platform, identity), person.name)
                if owner != person.name:
                    raise ValueError(
                        f"{platform} identity {identity!r} belongs to both {owner} and "
                        f"{person.name}"
                    )
        object.__setattr__(self, "_by_identity", index)
        object.__setattr__(self, "_requesters", {})

    def requester_match(self, requested_by: str | None) -> RequesterMatch:
        """The people a request's ``requested_by`` names or looks like (four-eyes: none of
        them may decide it). See :mod:`approvals.requester`."""
        if requested_by is None:
            return RequesterMatch()
        found = self._requesters.get(requested_by)
        if found is None:
            found = match_requester(requested_by, self.people)
            if len(self._requesters) < 10_000:  # a cache, bounded against odd inputs
                self._requesters[requested_by] = found
        return found

    def person_for(self, platform: str, identity: str) -> Person | None:
        """The person behind a platform identity, or ``None`` for a stranger."""
        if platform == WEB_PLATFORM:
            return self.people.get(identity)
        name = self._by_identity.get((platform, identity))
        return None if name is None else self.people[name]

    def destinations(self, notify: Iterable[str], approvers: Iterable[str]) -> list[Destination]:
        """Expand notify names into destinations, without repeats, in a stable order.

        ``web`` needs no delivery (the inbox reads the store), so it yields nothing here.
        Unknown names are skipped: config validation reports them before they get here.
        """
        found: dict[str, Destination] = {}
        approver_list = list(approvers)
        for name in notify:
            if name == WEB:
                continue
            if name == DM:
                for person_name in approver_list:
                    person = self.people.get(person_name)
                    if person is None:
                        continue
                    for platform, identity in sorted(person.identities.items()):
                        if platform in self.platforms:
                            dest = Destination(platform, DestinationKind.USER, identity)
                            found.setdefault(dest.key, dest)
                continue
            for dest in self.channels.get(name, ()):
                found.setdefault(dest.key, dest)
        return list(found.values())
