"""Benchmarks: `python -m bench [NAME] [ARGS...]` (see bench/README.md).

Each benchmark is a module `bench/<name>.py` with a `main(argv) -> int`; `python -m bench` finds
them by name, so adding one needs no registration. This module holds what they share: the
local stack they run against, timing helpers and the results file format. Figures are reported
as ratios to a baseline measured in the same run, because a shared 2-core machine is noisy.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Measurement:
    """Repeated timings of one variant; `events` is the work done per run."""

    label: str
    events: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        """Events per second at the median run time."""
        return self.events / self.median

    def spread(self) -> str:
        """Slowest and fastest run as events/s, so readers see how noisy the median is."""
        rates = sorted(self.events / s for s in self.seconds)
        return f"{rates[0]:,.0f} – {rates[-1]:,.0f}"


def timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


@contextmanager
def frozen_heap() -> Iterator[None]:
    """The collector's view of the heap as `serve` has it once its wiring is built (`gc.freeze()`):
    without it, a full collection over the imported libraries (about 50 ms here) lands inside
    whichever timed run triggers it. Undone afterwards, so runs do not accumulate frozen objects."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def rotated(items: Sequence[str], shift: int) -> list[str]:
    """The variants in a different order each repeat, so slow drift (page cache, JIT warm-up of
    the broker, other jobs on the machine) does not always hit the same variant."""
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def machine() -> str:
    import confluent_kafka

    client = confluent_kafka.version()  # a str in some releases, (str, int) in others
    client = client[0] if isinstance(client, tuple) else client
    return (
        f"{os.cpu_count()} CPUs (nproc), {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, confluent-kafka {client} "
        f"(librdkafka {confluent_kafka.libversion()[0]})"
    )


def command(name: str, argv: Sequence[str]) -> str:
    return " ".join(["python -m bench", name, *argv])


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def write_result(name: str, markdown: str, output: Path | None = None) -> Path:
    path = output or RESULTS_DIR / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown, encoding="utf-8")
    return path


def log(message: str) -> None:
    """Progress on stderr; stdout carries only the result table."""
    print(message, file=sys.stderr, flush=True)
