"""Flush: due rows are claimed under a connection's lease, written through its adapter, and each
outcome recorded: retries with backoff, a breaker per connection, dead letters for failures."""
