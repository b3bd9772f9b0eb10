"""The store: the only code that speaks SQL.

- :mod:`~approvals.store.database`: :class:`SqlStore`, SQLite or PostgreSQL, its reads and
  its one writer;
- :mod:`~approvals.store.writer`: the queue that runs waiting commands in one transaction
  with one commit;
- :mod:`~approvals.store.transaction`: :class:`WriteTx`, what a command reads and writes
  through, with the audit chain's head held for the batch;
- :mod:`~approvals.store.reads`: the read-only queries;
- :mod:`~approvals.store.queries` and :mod:`~approvals.store.rows`: the statements and row
  mapping both sides share;
- :mod:`~approvals.store.credentials`, :mod:`~approvals.store.housekeeping`,
  :mod:`~approvals.store.flood_queries` and :mod:`~approvals.store.status_queries`: the
  statements of credentials and receipt keys, of retention and clock steps, of the flood
  guard and of ``signoff status``, as functions of a ``WriteTx`` or ``SyncReads``;
- :mod:`~approvals.store.backup` and :mod:`~approvals.store.copy`: ``signoff db backup``
  (SQLite's online backup) and ``signoff db copy`` (a SQLite database into PostgreSQL).

Nothing outside this package builds a statement or touches a connection
(``tests/test_layout.py`` checks).
"""

from approvals.errors import ConcurrentUpdateError, StoreBusyError
from approvals.store.database import MIGRATIONS_DIR, SqlStore, async_database_url
from approvals.store.reads import Reads, SyncReads
from approvals.store.rows import AuditVerification, DeliveryRecord, OutboxItem
from approvals.store.transaction import QueuedMessage, WriteTx
from approvals.store.writer import Command

__all__ = [
    "MIGRATIONS_DIR",
    "AuditVerification",
    "Command",
    "ConcurrentUpdateError",
    "DeliveryRecord",
    "OutboxItem",
    "QueuedMessage",
    "Reads",
    "SqlStore",
    "StoreBusyError",
    "SyncReads",
    "WriteTx",
    "async_database_url",
]
