"""The one error the local stack raises on purpose.

It lives here, not in `writeback.errors`, because the stack is a development tool: the runtime
never starts a broker or a database, so its error set has no use for this one.
"""

from __future__ import annotations

from writeback.errors import WritebackError


class StackError(WritebackError):
    """The local development/test stack (Kafka, registry, PostgreSQL) could not start."""
