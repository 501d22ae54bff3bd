"""The ledger: the durable writeback list (SQLite by default, PostgreSQL in production)."""

from writeback.ledger.store import (
    Inserted,
    Ledger,
    NewWriteback,
    RowResult,
    StateChange,
)

__all__ = ["Inserted", "Ledger", "NewWriteback", "RowResult", "StateChange"]
