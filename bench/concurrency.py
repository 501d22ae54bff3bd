"""Concurrent flushing: many connections' due rows into the Salesforce simulator, flushed by
`flush_concurrency` threads, as a ratio to one connection at a time in the same run.

    python -m bench concurrency [--connections C] [--records N] [--levels 1,4,8] [--repeats R]

Each run fills a fresh SQLite ledger with N due Sent writebacks for each of C Salesforce
connections (one account; the connections share one simulator org and its N contacts, one row
per contact per connection) and times one `Flusher.flush_due` pass with `concurrency` = each level,
until every row is recorded. Levels run in an order that rotates every repeat. The simulator runs in
a process of its own (`bench.flush.SimHost`), reset and seeded before every run; every connection's
adapter is opened and warmed (token) before the clock starts, as a running service keeps them.
Checked after every run: every row completed, none failed, and the simulator holds exactly C x N
Tasks more than before the clock, with no error status.
Results go to bench/results/concurrency.md (or --output) and stdout.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from bench import (
    Measurement,
    command,
    frozen_heap,
    log,
    machine,
    rotated,
    timed,
    utc_now,
    write_result,
)
from bench.flush import (
    ACCOUNT,
    SF_SECRET_ENV,
    ZONE,
    NoDeadLetters,
    event_for,
    rows_for,
    simulators,
    warm_up,
)


def settings_for(endpoints: dict[str, str], connections: int) -> Any:
    from writeback.settings import parse_settings

    crm = {"login_url": endpoints["login_url"], "client_id": endpoints["client_id"], "client_secret": {"env": SF_SECRET_ENV}}
    return parse_settings(
        {
            "accounts": [
                {
                    "id": ACCOUNT,
                    "time_zone": ZONE,
                    "connections": [
                        {"id": f"bench-sf-{i:02d}", "kind": "salesforce", "writebacks": {"mailing_activity": ["sent"]}, "crm": crm}
                        for i in range(connections)
                    ],
                }
            ]
        }
    )


def run_once(host: Any, settings: Any, events: list[Any], level: int, workdir: Path, name: str) -> tuple[float, float, float, int]:
    """Seconds, flusher and simulator CPU seconds of one pass over every connection's rows; the CRM calls made."""
    from writeback.flush.flusher import Flusher, open_adapter
    from writeback.ledger import Ledger
    from writeback.settings import apply

    keys = host.seed("salesforce", len(events) + 1)
    account = settings.accounts[0]
    adapters = {}
    for connection in account.connections:
        adapter = open_adapter(account, connection)
        assert adapter is not None
        warm_up(adapter, connection.id, event_for("mailing activity", keys[-1], len(events), f"{name}:warm-up"))
        adapters[connection.id] = adapter
    ledger = Ledger.connect(f"sqlite:///{workdir / f'{name}.db'}")
    try:
        apply(ledger, settings, datetime.now(UTC))
        due = datetime.now(UTC) - timedelta(seconds=1)
        for connection in account.connections:
            ledger.insert(rows_for(events, connection.id, due), now=datetime.now(UTC))
        flusher = Flusher(
            ledger,
            lambda: settings,
            lambda _a, c: adapters[c.id],
            cast(Any, NoDeadLetters()),
            cast(Any, None),
            lease_ttl=timedelta(minutes=10),
            concurrency=level,
        )
        before = host.holds("salesforce")
        with frozen_heap():
            cpu, sim = time.process_time(), host.cpu()
            seconds = timed(flusher.flush_due)
            cpu, sim = time.process_time() - cpu, host.cpu() - sim
        expected = len(events) * len(account.connections)
        counts = ledger.counts()
        assert sum(counts.values()) == expected and all(s == "completed" for _, s in counts), counts
        after = host.holds("salesforce")
        assert after["records"] - before["records"] == expected, (before, after)
        assert after["faults"] == 0, after
        return seconds, cpu, sim, after["calls"] - before["calls"]
    finally:
        for adapter in adapters.values():
            adapter.close()
        ledger.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench concurrency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--records", type=int, default=5000, help="due rows per connection, one per contact")
    parser.add_argument("--levels", default="1,4,8", help="flush_concurrency values; the first is the baseline")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    total = args.connections * args.records
    results = {level: Measurement(f"flush_concurrency {level}", total) for level in levels}
    cpu: dict[int, list[float]] = {level: [] for level in levels}
    sim: dict[int, list[float]] = {level: [] for level in levels}
    calls: dict[int, int] = {}
    workdir = Path(tempfile.mkdtemp(prefix="bench-concurrency-"))
    try:
        with simulators() as (host, endpoints):
            settings = settings_for(endpoints, args.connections)
            keys = host.seed("salesforce", args.records + 1)  # a fresh org hands out the same ids each seed
            events = [event_for("mailing activity", key, i, "concurrency") for i, key in enumerate(keys[: args.records])]
            for repeat in range(args.repeats):
                for level in rotated([str(x) for x in levels], repeat):
                    name = f"r{repeat}-c{level}"
                    seconds, used, crm, calls[int(level)] = run_once(host, settings, events, int(level), workdir, name)
                    results[int(level)].seconds.append(seconds)
                    cpu[int(level)].append(used / total * 1e6)
                    sim[int(level)].append(crm / seconds)
                    log(f"{name}: {total / seconds:,.0f} records/s ({seconds:.1f} s)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    markdown = report(args, argv, levels, results, cpu, sim, calls)
    path = write_result("concurrency", markdown, args.output)
    print(markdown)
    log(f"written to {path}")
    return 0


def report(args: argparse.Namespace, argv: list[str], levels: list[int], results: dict, cpu: dict, sim: dict, calls: dict) -> str:
    base = results[levels[0]].rate
    lines = [
        "# Concurrent flushing: many connections into the Salesforce simulator",
        "",
        f"- Date: {utc_now()}",
        f"- Machine: {machine()}",
        (
            f"- C = {args.connections} Salesforce connections x N = {args.records:,} due Sent writebacks each "
            f"({args.connections * args.records:,} rows), one `Flusher.flush_due` pass from a fresh SQLite ledger per run; "
            f"R = {args.repeats} repeats (median reported, levels in rotating order)"
        ),
        "- Simulator: the Salesforce REST simulator on loopback in a process of its own, reset and seeded before every run; "
        "every connection's adapter opened and warmed before the clock",
        f"- Reproduce: `{command('concurrency', argv)}`",
        "",
        f"| `flush_concurrency` | rows | median s | rows/s | range of runs (rows/s) | ratio to {levels[0]} | CRM calls per run | flusher CPU µs/row | simulator busy (CPU s / s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in levels:
        m = results[level]
        lines.append(
            f"| {level} | {m.events:,} | {m.median:.1f} | {m.rate:,.0f} | {m.spread()} | {m.rate / base:.2f} "
            f"| {calls[level]:,} | {statistics.median(cpu[level]):,.0f} | {statistics.median(sim[level]):.2f} |"
        )
    lines += [
        "",
        "Every run is checked: every row completed (a dead letter fails the run) and the simulator holds exactly",
        "C x N more Tasks than before the clock, with no error status. Flusher CPU is the benchmark process's",
        "CPU time over the timed pass per row (ledger, decoding, adapters, HTTP clients; not the simulator, which",
        "runs in its own process); simulator busy is the simulator process's CPU seconds per second of the pass",
        "(1.00: it had a core to itself and used all of it). The threads share one interpreter, so what concurrency",
        "can overlap is the flusher's work with the CRM's (and the database's) time, not two connections' Python work.",
        "",
    ]
    return "\n".join(lines)
