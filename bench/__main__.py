"""`python -m bench [NAME [ARGS...]]`: run one benchmark, or all of them (no NAME).

A benchmark is any module `bench/<name>.py` (name not starting with `_`) with `main(argv)`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = str(Path(__file__).resolve().parent)
    return sorted(
        m.name
        for m in pkgutil.iter_modules([here])
        if not m.name.startswith("_") and not m.ispkg
    )


def run(name: str, argv: list[str]) -> int:
    module = importlib.import_module(f"bench.{name}")
    return int(module.main(argv) or 0)


def main(argv: list[str]) -> int:
    names = available()
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("benchmarks: " + ", ".join(names))
        return 0
    if not argv:
        return max((run(name, []) for name in names), default=0)
    if argv[0] not in names:
        print(f"unknown benchmark {argv[0]!r}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    return run(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
