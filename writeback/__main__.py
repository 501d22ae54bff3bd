"""`python -m writeback ...`, the same as the `writeback` command (where no script is on PATH)."""

from writeback.cli import app

if __name__ == "__main__":  # importing the module (a probe of every module, say) runs nothing
    app(prog_name="writeback")
