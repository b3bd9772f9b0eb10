"""The ``signoff`` command line: serve, config check, db upgrade, audit verify and export.

Exit codes: 0 success, 1 a check found a problem (a broken audit chain), 2 usage or config
error. Every command that reads config takes ``--config F`` (default: ``$SIGNOFF_CONFIG``,
else the built-in default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from approvals.store import SqlStore
from bot.app import build_runtime
from config import ConfigError, LoadedConfig, default_config, load_config

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
    platforms = sorted(settings.platforms.chat_platforms) or ["web inbox only"]
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


async def _serve(config: LoadedConfig) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runtime = build_runtime(config)
    print(
        f"signoff: config {config.source}, database "
        f"{_safe_url(config.settings.database.url)}; stop with Ctrl-C",
        flush=True,
    )
    await runtime.run_until_signalled()
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

    db_cmd = commands.add_parser("db", help="database maintenance")
    db_sub = db_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    with_config(db_sub.add_parser("upgrade", help="apply database migrations"))

    audit_cmd = commands.add_parser("audit", help="the hash-chained audit log")
    audit_sub = audit_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    with_config(audit_sub.add_parser("verify", help="find the first tampered entry (exit 1)"))
    export = with_config(audit_sub.add_parser("export", help="write entries as JSON lines"))
    export.add_argument("--output", "-o", metavar="F", help="file to write (default: stdout)")
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "config":
            return _config_check(args)
        config = _load(args.config)
        if args.command == "serve":
            return asyncio.run(_serve(config))
        if args.command == "db":
            return asyncio.run(_db_upgrade(config))
        if args.action == "verify":
            return asyncio.run(_audit_verify(config))
        if args.output:
            with open(args.output, "w", encoding="utf-8") as out:
                return asyncio.run(_audit_export(config, out))
        return asyncio.run(_audit_export(config, sys.stdout))
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_USAGE


def main() -> None:
    sys.exit(run())
