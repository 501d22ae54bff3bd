"""A thin layer over confluent-kafka: the idempotent producer, consumer positions (commit after
durable, rewind), dead-letter records and consumer lag. Used by ingest, flush and replay."""
