"""The ``signoff`` command line: serving, maintenance, credentials, and asking for approval.

Admin commands: serve, config check, db upgrade|backup|copy, audit verify|export,
agents add|list|revoke|webhook-secret, receipt-keys list|rotate|remove (in ``bot.cli_keys``),
grants list|revoke (in ``bot.cli_grants``),
login-link. Client commands (``request``, ``run``, in ``bot.cli_client``) talk to a running
server over the agent API; ``hook claude-code`` is the client's Claude Code hook
(``signoff_client.hooks.claude_code``).

Exit codes: 0 success (or approved), 1 a check found a problem (a broken audit chain) or the
request was denied, 3 expired, 4 cancelled, 2 usage or config error. Every command that reads
config takes ``--config F`` (default: ``$SIGNOFF_CONFIG``, else the built-in default); the
client commands read ``SIGNOFF_URL`` and ``SIGNOFF_API_KEY`` instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import textwrap
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from approvals.access import LOGIN_LINK_TTL, AccessStore, AgentKey
from approvals.clock import SystemClock
from approvals.store import SqlStore
from approvals.store.backup import BackupError, backup_sqlite, sqlite_path
from approvals.store.copy import (
    CopyCheckError,
    CopyError,
    config_url,
    copy_sqlite_to_postgresql,
    display_url,
)
from bot import cli_client, cli_grants, cli_keys, mcp_command, signoff_version
from config import (
    ConfigError,
    LoadedConfig,
    default_config,
    format_duration,
    load_config,
    parse_duration,
)
from config.loader import DEFAULT_SOURCE
from signoff_client.hooks import claude_code

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad arguments or config: printed without a traceback, exit code 2."""


def _load(path: str | None) -> LoadedConfig:
    chosen = path or os.environ.get("SIGNOFF_CONFIG")
    if not chosen:
        return default_config()
    try:
        return load_config(chosen)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:
        raise UsageError(f"{chosen}: cannot read the config file: {exc.strerror}") from exc


def _config_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        count = len(exc.problems)
        print(f"{args.file}: {count} problem{'s' if count != 1 else ''} found", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{args.file}: cannot read the config file: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    settings = config.settings
    platforms = sorted(settings.platforms.delivery_platforms) or ["web inbox only"]
    print(
        f"{args.file}: OK ({len(settings.people)} people, {len(settings.policies)} policies, "
        f"platforms: {', '.join(platforms)})"
    )
    return EXIT_OK


async def _db_upgrade(config: LoadedConfig) -> int:
    store = SqlStore(config.settings.database.url)
    try:
        await store.migrate()
    finally:
        await store.close()
    print(f"database {_safe_url(config.settings.database.url)} is up to date")
    return EXIT_OK


async def _db_backup(config: LoadedConfig, target: Path) -> int:
    url = config.settings.database.url
    if sqlite_path(url) is None:
        raise UsageError(
            f"{config.source}: database {_safe_url(url)} is PostgreSQL: back it up with its "
            "own tools, e.g. pg_dump --format=custom --file=signoff.dump '<database.url>', "
            "and restore with pg_restore into an empty database"
        )
    try:
        result = await asyncio.to_thread(backup_sqlite, url, target)
    except BackupError as exc:
        raise UsageError(str(exc)) from exc
    copy = SqlStore(f"sqlite:///{result.target}")
    try:
        verification = await copy.verify_audit()
    finally:
        await copy.close()
    if verification.broken is not None:
        print(
            f"{target}: copied, but its audit chain breaks at entry "
            f"{verification.broken.seq}: {verification.broken.reason}",
            file=sys.stderr,
        )
        return EXIT_PROBLEM
    print(
        f"wrote {target}: {result.size:,} bytes, {verification.checked:,} audit entries, "
        "chain verified"
    )
    return EXIT_OK


async def _db_copy(config: LoadedConfig, target: str) -> int:
    url = config.settings.database.url
    if sqlite_path(url) is None:
        raise UsageError(
            f"{config.source}: database {_safe_url(url)} is PostgreSQL already: `db copy` "
            "moves a SQLite database to PostgreSQL; between PostgreSQL servers use pg_dump "
            "and pg_restore"
        )
    try:
        result = await copy_sqlite_to_postgresql(url, target)
    except CopyCheckError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_PROBLEM
    except CopyError as exc:
        raise UsageError(str(exc)) from exc
    counts = textwrap.fill(
        ", ".join(f"{table.name} {table.rows:,}" for table in result.tables),
        width=88,
        initial_indent="  ",
        subsequent_indent="  ",
    )
    where = "a config file" if config.source == DEFAULT_SOURCE else config.source
    print(
        f"copied {_safe_url(url)} to {display_url(target)} in {result.seconds:.1f} s: "
        f"{len(result.tables)} tables, {result.rows:,} rows\n"
        f"{counts}\n"
        f"  row counts equal in every table; audit chain verified "
        f"({result.audit_entries:,} entries)\n"
        f"next: set database.url to {config_url(target)} in {where} and restart signoff"
    )
    if result.source_changed:
        print(
            f"note: signoff wrote to {_safe_url(url)} while it was copied; the copy is the "
            "database as it was when the copy began. For the move, stop signoff first, then "
            "copy into a new, empty database.",
            file=sys.stderr,
        )
    return EXIT_OK


async def _audit_verify(config: LoadedConfig) -> int:
    store = SqlStore(config.settings.database.url)
    try:
        result = await store.verify_audit()
    finally:
        await store.close()
    if result.broken is None:
        print(f"audit chain OK: {result.checked} entries verified")
        return EXIT_OK
    print(
        f"audit chain BROKEN at entry {result.broken.seq}: {result.broken.reason} "
        f"({result.checked} entries verified before it)",
        file=sys.stderr,
    )
    return EXIT_PROBLEM


async def _audit_export(config: LoadedConfig, out: TextIO, batch: int = 5000) -> int:
    store = SqlStore(config.settings.database.url)
    written = 0
    try:
        async with store.read() as reader:
            last = 0
            while entries := await reader.audit_entries(after_seq=last, limit=batch):
                for entry in entries:
                    out.write(json.dumps(entry.to_json(), ensure_ascii=False) + "\n")
                written += len(entries)
                last = entries[-1].seq
    finally:
        await store.close()
    print(f"exported {written} audit entries", file=sys.stderr)
    return EXIT_OK


# -- agent keys and sign-in links -------------------------------------------------------------


@asynccontextmanager
async def _access(config: LoadedConfig) -> AsyncIterator[AccessStore]:
    """The credential store on the configured database, migrated first."""
    store = SqlStore(config.settings.database.url)
    try:
        await store.migrate()
        yield AccessStore(store, SystemClock())
    finally:
        await store.close()


def _not_configured(config: LoadedConfig, kind: str, name: str, section: str, example: str) -> str:
    configured = getattr(config.settings, section)
    known = ", ".join(sorted(configured)) or "none"
    head = f"{config.source}: {kind} {name!r} is not configured (configured: {known})."
    snippet = f"  {section}:\n    {name}: {example}"
    if config.source == DEFAULT_SOURCE:
        return (
            f"{head}\nNo config file is in use (no --config, no $SIGNOFF_CONFIG). Write one "
            f"with {name} under {section}:, for example\n{snippet}\nand pass it with --config F."
        )
    return f"{head}\nAdd {name} under {section}: in {config.source}, for example\n{snippet}"


async def _agents_add(config: LoadedConfig, name: str, *, as_json: bool) -> int:
    if name not in config.settings.agents:
        raise UsageError(_not_configured(config, "agent", name, "agents", '{allow: ["*"]}'))
    async with _access(config) as access:
        key = await access.create_agent_key(name)
        webhook_secret = await access.webhook_secret(name)
    if as_json:
        print(json.dumps({"agent": name, "key": key, "webhook_secret": webhook_secret}))
        return EXIT_OK
    out = _console()
    out.print(
        Text.assemble(
            "API key for agent ",
            (name, "bold"),
            " (shown once: signoff keeps only its hash). Give it to the agent:",
        )
    )
    out.print(Text(f"\n  export SIGNOFF_API_KEY={key}\n", style="bold"))
    out.print(f"Revoke it with: signoff agents revoke {name}")
    out.print(
        f"Webhooks (callback_url) to this agent are signed with {webhook_secret}\n"
        f"(print it again, or rotate it, with: signoff agents webhook-secret {name})"
    )
    return EXIT_OK


async def _agents_list(config: LoadedConfig, name: str | None, *, as_json: bool) -> int:
    async with _access(config) as access:
        keys = await access.list_agent_keys(name)
    configured = config.settings.agents
    if as_json:
        print(json.dumps([_key_json(key, key.agent in configured) for key in keys], indent=2))
        return EXIT_OK
    if not keys:
        which = f" for agent {name!r}" if name else ""
        print(f"no agent keys{which}; make one with: signoff agents add NAME")
        return EXIT_OK
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("KEY ID", "AGENT", "CREATED", "REVOKED"):
        table.add_column(column, no_wrap=True)
    for key in keys:
        agent = Text(key.agent)
        if key.agent not in configured:
            agent.append(" (not configured)", style="yellow")
        revoked = Text(_local(key.revoked_at), style="red") if key.revoked_at else Text("-")
        table.add_row(key.key_id, agent, _local(key.created_at), revoked)
    _console().print(table)
    live = sum(1 for key in keys if key.revoked_at is None)
    print(f"{len(keys)} key{'s' if len(keys) != 1 else ''}, {live} live")
    return EXIT_OK


def _key_json(key: AgentKey, configured: bool) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "agent": key.agent,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "configured": configured,
    }


async def _agents_revoke(config: LoadedConfig, name: str) -> int:
    async with _access(config) as access:
        if not await access.list_agent_keys(name):
            known = sorted({key.agent for key in await access.list_agent_keys()})
            raise UsageError(
                f"agent {name!r} has no keys (agents with keys: {', '.join(known) or 'none'})"
            )
        revoked = await access.revoke_agent_keys(name)
    print(f"revoked {revoked} live key{'s' if revoked != 1 else ''} of agent {name}")
    return EXIT_OK


async def _agents_webhook_secret(config: LoadedConfig, args: argparse.Namespace) -> int:
    if args.name not in config.settings.agents:
        raise UsageError(_not_configured(config, "agent", args.name, "agents", '{allow: ["*"]}'))
    async with _access(config) as access:
        return await cli_keys.webhook_secret_command(
            access, args.name, rotate=args.rotate, as_json=args.json
        )


async def _login_link(config: LoadedConfig, person: str, ttl: timedelta, *, as_json: bool) -> int:
    if person not in config.settings.people:
        raise UsageError(_not_configured(config, "person", person, "people", "{}"))
    settings = config.settings
    if not settings.platforms.web.enabled:
        raise UsageError(
            f"{config.source}: the web inbox is disabled (platforms.web.enabled: false), so "
            "a sign-in link would lead nowhere"
        )
    async with _access(config) as access:
        token = await access.create_login_token(person, ttl=ttl)
    url = f"{str(settings.server.public_url).rstrip('/')}/login?token={token}"
    if as_json:
        expires = datetime.now().astimezone() + ttl
        print(json.dumps({"person": person, "url": url, "expires_at": expires.isoformat()}))
        return EXIT_OK
    print(url, flush=True)
    _console(stderr=True).print(
        f"Sign-in link for {person}: single use, valid for {format_duration(ttl)}."
    )
    return EXIT_OK


def _policy_explain(args: argparse.Namespace) -> int:
    from bot.explain import explain, load_for_explain, render

    chosen = args.config or os.environ.get("SIGNOFF_CONFIG") or None
    try:
        config, stand_ins = load_for_explain(chosen)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    explanation = explain(
        config,
        action=args.action,
        agent=args.agent,
        params=cli_client.parse_params(args.param, args.param_json),
        requested_by=args.requested_by,
        stand_ins=stand_ins,
    )
    if args.json:
        print(json.dumps(explanation.to_json(), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(render(explanation))
    return EXIT_OK


async def _status(path: str | None, *, as_json: bool) -> int:
    from bot.status import StatusTarget, collect_status, lenient_target, render

    chosen = path or os.environ.get("SIGNOFF_CONFIG")
    if not chosen:
        target = StatusTarget.of(default_config())
    else:
        try:
            target = StatusTarget.of(load_config(chosen))
        except ConfigError as exc:
            # A broken file is exactly when status matters: report it, and still read the
            # database and ask the server when those two sections are sound.
            found = lenient_target(chosen, exc)
            if found is None:
                raise UsageError(str(exc)) from exc
            target = found
    store = SqlStore(target.database_url)
    try:
        await store.migrate()  # a database nothing has run on yet has no tables
        report = await collect_status(target, store, SystemClock())
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise UsageError(
            f"{target.source}: database {_safe_url(target.database_url)}: {reason}"
        ) from exc
    finally:
        await store.close()
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        sys.stdout.write(render(report))
    return EXIT_OK


def _ttl(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from exc


def _local(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _console(*, stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


async def _serve(config: LoadedConfig, *, builtin_default: bool) -> int:
    from bot.logging_setup import configure_logging
    from bot.server import serve

    configure_logging(config.settings.log)
    settings = config.settings
    print(
        f"signoff: config {config.source}, database {_safe_url(settings.database.url)}, "
        f"listening on {settings.server.listen} ({settings.server.public_url}); "
        "stop with Ctrl-C",
        flush=True,
    )
    await serve(config, builtin_default=builtin_default)
    print("signoff: stopped", flush=True)
    return EXIT_OK


def _safe_url(url: str) -> str:
    """The URL without a password, fit for printing."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signoff", description="Human approval for AI agents' risky actions."
    )
    parser.add_argument("--version", action="version", version=f"signoff {signoff_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--config", metavar="F", help="config file (default: $SIGNOFF_CONFIG, else built-in)"
        )
        return sub

    with_config(commands.add_parser("serve", help="run the service"))

    config_cmd = commands.add_parser("config", help="work with config files")
    config_sub = config_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = config_sub.add_parser("check", help="check a config file (exit 2 on errors)")
    check.add_argument("file", metavar="F")
    reference = config_sub.add_parser(
        "reference", help="write the configuration reference page from the config schema"
    )
    reference.add_argument(
        "--file",
        "--readme",  # its first name, kept working
        dest="readme",
        default="docs/configuration.md",
        metavar="F",
        help="the page to update (default: %(default)s)",
    )
    reference.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 when the reference is stale"
    )

    db_cmd = commands.add_parser("db", help="database maintenance")
    db_sub = db_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    with_config(db_sub.add_parser("upgrade", help="apply database migrations"))
    backup = with_config(
        db_sub.add_parser(
            "backup",
            help="write a consistent copy of the live SQLite database to a new file",
            description=(
                "Copy the configured SQLite database to FILE while signoff runs (SQLite's "
                "online backup: one committed state, writers never wait), then check the "
                "copy's audit chain. On PostgreSQL, prints how to use pg_dump instead."
            ),
        )
    )
    backup.add_argument("file", metavar="FILE", help="the new file (must not exist)")
    copy = with_config(
        db_sub.add_parser(
            "copy",
            help="move the SQLite database into an empty PostgreSQL database",
            description=(
                "Copy every table of the configured SQLite database into the PostgreSQL "
                "database URL (migrated first; it must hold no signoff data) in one "
                "transaction, from one consistent state of the source (signoff may keep "
                "running), then check that every table's row count matches and that the "
                "audit chain verifies before committing. On any failure nothing is kept."
            ),
        )
    )
    copy.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help=(
            "postgresql://user@host/dbname; leave the password out of it and set PGPASSWORD "
            "(or use ~/.pgpass) so that it is not in the process list"
        ),
    )

    audit_cmd = commands.add_parser("audit", help="the hash-chained audit log")
    audit_sub = audit_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    with_config(audit_sub.add_parser("verify", help="find the first tampered entry (exit 1)"))
    export = with_config(audit_sub.add_parser("export", help="write entries as JSON lines"))
    export.add_argument("--output", "-o", metavar="F", help="file to write (default: stdout)")

    agents_cmd = commands.add_parser("agents", help="agent API keys")
    agents_sub = agents_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = with_config(
        agents_sub.add_parser("add", help="make an API key for a configured agent (shown once)")
    )
    add.add_argument("name", metavar="NAME", help="an agent configured under agents:")
    add.add_argument("--json", action="store_true", help='print {"agent", "key"} as JSON')
    listing = with_config(agents_sub.add_parser("list", help="list keys (never their secrets)"))
    listing.add_argument("name", metavar="NAME", nargs="?", help="only this agent's keys")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = with_config(agents_sub.add_parser("revoke", help="revoke every live key of NAME"))
    revoke.add_argument("name", metavar="NAME")
    cli_keys.add_webhook_secret_parser(agents_sub, with_config)
    cli_keys.add_receipt_keys_parser(commands, with_config)
    cli_grants.add_grants_parser(commands, with_config)

    login = with_config(
        commands.add_parser("login-link", help="print a single-use web inbox sign-in link")
    )
    login.add_argument("person", metavar="PERSON", help="a person configured under people:")
    login.add_argument(
        "--ttl",
        default=format_duration(LOGIN_LINK_TTL),
        type=_ttl,
        help=f"how long the link stays valid (default: {format_duration(LOGIN_LINK_TTL)})",
    )
    login.add_argument("--json", action="store_true", help="print JSON")

    policy_cmd = commands.add_parser("policy", help="understand the policies in a config")
    policy_sub = policy_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    explain = with_config(
        policy_sub.add_parser(
            "explain",
            help="which policy a request would get, and what would happen to it",
            description=(
                "Work out, from the config file alone, which policy a request would get and "
                "why, who is asked where, the timeouts, and what happens at the end."
            ),
        )
    )
    explain.add_argument("--action", required=True, metavar="A", help="such as db.migrate")
    explain.add_argument("--agent", metavar="X", help="the asking agent's name")
    explain.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params entry with a text value (repeatable)",
    )
    explain.add_argument(
        "--param-json",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a params entry with a JSON value (repeatable)",
    )
    explain.add_argument("--requested-by", metavar="P", help="the person the agent acts for")
    explain.add_argument("--json", action="store_true", help="print JSON")

    status = with_config(
        commands.add_parser(
            "status",
            help="pending requests, outbox, adapter health, last config load",
            description=(
                "Pending requests by policy and level with their next deadline, outbox "
                "depth and dead letters by platform (read from the database), adapter "
                "health (from the running server's /readyz) and the last config load."
            ),
        )
    )
    status.add_argument("--json", action="store_true", help="print JSON")

    client_epilog = (
        "Reads SIGNOFF_URL (default: http://127.0.0.1:8080) and SIGNOFF_API_KEY. Exit codes: "
        "0 approved, 1 denied, 3 expired, 4 cancelled, 2 usage or error."
    )
    request = commands.add_parser(
        "request",
        help="ask for approval (the exit code tells the outcome)",
        description="Ask a running signoff for approval.",
        epilog=client_epilog + " Without --wait, 0 means the request was created.",
    )
    _request_options(request, title_required=True)
    request.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params entry with a text value (repeatable)",
    )
    request.add_argument(
        "--param-json",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a params entry with a JSON value (repeatable)",
    )
    request.add_argument(
        "--idempotency-key", metavar="K", help="retrying with the same K returns the same request"
    )
    request.add_argument(
        "--wait", action="store_true", help="wait for the decision (Ctrl-C cancels the request)"
    )
    request.add_argument("--json", action="store_true", help="print the request as JSON")

    run_cmd = commands.add_parser(
        "run",
        help="run a command only once it is approved",
        description=(
            "Ask for approval to run CMD here (the approved payload is its argv and working "
            "directory), wait, and run it only if exactly that was approved."
        ),
        epilog=client_epilog + " Once approved, the exit code is CMD's own.",
        usage="signoff run --action A [--title T] [options] -- CMD [ARGS...]",
    )
    _request_options(run_cmd, title_required=False)
    run_cmd.add_argument("argv", nargs="*", metavar="CMD", help="the command, after --")

    teams_cmd = commands.add_parser("teams", help="Microsoft Teams set-up")
    teams_sub = teams_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    manifest = with_config(
        teams_sub.add_parser(
            "manifest",
            help="write the Teams app package (manifest and icons) to upload to Teams",
            description=(
                "Write the zip an admin uploads to Teams (Apps, Manage your apps, Upload an "
                "app) for the bot configured under platforms.teams."
            ),
        )
    )
    manifest.add_argument(
        "--output", default="signoff-teams.zip", metavar="FILE", help="default: %(default)s"
    )

    hook_cmd = commands.add_parser("hook", help="approval hooks for agent tools")
    hook_sub = hook_cmd.add_subparsers(dest="action", required=True, metavar="AGENT")
    claude_code.add_arguments(
        hook_sub.add_parser(
            "claude-code",
            help=claude_code.HELP,
            description=claude_code.DESCRIPTION,
            epilog=claude_code.EPILOG,
        )
    )

    mcp_command.add_arguments(
        commands.add_parser(
            "mcp",
            help=mcp_command.HELP,
            description=mcp_command.DESCRIPTION,
            epilog=mcp_command.EPILOG,
        )
    )
    return parser


def _request_options(sub: argparse.ArgumentParser, *, title_required: bool) -> None:
    sub.add_argument("--action", required=True, metavar="A", help="such as db.drop_table")
    sub.add_argument(
        "--title",
        required=title_required,
        metavar="T",
        help="one line for the approvers"
        + ("" if title_required else " (default: the command line)"),
    )
    sub.add_argument("--details", default="", metavar="D", help="more text for the approvers")
    sub.add_argument("--requested-by", metavar="P", help="the person the agent acts for")
    sub.add_argument(
        "--timeout",
        metavar="SECONDS",
        help="how long approvers have (seconds, or 15m / 1h; the policy may bound it)",
    )


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "config":
            if args.action == "reference":
                from config.reference import run as write_reference

                return write_reference(Path(args.readme), check=args.check)
            return _config_check(args)
        if args.command == "policy":
            return _policy_explain(args)
        if args.command == "mcp":  # `signoff mcp` comes here only through run(): bot.entry
            from bot.mcp_server import serve  # goes to bot.mcp_command without the rest

            return serve(wait_seconds=args.wait_seconds)
        if args.command == "hook":  # reached through run() only: bot.entry goes straight
            return claude_code.run(args)  # to the hook without loading the rest
        if args.command in ("request", "run"):
            return _client_command(args)
        if args.command == "status":
            return asyncio.run(_status(args.config, as_json=args.json))
        config = _load(args.config)
        if args.command == "teams":
            return _teams_manifest(config, args.output)
        if args.command == "serve":
            builtin = not (args.config or os.environ.get("SIGNOFF_CONFIG"))
            return asyncio.run(_serve(config, builtin_default=builtin))
        try:
            if args.command == "audit" and args.action == "export":
                if args.output:
                    try:
                        out = open(args.output, "w", encoding="utf-8")  # noqa: SIM115
                    except OSError as exc:
                        raise UsageError(f"{args.output}: cannot write: {exc.strerror}") from exc
                    with out:
                        return asyncio.run(_audit_export(config, out))
                return asyncio.run(_audit_export(config, sys.stdout))
            return asyncio.run(_admin_command(args, config))
        except SQLAlchemyError as exc:
            reason = getattr(exc, "orig", None) or exc
            raise UsageError(
                f"{config.source}: database {_safe_url(config.settings.database.url)}: {reason}"
            ) from exc
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except cli_client.ClientError as exc:
        print(f"signoff: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("signoff: interrupted", file=sys.stderr)
        return EXIT_USAGE


async def _admin_command(args: argparse.Namespace, config: LoadedConfig) -> int:
    if args.command == "db":
        if args.action == "backup":
            return await _db_backup(config, Path(args.file))
        if args.action == "copy":
            return await _db_copy(config, args.to)
        return await _db_upgrade(config)
    if args.command == "agents":
        if args.action == "add":
            return await _agents_add(config, args.name, as_json=args.json)
        if args.action == "list":
            return await _agents_list(config, args.name, as_json=args.json)
        if args.action == "webhook-secret":
            return await _agents_webhook_secret(config, args)
        return await _agents_revoke(config, args.name)
    if args.command == "receipt-keys":
        return await cli_keys.receipt_keys_command(args, config)
    if args.command == "grants":
        return await cli_grants.grants_command(args, config)
    if args.command == "login-link":
        return await _login_link(config, args.person, args.ttl, as_json=args.json)
    return await _audit_verify(config)


def _teams_manifest(config: LoadedConfig, output: str) -> int:
    teams = config.settings.platforms.teams
    if teams is None:
        raise UsageError(f"{config.source}: platforms.teams is not configured")
    from adapters.teams.manifest import app_package

    package = app_package(
        app_id=teams.app_id,
        public_url=config.settings.server.public_url,
        version=signoff_version(),
    )
    try:
        Path(output).write_bytes(package)
    except OSError as exc:
        raise UsageError(f"{output}: cannot write: {exc.strerror}") from exc
    print(f"wrote {output}: upload it in Teams (Apps, Manage your apps, Upload an app)")
    return EXIT_OK


def _client_command(args: argparse.Namespace) -> int:
    timeout = cli_client.parse_timeout(args.timeout)
    if args.command == "run":
        return cli_client.run_command(
            args.argv,
            action=args.action,
            title=args.title,
            details=args.details,
            requested_by=args.requested_by,
            timeout_seconds=timeout,
        )
    spec = cli_client.RequestSpec(
        action=args.action,
        title=args.title,
        details=args.details,
        params=cli_client.parse_params(args.param, args.param_json),
        requested_by=args.requested_by,
        timeout_seconds=timeout,
    )
    return cli_client.request_command(
        spec, wait=args.wait, as_json=args.json, idempotency_key=args.idempotency_key
    )


def main() -> None:
    """The executable's entry before :mod:`bot.entry` (an install made then still calls
    it): the same as ``signoff``."""
    from bot.entry import main as signoff

    signoff()
