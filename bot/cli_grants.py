"""``signoff grants list|revoke``: the time-boxed grants approvers gave, and ending one.

A grant approves an agent's same requests at once until it ends (:mod:`approvals.grants`).
These commands work on the database the config names, like the other admin commands: a
revoke takes effect at once in every process sharing it, since each use of a grant reads
it there. Revoking is audited with who ran it (``--by``, else the local user).
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable
from datetime import datetime

from approvals.clock import SystemClock
from approvals.grants import Grant, GrantRevoked, matched_text
from approvals.outcomes import NotFound
from approvals.service import ApprovalService
from approvals.store import SqlStore
from bot.app import rules_from
from config import LoadedConfig, format_duration

EXIT_OK = 0
EXIT_NOT_FOUND = 1


def add_grants_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    grants_cmd = commands.add_parser("grants", help="time-boxed grants approvers gave")
    grants_sub = grants_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = with_config(grants_sub.add_parser("list", help="list the live grants"))
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = with_config(
        grants_sub.add_parser("revoke", help="end a grant at once (exit 1 if unknown)")
    )
    revoke.add_argument("grant_id", metavar="GRANT_ID", help="as `signoff grants list` shows it")
    revoke.add_argument("--reason", help="why, for the audit log")
    revoke.add_argument("--by", help="who revokes, for the audit log (default: the local user)")
    revoke.add_argument("--json", action="store_true", help="print the ended grant as JSON")


async def grants_command(args: argparse.Namespace, config: LoadedConfig) -> int:
    store = SqlStore(config.settings.database.url)
    try:
        await store.migrate()
        service = ApprovalService(store, rules_from(config), SystemClock())
        if args.action == "list":
            return _print_grants(await service.live_grants(), service, as_json=args.json)
        by = args.by or f"cli:{getpass.getuser()}"
        outcome = await service.revoke_grant(args.grant_id, by=by, person=None, reason=args.reason)
    finally:
        await store.close()
    if isinstance(outcome, NotFound):
        print(f"no grant {args.grant_id!r} (see signoff grants list)")
        return EXIT_NOT_FOUND
    assert isinstance(outcome, GrantRevoked)
    grant = outcome.grant
    if args.json:
        print(json.dumps(grant.to_json(), indent=2, ensure_ascii=False))
    elif outcome.already_ended:
        ended = grant.revoked_at or grant.expires_at
        print(f"grant {grant.id} had already ended at {_local(ended)}; nothing changed")
    else:
        print(f"revoked grant {grant.id}: {grant.agent}'s {grant.action} is asked again")
    return EXIT_OK


def _print_grants(grants: list[Grant], service: ApprovalService, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"grants": [g.to_json() for g in grants]}, indent=2, ensure_ascii=False))
        return EXIT_OK
    if not grants:
        print("no live grants")
        return EXIT_OK
    now = service.clock.now()
    # Plain columns: grant ids are copied from here, so never truncated.
    for grant in grants:
        left = format_duration(grant.expires_at - now) if grant.expires_at > now else "0s"
        print(
            f"{grant.id}  policy {grant.policy}: {grant.agent} may {grant.action} with "
            f"{matched_text(grant)}; given by {', '.join(grant.given_by)} at "
            f"{_local(grant.given_at)}, ends {_local(grant.expires_at)} (in {left})"
        )
    return EXIT_OK


def _local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
