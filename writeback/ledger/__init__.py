"""The ledger: the durable writeback list (SQLite by default, PostgreSQL in production)."""

from writeback.ledger.store import Ledger, NewWriteback, RowResult, SubscriberChange

__all__ = ["Ledger", "NewWriteback", "RowResult", "SubscriberChange"]
