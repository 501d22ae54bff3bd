"""What platform teams use to publish events: a typed publisher and the `publish` command."""

from writeback.producers.publisher import Publisher

__all__ = ["Publisher"]
