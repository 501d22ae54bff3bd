"""`python -m writeback ...`, the same as the `writeback` command (where no script is on PATH)."""

from writeback.cli import app

app(prog_name="writeback")
