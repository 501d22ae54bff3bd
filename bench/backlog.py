"""The ledger's insert as a backlog piles up: cost per row by how full the SQLite ledger already is.

    python -m bench backlog [--rows N] [--slices S] [--batch-size B] [--repeats R] [--output FILE]

`bench ingest` reads a backlog whose events cycle through a handful of sample recipients, so the
ledger's waiting-rows index, ordered by (connection, recipient, instant), only ever grows at a few
places. A real backlog has as many recipients as events: every row lands at a random place of that
index and of the unique key's, each batch dirties about a page of each per row, and the insert
slows as the ledger fills (the issue-17 notes: 35 µs a row over the first 60,000 rows, 75 µs past
180,000). This benchmark measures exactly that, without Kafka.

N rows (default 240,000), one per event, each event with its own recipient, are fanned out once
to one tracking connection per account, as ingest makes them (`fan_out`); then `Ledger.insert`
stores them in batches of B (the service's `ingest_batch_size`, 2,000) into a fresh SQLite file,
timed per slice of N/S rows. Variants, in an order that rotates every repeat:

(a) baseline: the same ledger with SQLite's default page cache (2 MB) and WAL checkpoint (every
    1,000 pages), the settings it ran with before;
(b) the ledger as it connects (`writeback.ledger.store.create_engine`);
(c) (b) in batches of 5 x B: what a larger `ingest_batch_size` buys once the ledger is large.

Every run must store exactly N rows. Results go to bench/results/backlog.md (or --output): the
median µs per row of each slice, and each slice's ratio to (a)'s same slice.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import command, log, machine, rotated, utc_now, write_result
from bench.ingest import make_events, tracking_settings

LABELS = {
    "a": "(a) SQLite's default page cache and checkpoint",
    "b": "(b) the ledger's settings",
    "c": "(c) the ledger's settings, 5x the batch",
}
_RECIPIENTS = uuid.UUID("2d5c7a9e-1f3b-4c6d-8e0a-b1c2d3e4f5a6")


def batches_of_rows(count: int) -> list[Any]:
    """The rows ingest makes for `count` events, each with a recipient of its own."""
    from writeback.ingest.consume import Consumed, fan_out
    from writeback.ingest.incoming import from_event
    from writeback.ingest.routing import Routes
    from writeback.ingest.windows import Windows
    from writeback.settings import parse_settings

    settings = parse_settings(tracking_settings())
    accounts = {a.id: a for a in settings.accounts}
    now = datetime.now(UTC)
    rows: list[Any] = []
    routes, windows = Routes(), Windows()
    for i, event in enumerate(make_events(count)):
        person = uuid.uuid5(_RECIPIENTS, str(i)).hex
        recipient = event.recipient.model_copy(update={"email": f"r{person[:12]}@example.org", "integration_id": person})
        found = from_event(Consumed(event.topic, 0, i, None, None), event.model_copy(update={"recipient": recipient}))
        rows += fan_out([found], accounts, {}, windows, now, routes).rows
    return rows


def sqlite_defaults(engine: Any) -> None:
    """Every new connection of `engine` back to SQLite's own page cache and checkpoint sizes."""
    import sqlalchemy as sa

    @sa.event.listens_for(engine, "connect")
    def _defaults(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA cache_size=-2000")
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=1000")

    engine.dispose()  # connections made while migrating had the ledger's settings


def run(variant: str, rows: list[Any], batch: int, slices: int, workdir: Path) -> list[float]:
    """Seconds per slice for one fresh ledger."""
    from writeback.ledger import Ledger
    from writeback.settings import apply, parse_settings

    ledger = Ledger.connect(f"sqlite:///{workdir / f'{variant}-{uuid.uuid4().hex[:8]}.db'}")
    now = datetime.now(UTC)
    apply(ledger, parse_settings(tracking_settings()), now)
    if variant == "a":
        sqlite_defaults(ledger.engine)
    size = len(rows) // slices
    seconds, added = [], 0
    try:
        for s in range(slices):
            chunk = rows[s * size : (s + 1) * size]
            started = time.perf_counter()
            for start in range(0, len(chunk), batch):
                added += ledger.insert(chunk[start : start + batch], now=now).added
            seconds.append(time.perf_counter() - started)
        stored = ledger.counts()
    finally:
        ledger.close()
    if added != size * slices or sum(stored.values()) != added:
        raise RuntimeError(f"backlog ({variant}): {added} added, {sum(stored.values())} stored, expected {size * slices}")
    return seconds


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench backlog", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=240_000, help="rows inserted per run [240,000]")
    parser.add_argument("--slices", type=int, default=4, help="timed slices per run [4]")
    parser.add_argument("--batch-size", type=int, default=2000, help="rows per Ledger.insert [2000, the service default]")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant [3]")
    parser.add_argument("--output", type=Path, help="results file [bench/results/backlog.md]")
    args = parser.parse_args(argv)
    if min(args.rows, args.slices, args.batch_size, args.repeats) < 1 or args.rows < args.slices:
        parser.error("--rows, --slices, --batch-size and --repeats must be positive, and --rows at least --slices")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    log(f"bench backlog: {args.rows:,} rows in {args.slices} slices, batches of {args.batch_size:,}, {args.repeats} repeats")
    log("building the rows (not timed) ...")
    rows = batches_of_rows(args.rows)
    batches = {"a": args.batch_size, "b": args.batch_size, "c": 5 * args.batch_size}
    timings: dict[str, list[list[float]]] = {key: [] for key in LABELS}
    workdir = Path(tempfile.mkdtemp(prefix="bench-backlog-"))
    try:
        for repeat in range(args.repeats):
            for key in rotated(list(LABELS), repeat):
                seconds = run(key, rows, batches[key], args.slices, workdir)
                timings[key].append(seconds)
                log(f"  repeat {repeat + 1}/{args.repeats} {key}: " + " ".join(f"{s:.2f}" for s in seconds) + " s per slice")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    markdown = report(args, argv, timings, len(rows) // args.slices)
    print(markdown)
    log(f"written to {write_result('backlog', markdown, args.output)}")
    return 0


def report(args: argparse.Namespace, argv: list[str], timings: dict[str, list[list[float]]], size: int) -> str:
    medians = {
        key: [statistics.median(run[s] for run in runs) / size * 1e6 for s in range(args.slices)]
        for key, runs in timings.items()
    }
    spans = [f"{s * size:,}–{(s + 1) * size:,}" for s in range(args.slices)]
    lines = [
        "# The ledger's insert as a backlog piles up (SQLite)",
        "",
        f"- Date: {utc_now()}",
        f"- Machine: {machine()}",
        f"- N = {size * args.slices:,} rows, one per event, every event with a recipient of its own, fanned out as "
        f"ingest does; `Ledger.insert` in batches of {args.batch_size:,} ((c): {5 * args.batch_size:,}) into a fresh "
        f"SQLite file per run, timed per slice of {size:,} rows; R = {args.repeats} (median per slice, variants in "
        "rotating order)",
        f"- Reproduce: `{command('backlog', argv)}`",
        "",
        "µs per row inserted, by how many rows the ledger already held:",
        "",
        "| variant | " + " | ".join(f"rows {span}" for span in spans) + " | last / first slice |",
        "|---|" + "---:|" * (args.slices + 1),
    ]
    for key, label in LABELS.items():
        row = medians[key]
        lines.append(f"| {label} | " + " | ".join(f"{v:.1f}" for v in row) + f" | {row[-1] / row[0]:.2f} |")
    for key in ("b", "c"):
        ratios = [a / v for a, v in zip(medians["a"], medians[key], strict=True)]
        lines.append(f"| {key} speed-up over (a) | " + " | ".join(f"{r:.2f} x" for r in ratios) + " | |")
    lines += [
        "",
        "Every run stored exactly N rows. (a) is the ledger with SQLite's defaults put back on every connection",
        "(`PRAGMA cache_size=-2000`, `wal_autocheckpoint=1000`); (b) and (c) are the ledger as the service",
        "connects it. Each row takes a random place in the unique key's index and in the waiting-rows index, so",
        "a batch's commit writes about a page of each per row to the WAL, and the default checkpoint copies them",
        "into the database file (with an fsync) after nearly every batch. A larger page cache and checkpoint",
        "interval let pages hit by several batches be written once; a larger batch spreads a commit's pages",
        "over more rows.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
