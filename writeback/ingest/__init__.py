"""Ingest: consumed records are decoded, routed to their connections and stored as pending
writebacks in their windows; offsets are committed once the rows are durable."""
