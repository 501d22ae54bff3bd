"""Protocol-faithful CRM simulators that run as real servers on loopback, for tests and local runs."""
