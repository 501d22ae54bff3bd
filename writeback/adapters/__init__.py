"""CRM adapters: one package per connection kind, all with the same shape (see `base.py`), and
`registry.py`, the one list of kinds. Nothing outside a kind's package knows its CRM's names or
error codes."""
