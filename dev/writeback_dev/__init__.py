"""Development tools for writeback: CRM simulators, the local stack, the `make run` demo and sample
events. A distribution of its own (dev/pyproject.toml): the runtime package never imports it and
its wheel never contains it."""
