"""A plain Python agent that drops old tables, each only once a person approves it.

Run it from the checkout, with signoff started by ``make run`` in another terminal and the
two ``export`` lines its first start printed pasted into this shell (examples/README.md)::

    .venv/bin/python examples/agent_decorator.py events_2019 events_2020

``.venv/bin/python`` is the checkout's environment, where ``make run`` installed signoff and
its client, ``signoff_client``. Each call of ``drop_table`` asks for approval of its exact
arguments and blocks until a person decides in the web inbox (or Slack, Telegram, Discord).
The body runs only when the call was approved and the signed receipt matches the arguments;
otherwise it raises and nothing is dropped. The exit code is 1 when any table was refused.
"""

from __future__ import annotations

import sys

from signoff_client import NotApproved, ReceiptError, require_approval


@require_approval(
    action="db.drop_table",
    title=lambda params: f"Drop table {params['database']}.{params['table']}",
    details="Old event tables, archived to cold storage last month.",
)
def drop_table(table: str, database: str = "analytics") -> None:
    # The real work would go here; this example only says what it would do.
    print(f"dropped {database}.{table}", flush=True)


def main(tables: list[str]) -> int:
    refused = 0
    for table in tables:
        try:
            drop_table(table)
        except NotApproved as exc:  # Denied, Expired or Cancelled
            print(f"not dropping {table}: {exc}", flush=True)
            refused += 1
        except ReceiptError as exc:
            print(f"not dropping {table}: {exc}", flush=True)
            refused += 1
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["events_2019"]))
