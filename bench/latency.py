"""Window-close → written latency: how long a due writeback waits before the CRM has it.

    python -m bench latency [--records N] [--spread S] [--interval I] [--repeats R]

Each run fills a fresh SQLite ledger with N Sent writebacks for one Salesforce connection whose
windows close a few seconds later, then runs the service's flush loop (`writeback.flush.flusher.run`,
one pass every `flush_interval_s` = I) in a thread until every row is recorded. A row's latency is
its `completed_at` (the flusher's clock when the CRM call that carried it returned) minus its
`window_closes_at`. Two workloads:

- burst: all N windows close at the same instant (a large send's window closing; p99 is the drain time);
- steady: the N windows close evenly over S seconds.

and two variants, in an order that rotates every repeat:

(a) baseline: the same loop with an adapter that completes every writeback without a call
    (the poll interval, claiming and recording: the floor for any CRM);
(b) Salesforce: the Salesforce adapter into the Salesforce simulator (`bench.flush.SimHost`,
    a process of its own, reset and seeded before every run; adapter warmed before the clock).

Checked after every run: every row completed, and for (b) the simulator holds exactly N Tasks more
than before, with no error status. Results go to bench/results/latency.md (or --output) and stdout.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from bench import command, log, machine, rotated, utc_now, write_result
from bench.flush import (
    NoCallAdapter,
    NoDeadLetters,
    event_for,
    rows_for,
    settings_for,
    simulators,
    warm_up,
)

WORKLOADS = ("burst", "steady")
VARIANTS = ("baseline", "salesforce")
LABELS = {
    "baseline": "(a) baseline: the flush loop, an adapter that makes no call",
    "salesforce": "(b) Salesforce adapter into the Salesforce simulator",
}
LEAD = timedelta(seconds=3)  # the first window closes this long after the rows are written


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_once(host: Any, endpoints: dict[str, str], variant: str, workload: str, args: argparse.Namespace, workdir: Path, name: str) -> list[float]:
    """Every row's window-close → written latency in seconds."""
    import sqlalchemy as sa

    from writeback.flush import flusher as flushing
    from writeback.flush.flusher import Flusher, open_adapter
    from writeback.ledger import Ledger
    from writeback.ledger.tables import writebacks
    from writeback.settings import apply

    keys = host.seed("salesforce", args.records + 1)
    settings = settings_for("salesforce", endpoints)
    account = settings.accounts[0]
    connection = account.connections[0]
    adapter = NoCallAdapter() if variant == "baseline" else open_adapter(account, connection)
    assert adapter is not None
    if variant == "salesforce":
        warm_up(adapter, connection.id, event_for("mailing activity", keys[-1], args.records, f"{name}:warm-up"))
    events = [event_for("mailing activity", key, i, name) for i, key in enumerate(keys[: args.records])]
    ledger = Ledger.connect(f"sqlite:///{workdir / f'{name}.db'}")
    stop = threading.Event()
    try:
        apply(ledger, settings, datetime.now(UTC))
        first = datetime.now(UTC) + LEAD
        step = timedelta(seconds=args.spread / args.records) if workload == "steady" else timedelta(0)
        rows = rows_for(events, connection.id, first)
        for i, row in enumerate(rows):
            row.window_closes_at = first + i * step
        ledger.insert(rows, now=datetime.now(UTC))
        before = host.holds("salesforce")
        flusher = Flusher(
            ledger, lambda: settings, lambda _a, _c: adapter, cast(Any, NoDeadLetters()), cast(Any, None), lease_ttl=timedelta(minutes=10)
        )
        loop = threading.Thread(target=flushing.run, args=(flusher, stop), kwargs={"interval": args.interval}, name="flush")
        loop.start()
        deadline = time.monotonic() + LEAD.total_seconds() + args.spread + 600
        while ledger.counts().get((connection.id, "completed"), 0) < args.records:
            assert time.monotonic() < deadline, f"{name}: not every row written: {ledger.counts()}"
            time.sleep(0.2)
        stop.set()
        loop.join()
        with ledger.engine.connect() as conn:
            pairs = conn.execute(sa.select(writebacks.c.window_closes_at, writebacks.c.completed_at)).all()
        assert len(pairs) == args.records and all(done is not None for _, done in pairs)
        if variant == "salesforce":
            after = host.holds("salesforce")
            assert after["records"] - before["records"] == args.records and after["faults"] == 0, (before, after)
        return [(done - closes).total_seconds() for closes, done in pairs]
    finally:
        stop.set()
        adapter.close()
        ledger.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--spread", type=float, default=10.0, help="seconds over which the steady workload's windows close")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between flush passes (flush_interval_s)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    runs: dict[tuple[str, str], list[list[float]]] = {(w, v): [] for w in WORKLOADS for v in VARIANTS}
    workdir = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    try:
        with simulators() as (host, endpoints):
            for repeat in range(args.repeats):
                for workload in WORKLOADS:
                    for variant in rotated(VARIANTS, repeat):
                        name = f"r{repeat}-{workload}-{variant}"
                        latencies = run_once(host, endpoints, variant, workload, args, workdir, name)
                        runs[(workload, variant)].append(latencies)
                        log(f"{name}: p50 {percentile(latencies, 0.5):.2f} s, p99 {percentile(latencies, 0.99):.2f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    markdown = report(args, argv, runs)
    path = write_result("latency", markdown, args.output)
    print(markdown)
    log(f"written to {path}")
    return 0


def _summary(runs: list[list[float]], q: float) -> tuple[float, str]:
    values = [percentile(r, q) for r in runs]
    return statistics.median(values), f"{min(values):.2f} – {max(values):.2f}"


def report(args: argparse.Namespace, argv: list[str], runs: dict[tuple[str, str], list[list[float]]]) -> str:
    lines = [
        "# Window-close → written latency into the Salesforce simulator",
        "",
        f"- Date: {utc_now()}",
        f"- Machine: {machine()}",
        (
            f"- N = {args.records:,} Sent writebacks per run for one Salesforce connection, fresh SQLite ledger; "
            f"the service's flush loop, one pass every {args.interval:g} s; burst: every window closes at once; "
            f"steady: windows close evenly over {args.spread:g} s; R = {args.repeats} repeats "
            "(median of the runs' percentiles, range in the next column, variants in rotating order)"
        ),
        f"- Reproduce: `{command('latency', argv)}`",
        "",
        "| workload | variant | p50 s | p50 range | p99 s | p99 range | max s (median run) | p99 / (a)'s p99 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for workload in WORKLOADS:
        base = _summary(runs[(workload, "baseline")], 0.99)[0]
        for variant in VARIANTS:
            p50, p50_range = _summary(runs[(workload, variant)], 0.5)
            p99, p99_range = _summary(runs[(workload, variant)], 0.99)
            peak = statistics.median(max(r) for r in runs[(workload, variant)])
            lines.append(
                f"| {workload} | {LABELS[variant]} | {p50:.2f} | {p50_range} | {p99:.2f} | {p99_range} | {peak:.2f} | {p99 / base:.2f} |"
            )
    lines += [
        "",
        "A row's latency is its `completed_at` (the flusher's clock once the CRM call carrying it returned) minus",
        "its `window_closes_at`; both are the ledger's own columns, read after the run. Every run is checked: every",
        "row completed (a dead letter fails the run) and, for (b), the simulator holds exactly N more Tasks, no error",
        "status. A pass claims batch after batch until nothing is due, then the loop sleeps one interval: a row",
        "whose window closes while the loop sleeps waits up to that interval, one that closes while a pass is busy",
        "(as (b)'s CRM calls keep it) is claimed by that pass. In the burst, p99 is how long the backlog takes to drain.",
        "",
    ]
    return "\n".join(lines)
