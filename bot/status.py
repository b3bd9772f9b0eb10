"""``signoff status``: what is waiting, what is stuck, and how the running server feels.

The figures come straight from the database (pending requests by policy and level with
their next deadline, outbox depth and dead letters by platform, the last config load from
the audit log); adapter health comes from the running server's ``/readyz`` when it answers.
:func:`collect_status` gathers a :class:`StatusReport`; :func:`render` writes it for people
and :meth:`StatusReport.to_json` for scripts.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from approvals.audit import AuditKind
from approvals.clock import Clock
from approvals.grants import Grant, matched_text
from approvals.store import SqlStore, SyncReads, status_queries
from approvals.store import grants as grant_rows
from config import ConfigError, LoadedConfig, format_duration
from config.loader import MAX_CONFIG_BYTES
from config.schema import SECRETS_FROM_ENVIRONMENT, DatabaseSettings, ServerSettings
from config.yaml_document import DocumentError, parse_document

PROBE_TIMEOUT_SECONDS = 3.0
"""How long to wait for the running server's ``/readyz``."""

_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


@dataclass(frozen=True)
class PendingGroup:
    """Pending requests of one policy at one level.

    Attributes:
        policy: the policy name the requests were created under.
        level: the escalation level, 0-based (as the API reports it).
        count: how many requests.
        next_due_at: the soonest moment one of them needs the sweeper (a reminder, an
            escalation or a timeout).
        earliest_deadline: the soonest final deadline among them.
    """

    policy: str
    level: int
    count: int
    next_due_at: datetime | None
    earliest_deadline: datetime


@dataclass(frozen=True)
class PlatformOutbox:
    """Outbox figures for one platform.

    Attributes:
        platform: ``slack``, ``telegram``, ``discord``, or another destination kind.
        pending: rows waiting to be delivered (the outbox depth).
        dead: rows given up on (dead letters).
        oldest_pending_at: when the oldest waiting row was written.
    """

    platform: str
    pending: int = 0
    dead: int = 0
    oldest_pending_at: datetime | None = None


@dataclass(frozen=True)
class ConfigEvent:
    """A config load or rejection recorded in the audit log."""

    kind: str
    at: datetime
    seq: int
    data: dict[str, Any]


@dataclass(frozen=True)
class ServerHealth:
    """What the running server's ``/readyz`` said, or why it could not be asked.

    Attributes:
        reachable: whether a signoff server answered.
        url: the ``/readyz`` URL that answered (or the last one tried).
        status: ``ready`` or ``not ready``.
        checks: check name (``database``, each adapter) -> ``ok`` or what is wrong.
        details: further readiness details (such as a rejected config reload).
        error: why no server answered.
    """

    reachable: bool
    url: str | None = None
    status: str | None = None
    checks: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class StatusReport:
    """Everything ``signoff status`` shows."""

    now: datetime
    config_source: str
    database: str
    pending: tuple[PendingGroup, ...]
    outbox: tuple[PlatformOutbox, ...]
    server: ServerHealth
    last_config_load: ConfigEvent | None
    last_config_rejection: ConfigEvent | None
    config_problems: tuple[str, ...] = ()
    """Problems of the config file as it is now on disk (empty when it loads)."""
    grants: tuple[Grant, ...] = ()
    """The time-boxed grants live now, soonest to end first."""

    @property
    def pending_total(self) -> int:
        return sum(group.count for group in self.pending)

    def to_json(self) -> dict[str, Any]:
        """A JSON object; times are ISO 8601 UTC, ``*_in_seconds`` negative when overdue."""
        return {
            "now": self.now.isoformat(),
            "config": self.config_source,
            "config_problems": list(self.config_problems),
            "database": self.database,
            "pending": {
                "total": self.pending_total,
                "groups": [
                    {
                        "policy": group.policy,
                        "level": group.level,
                        "count": group.count,
                        "next_due_at": _iso(group.next_due_at),
                        "next_due_in_seconds": _seconds_until(group.next_due_at, self.now),
                        "earliest_deadline": group.earliest_deadline.isoformat(),
                        "earliest_deadline_in_seconds": _seconds_until(
                            group.earliest_deadline, self.now
                        ),
                    }
                    for group in self.pending
                ],
            },
            "outbox": {
                "pending": sum(row.pending for row in self.outbox),
                "dead": sum(row.dead for row in self.outbox),
                "platforms": {
                    row.platform: {
                        "pending": row.pending,
                        "dead": row.dead,
                        "oldest_pending_at": _iso(row.oldest_pending_at),
                    }
                    for row in self.outbox
                },
            },
            "server": {
                "reachable": self.server.reachable,
                "url": self.server.url,
                "status": self.server.status,
                "checks": self.server.checks,
                "details": self.server.details,
                "error": self.server.error,
            },
            "last_config_load": _event_json(self.last_config_load),
            "last_config_rejection": _event_json(self.last_config_rejection),
            "grants": [grant.to_json() for grant in self.grants],
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _seconds_until(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else round((moment - now).total_seconds(), 3)


def _event_json(event: ConfigEvent | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {"kind": event.kind, "at": event.at.isoformat(), "seq": event.seq, **event.data}


# --- what to look at --------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusTarget:
    """What status needs from a config: where the database is and where the server listens.

    Attributes:
        source: the config file (or ``<built-in default>``).
        database_url: the database.
        server: the server's listen address and public URL.
        config_problems: when the file as it is now has problems, what they are (status
            then reads only ``server`` and ``database`` from it).
    """

    source: str
    database_url: str
    server: ServerSettings
    config_problems: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: LoadedConfig) -> StatusTarget:
        return cls(config.source, config.settings.database.url, config.settings.server)


def lenient_target(path: str, error: ConfigError) -> StatusTarget | None:
    """A target from a config file that does not load, if its ``server`` and ``database``
    sections are sound on their own (the running server may well be on an older version).

    Returns:
        The target, carrying the file's problems; ``None`` when even those sections fail.
    """
    problems = tuple(str(problem) for problem in error.problems)
    try:
        raw = Path(path).read_bytes()[:MAX_CONFIG_BYTES]
        document = parse_document(raw.decode("utf-8-sig"), os.environ)
    except (OSError, UnicodeDecodeError, DocumentError):
        return None
    data = document.data if isinstance(document.data, dict) else {}
    context = {SECRETS_FROM_ENVIRONMENT: True}
    try:
        database = DatabaseSettings.model_validate(data.get("database") or {}, context=context)
        server = ServerSettings.model_validate(data.get("server") or {}, context=context)
    except ValidationError:
        return None
    return StatusTarget(path, database.url, server, problems)


# --- gathering -------------------------------------------------------------------------------


async def collect_status(
    target: StatusTarget | LoadedConfig,
    store: SqlStore,
    clock: Clock,
    *,
    http: httpx.AsyncClient | None = None,
) -> StatusReport:
    """Read the figures from ``store`` and ask the running server how it is.

    Args:
        target: the config the server runs with (for its addresses).
        store: the database.
        clock: tells "now" for the time to each deadline.
        http: the client to reach the server with (tests pass one bound to an app).

    Returns:
        The report.
    """
    if isinstance(target, LoadedConfig):
        target = StatusTarget.of(target)
    now = clock.now()
    figures = await store.query(lambda reads: _read_figures(reads, now))
    loaded, rejected = figures.last_config_load, figures.last_config_rejection
    if rejected is not None and loaded is not None and rejected.seq < loaded.seq:
        rejected = None  # a later load superseded it
    server = await probe_server(target.server, http=http)
    return StatusReport(
        now=now,
        config_source=target.source,
        config_problems=target.config_problems,
        database=safe_url(target.database_url),
        pending=figures.pending,
        outbox=figures.outbox,
        server=server,
        last_config_load=loaded,
        last_config_rejection=rejected,
        grants=figures.grants,
    )


@dataclass(frozen=True)
class _DatabaseFigures:
    """What status reads from the database, all in one snapshot."""

    pending: tuple[PendingGroup, ...]
    outbox: tuple[PlatformOutbox, ...]
    last_config_load: ConfigEvent | None
    last_config_rejection: ConfigEvent | None
    grants: tuple[Grant, ...]


def _read_figures(reads: SyncReads, now: datetime) -> _DatabaseFigures:
    return _DatabaseFigures(
        pending=_pending_groups(reads),
        outbox=_outbox_by_platform(reads),
        last_config_load=_last_config_event(reads, AuditKind.CONFIG_LOADED.value),
        last_config_rejection=_last_config_event(reads, AuditKind.CONFIG_REJECTED.value),
        grants=tuple(grant_rows.live_grants(reads, now)),
    )


def _pending_groups(reads: SyncReads) -> tuple[PendingGroup, ...]:
    groups = []
    for counted in status_queries.pending_counts(reads):
        earliest = counted.earliest_deadline
        assert earliest is not None, "a pending request always has a deadline"
        groups.append(
            PendingGroup(
                policy=counted.policy,
                level=counted.level,
                count=counted.count,
                next_due_at=counted.next_due_at,
                earliest_deadline=earliest,
            )
        )
    return tuple(groups)


def _outbox_by_platform(reads: SyncReads) -> tuple[PlatformOutbox, ...]:
    figures: dict[str, dict[str, Any]] = {}
    for backlog in status_queries.outbox_backlog(reads):
        platform = backlog.destination.split(":", 1)[0]
        entry = figures.setdefault(platform, {"pending": 0, "dead": 0, "oldest": None})
        entry[backlog.state] += backlog.count
        if backlog.state == "pending":
            moment = backlog.oldest_created_at
            if moment is not None and (entry["oldest"] is None or moment < entry["oldest"]):
                entry["oldest"] = moment
    return tuple(
        PlatformOutbox(
            platform=platform,
            pending=entry["pending"],
            dead=entry["dead"],
            oldest_pending_at=entry["oldest"],
        )
        for platform, entry in sorted(figures.items())
    )


def _last_config_event(reads: SyncReads, kind: str) -> ConfigEvent | None:
    entry = status_queries.last_audit_entry(reads, kind)
    if entry is None:
        return None
    try:
        data = json.loads(entry.data)
    except ValueError:
        data = {}
    return ConfigEvent(
        kind=kind, at=entry.at, seq=int(entry.seq), data=data if isinstance(data, dict) else {}
    )


def readyz_urls(server: ServerSettings) -> list[str]:
    """Where to look for the running server: its listen address, then its public URL."""
    host = _WILDCARD_HOSTS.get(server.host, server.host)
    shown = f"[{host}]" if ":" in host else host
    urls = [f"http://{shown}:{server.port}/readyz"]
    public = f"{str(server.public_url).rstrip('/')}/readyz"
    if public not in urls:
        urls.append(public)
    return urls


async def probe_server(
    server: ServerSettings, *, http: httpx.AsyncClient | None = None
) -> ServerHealth:
    """Ask the running server's ``/readyz``; a 503 answer is an answer too."""
    client = http or httpx.AsyncClient(timeout=PROBE_TIMEOUT_SECONDS, trust_env=False)
    errors: list[str] = []
    try:
        for url in readyz_urls(server):
            try:
                response = await client.get(url)
                body = response.json()
            except httpx.HTTPError as exc:
                errors.append(f"{url}: {type(exc).__name__}")
                continue
            except ValueError:
                errors.append(f"{url}: answered, but not with signoff's JSON")
                continue
            checks = body.get("checks") if isinstance(body, dict) else None
            if not isinstance(checks, dict):
                errors.append(f"{url}: answered, but not with signoff's readiness")
                continue
            details = body.get("details")
            return ServerHealth(
                reachable=True,
                url=url,
                status=str(body.get("status")),
                checks={str(name): str(value) for name, value in checks.items()},
                details=details if isinstance(details, dict) else {},
            )
    finally:
        if http is None:
            await client.aclose()
    return ServerHealth(reachable=False, error="server not reachable (" + "; ".join(errors) + ")")


def safe_url(url: str) -> str:
    """A database URL without its password, fit for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


# --- rendering -------------------------------------------------------------------------------


def _until(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    delta = moment - now
    if delta < timedelta(0):
        return f"overdue by {format_duration(-delta) if -delta >= timedelta(seconds=1) else '0s'}"
    return f"in {format_duration(delta) if delta >= timedelta(seconds=1) else '0s'}"


def _table(columns: Iterable[str]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table


def render(report: StatusReport) -> str:
    """The report as text for a terminal."""
    buffer = io.StringIO()
    out = Console(file=buffer, width=160, highlight=False, no_color=True, soft_wrap=True)
    now = report.now
    out.print(f"config {report.config_source}, database {report.database}")
    if report.config_problems:
        out.print("the config file does not load as it is now (server and database read anyway):")
        for problem in report.config_problems:
            out.print(f"  {problem}")

    out.print()
    out.print(f"pending requests: {report.pending_total}")
    if report.pending:
        table = _table(("POLICY", "LEVEL", "PENDING", "NEXT DEADLINE", "FINAL DEADLINE"))
        for group in report.pending:
            table.add_row(
                group.policy,
                str(group.level),
                str(group.count),
                _until(group.next_due_at, now),
                _until(group.earliest_deadline, now),
            )
        out.print(table)

    out.print()
    depth = sum(row.pending for row in report.outbox)
    dead = sum(row.dead for row in report.outbox)
    out.print(f"outbox: {depth} waiting, {dead} dead letters")
    if report.outbox:
        table = _table(("PLATFORM", "WAITING", "DEAD", "OLDEST WAITING"))
        for row in report.outbox:
            oldest = "-"
            if row.oldest_pending_at is not None:
                oldest = f"{format_duration(max(now - row.oldest_pending_at, timedelta(0)))} ago"
            table.add_row(row.platform, str(row.pending), str(row.dead), oldest)
        out.print(table)

    out.print()
    out.print(f"live grants: {len(report.grants)}")
    if report.grants:
        table = _table(("GRANT", "POLICY", "AGENT", "ACTION", "SAME", "GIVEN BY", "ENDS"))
        for grant in report.grants:
            table.add_row(
                grant.id,
                grant.policy,
                grant.agent,
                grant.action,
                matched_text(grant),
                ", ".join(grant.given_by),
                _until(grant.expires_at, now),
            )
        out.print(table)
        out.print("  end one with: signoff grants revoke GRANT")

    out.print()
    server = report.server
    if server.reachable:
        out.print(f"server: {server.status} ({server.url})")
        table = _table(("CHECK", "STATE"))
        for name, state in server.checks.items():
            table.add_row(name, state)
        out.print(table)
        for name, value in server.details.items():
            out.print(f"  {name}: {value}")
    else:
        out.print(f"server: {server.error}")

    out.print()
    load = report.last_config_load
    if load is None:
        out.print("last config load: none recorded")
    else:
        sha = str(load.data.get("sha256", ""))[:12]
        out.print(
            f"last config load: {load.data.get('source', '?')} at {_local(load.at)} "
            f"(sha256 {sha}...)"
        )
    rejected = report.last_config_rejection
    if rejected is not None:
        out.print(
            f"config REJECTED at {_local(rejected.at)}, still running on the previous one: "
            f"{rejected.data.get('error', '')}"
        )
    return buffer.getvalue()


def _local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
