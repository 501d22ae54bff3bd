"""writeback: keeps CRMs in step with an email-marketing platform, from Kafka events."""

__version__ = "0.1.0"
