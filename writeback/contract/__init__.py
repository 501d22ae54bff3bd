"""The event contract: models mirroring schemas/, topics, Schema Registry framing and subjects,
seed 001's taxonomy, and reading events from files for `writeback publish`."""
