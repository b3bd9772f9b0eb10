"""``signoff receipt-keys`` and ``signoff agents webhook-secret``: the keys agents verify with.

Receipt keys sign the receipts of final requests (Ed25519); agents fetch the public halves from
``GET /v1/receipt-keys``. Rotating adds a new signing key and keeps the old ones verifying
until they are removed. Webhook secrets sign callbacks (HMAC-SHA256), one per agent; after a
rotation the previous secret keeps signing alongside the new one for a day.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime

from approvals.access import WEBHOOK_ROTATION_GRACE, AccessStore
from approvals.clock import SystemClock
from approvals.receipts import ReceiptKey, ReceiptSigner
from approvals.store import SqlStore
from config import LoadedConfig, format_duration

EXIT_OK = 0
EXIT_NOT_FOUND = 1


def add_receipt_keys_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    keys_cmd = commands.add_parser("receipt-keys", help="keys that sign approval receipts")
    keys_sub = keys_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = with_config(keys_sub.add_parser("list", help="list the published keys"))
    listing.add_argument("--json", action="store_true", help="print JSON")
    rotate = with_config(
        keys_sub.add_parser("rotate", help="add a new signing key (old keys keep verifying)")
    )
    rotate.add_argument("--json", action="store_true", help="print the new key as JSON")
    remove = with_config(
        keys_sub.add_parser("remove", help="stop publishing a key: its receipts stop verifying")
    )
    remove.add_argument("key_id", metavar="KEY_ID")


def add_webhook_secret_parser(
    agents_sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    secret = with_config(
        agents_sub.add_parser(
            "webhook-secret", help="print (or --rotate) the secret that signs NAME's webhooks"
        )
    )
    secret.add_argument("name", metavar="NAME", help="an agent configured under agents:")
    secret.add_argument(
        "--rotate",
        action="store_true",
        help="make a new secret (the old one also signs for "
        f"{format_duration(WEBHOOK_ROTATION_GRACE)})",
    )
    secret.add_argument("--json", action="store_true", help='print {"agent", "secret"} as JSON')


async def receipt_keys_command(args: argparse.Namespace, config: LoadedConfig) -> int:
    store = SqlStore(config.settings.database.url)
    try:
        await store.migrate()
        signer = ReceiptSigner(store, SystemClock())
        if args.action == "rotate":
            key = await signer.rotate()
            if args.json:
                print(json.dumps(key.to_json()))
            else:
                print(f"new signing key {key.key_id}; older keys keep verifying until removed")
            return EXIT_OK
        if args.action == "remove":
            if not await signer.remove(args.key_id):
                known = ", ".join(key.key_id for key in await signer.keys())
                print(f"no receipt key {args.key_id!r} (keys: {known or 'none'})")
                return EXIT_NOT_FOUND
            print(f"removed receipt key {args.key_id}: receipts it signed no longer verify")
            return EXIT_OK
        keys = await signer.keys()
    finally:
        await store.close()
    if args.json:
        print(json.dumps({"keys": [key.to_json() for key in keys]}, indent=2))
    else:
        _print_keys(keys)
    return EXIT_OK


def _print_keys(keys: list[ReceiptKey]) -> None:
    # Plain columns: key ids and public keys are copied from here, so never truncated.
    print(f"{'KEY ID':<16}  {'CREATED':<19}  {'SIGNS':<5}  PUBLIC KEY (base64url)")
    for key in keys:
        public = key.to_json()["public_key"]
        signs = "yes" if key.active else "no"
        print(f"{key.key_id:<16}  {_local(key.created_at):<19}  {signs:<5}  {public}")
    print("Keys marked SIGNS no still verify the receipts they signed until removed.")


async def webhook_secret_command(
    access: AccessStore, name: str, *, rotate: bool, as_json: bool
) -> int:
    if rotate:
        secret = await access.rotate_webhook_secret(name)
    else:
        secret = await access.webhook_secret(name)
    if as_json:
        print(json.dumps({"agent": name, "secret": secret}))
        return EXIT_OK
    print(f"webhook secret for agent {name}:\n\n  {secret}\n")
    if rotate:
        print(
            "The previous secret also signs webhooks for the next "
            f"{format_duration(WEBHOOK_ROTATION_GRACE)}; switch the receiver before then."
        )
    return EXIT_OK


def _local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
