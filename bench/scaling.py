"""Ingest scaling: does ingest go faster with more instances in one consumer group?

    python -m bench scaling [--events N] [--repeats R] [--processes K] [--batch-size B] [--partitions P]
                            [--no-postgres] [--output FILE]

Starts its own local stack (Kafka, schema registry, PostgreSQL), publishes a backlog of N events
once (the same events as `bench ingest`), then ingests that whole backlog R times per variant,
each run into a fresh ledger with a fresh consumer group, in an order that rotates every repeat:

(1) one process running `writeback.ingest.consume.run` (the service's wiring, as `bench ingest`
    (c) runs it) over every partition, into a fresh SQLite file;
(2) K processes (default 2) in one consumer group, each assigned its share of the partitions
    (round-robin), all writing to one fresh SQLite file;
(3), (4) the same two on PostgreSQL, a fresh database per run (--no-postgres skips them).

Every process, the one of (1) included so the comparison is like for like, is spawned and sets up
its ledger connection, serde, publisher and consumer before the clock starts, says it is ready and
waits for one shared "go"; the time is the wall time from "go" until the last process has stored
and committed its share (no process waits out the poll timeout for a last batch the backlog
cannot fill: see `_BacklogConsumer`). Every run is verified (one row per event, nothing rejected
or dropped, the group's offsets committed to the end). Results, with a second table of where each
process's time went, go to bench/results/scaling.md (or --output) and stdout.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import queue
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import Measurement, command, log, machine, rotated, utc_now, write_result
from bench.ingest import (
    ACCOUNTS,
    RUN_LIMIT_S,
    Stack,
    _Counting,
    _tp,
    consume_run,
    ledger_events,
    make_events,
    new_consumer,
    postgres_url,
    publish_backlog,
    service_ingest,
    sqlite_url,
    started_stack,
    tracking_settings,
)

# Spawning a worker re-imports writeback, confluent-kafka and SQLAlchemy: seconds, not minutes.
READY_LIMIT_S = 120.0
Partition = tuple[str, int]


@dataclass(frozen=True)
class Job:
    """One worker's part of a run. Picklable: spawned workers get it as their argument."""

    index: int
    stack: Stack
    url: str
    group_id: str
    partitions: tuple[Partition, ...]
    expected: int  # records on those partitions: the worker stops once it has stored them
    batch_size: int


@dataclass(frozen=True)
class Report:
    """What a worker did, counted by `_Counting` from ingest's own batch reports."""

    index: int
    consumed: int
    rows: int
    added: int
    rejected: int
    dropped: int
    retried: int  # batches ingest.run failed to store and consumed again (e.g. a locked database)
    seconds: float  # the worker's own time from "go" to its last commit, to show imbalance
    cpu: float  # the worker's CPU seconds over that time: below `seconds` when it waited
    times: dict[str, float]  # seconds inside consume, handle (of which insert) and commit


class _RetryCounter(logging.Handler):
    """Counts `ingest.run`'s "not stored, retrying" warnings: a retried batch costs a 2 s pause,
    so the report must say when contention between processes, not ingest itself, set the time."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.retried = 0

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("batch of"):
            self.retried += 1
        sys.stderr.write(f"  worker: {record.getMessage()}\n")


class _Timer:
    """Seconds spent inside wrapped calls, per name: where a worker's wall time went, so the
    report can tell the database (waiting for SQLite's write lock shows in "insert") from
    Kafka and from waiting for a core. One perf_counter pair per batch: no measurable cost."""

    def __init__(self) -> None:
        self.times: dict[str, float] = dict.fromkeys(("consume", "handle", "insert", "commit"), 0.0)

    def wrap(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.times[name] += time.perf_counter() - start

        return timed


class _BacklogConsumer:
    """The worker's consumer as `ingest.run` sees it: never asks for more records than are left
    of its share, and times `consume` and `commit`.

    `consume(n, timeout)` returns once it has n records or the timeout has passed, so the last,
    partial batch of a finite backlog would wait out the whole poll timeout (0.5 s) for records
    that never come. A service on a live topic does not pay that, and here it would land on some
    variants and not others (50,000 is a multiple of 2,000, a process's share rarely is): so the
    request is capped at what remains. Every batch is otherwise the one the service would get.
    """

    def __init__(self, consumer: Any, expected: int, timer: _Timer) -> None:
        self._consumer = consumer
        self._left = expected
        self.consume = timer.wrap("consume", self._consume)
        self.commit = timer.wrap("commit", consumer.commit)

    def _consume(self, num_messages: int, timeout: float) -> list:
        messages = self._consumer.consume(max(1, min(num_messages, self._left)), timeout=timeout)
        self._left -= sum(1 for m in messages if m.error() is None)
        return messages

    def __getattr__(self, name: str) -> Any:  # seek, for a retried batch
        return getattr(self._consumer, name)


def _worker(job: Job, go: Any, messages: Any) -> None:
    """A worker process: wire ingest as the service does, say "ready", wait for "go", ingest
    this job's partitions until their records are stored and committed, report "done".

    Any failure is sent to the parent as a traceback, so a run fails loudly, not by timing out.
    """
    try:
        retries = _RetryCounter()
        logging.getLogger("writeback.ingest").addHandler(retries)
        ingest = _WiredIngest(job)
        messages.put(("ready", job.index, None))
        if not go.wait(READY_LIMIT_S):
            raise RuntimeError("no go from the parent")
        started, cpu = time.perf_counter(), time.process_time()
        counting, timer = ingest.run()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        messages.put(
            (
                "done",
                job.index,
                Report(
                    job.index, counting.consumed, counting.rows, counting.added,
                    counting.rejected, counting.dropped, retries.retried, seconds, cpu, timer.times,
                ),
            )
        )  # fmt: skip
        ingest.close()
    except BaseException:
        messages.put(("failed", job.index, traceback.format_exc()))
        raise


class _WiredIngest:
    """Everything a worker sets up before the clock starts: the ledger (already migrated and
    holding the settings, by the parent), `Ingest` with the service's wiring, and a consumer
    assigned this job's partitions from the beginning, committing to the shared group."""

    def __init__(self, job: Job) -> None:
        from writeback.ledger import Ledger

        self.job = job
        self.ledger = Ledger.connect(job.url, migrate_schema=False)
        self.ingest, self.publisher = service_ingest(job.stack, self.ledger)
        self.consumer = new_consumer(job.stack, job.partitions, group_id=job.group_id)

    def run(self) -> tuple[_Counting, _Timer]:
        from writeback.ingest import consume as ingesting

        stop = threading.Event()
        timer = _Timer()
        self.ledger.insert = timer.wrap("insert", self.ledger.insert)  # type: ignore[method-assign]
        counting = _Counting(self.ingest, stop, self.job.expected)
        counting.handle = timer.wrap("handle", counting.handle)  # type: ignore[method-assign]
        consumer = _BacklogConsumer(self.consumer, self.job.expected, timer)
        if not self.job.expected:  # nothing on this share's partitions: done before it starts
            stop.set()
        watchdog = threading.Timer(RUN_LIMIT_S, stop.set)  # short counts then fail the run
        watchdog.start()
        try:
            ingesting.run(consumer, counting, stop, batch_size=self.job.batch_size)  # type: ignore[arg-type]
        finally:
            watchdog.cancel()
        return counting, timer

    def close(self) -> None:
        self.consumer.close()
        self.publisher.close()
        self.ledger.close()


def shares(ends: dict[Partition, int], processes: int) -> list[tuple[Partition, ...]]:
    """The partitions dealt out round-robin, topic by topic, as a group's round-robin assignor
    would: every process gets the same number of partitions of each topic (not necessarily the
    same number of events: keys decide that)."""
    ordered = sorted(ends)
    return [tuple(ordered[i::processes]) for i in range(processes)]


def prepare_ledger(url: str) -> None:
    """Migrate the fresh database and store the settings once, before any worker starts, as a
    deployment does (`writeback migrate`, `writeback settings apply`): workers only connect."""
    from writeback.ledger import Ledger
    from writeback.settings import apply, parse_settings

    ledger = Ledger.connect(url)
    apply(ledger, parse_settings(tracking_settings()), datetime.now(UTC))
    ledger.close()


def group_offsets(stack: Stack, group_id: str, ends: dict[Partition, int]) -> dict[Partition, int]:
    """The group's committed offsets, read by a consumer that only names the group (it joins
    nothing, so it cannot disturb what the workers committed)."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": group_id, "log_level": 0})
    try:
        return {(tp.topic, tp.partition): tp.offset for tp in consumer.committed([_tp(t, p) for t, p in ends], timeout=10)}
    finally:
        consumer.close()


@dataclass(frozen=True)
class Outcome:
    """One verified run: the seconds from "go" until the last worker reported its share stored
    and committed, the workers' reports, and how busy the machine's CPUs were meanwhile (1.0:
    every core, whoever used it: ingest, the broker, the registry, PostgreSQL)."""

    seconds: float
    reports: list[Report]
    busy: float | None


def scaling_run(stack: Stack, ends: dict[Partition, int], url: str, processes: int, batch_size: int) -> Outcome:
    """`processes` spawned workers in one fresh group ingest the backlog into the fresh ledger
    at `url`; raises unless the run stored and committed every event exactly once."""
    group_id = f"bench-scaling-{uuid.uuid4()}"
    jobs = [
        Job(i, stack, url, group_id, share, sum(ends[tp] for tp in share), batch_size)
        for i, share in enumerate(shares(ends, processes))
    ]
    prepare_ledger(url)
    outcome = _run_workers(jobs)
    check(stack, ends, url, jobs, outcome.reports, group_id)
    return outcome


def _run_workers(jobs: list[Job]) -> Outcome:
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    messages = context.Queue()
    workers = [
        context.Process(target=_worker, args=(job, go, messages), name=f"bench-scaling-{job.index}")
        for job in jobs
    ]
    for w in workers:
        w.start()
    try:
        _await(messages, workers, "ready", READY_LIMIT_S)
        cpu_before = cpu_ticks()
        start = time.perf_counter()
        go.set()
        reports = _await(messages, workers, "done", RUN_LIMIT_S + 30)
        seconds = time.perf_counter() - start
        busy = busy_fraction(cpu_before, cpu_ticks())
        for w in workers:
            w.join(60)
            if w.exitcode != 0:
                raise RuntimeError(f"{w.name} exited with {w.exitcode}")
    finally:
        for w in workers:  # only after a failure: stop what this run started
            if w.is_alive():
                w.terminate()
                w.join(10)
    return Outcome(seconds, [reports[i] for i in sorted(reports)], busy)


def cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, None where there is none (not Linux).
    The difference over a run says whether the cores were the limit: a second process cannot
    help when the first one and the stack already keep every core busy."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(f) for f in stat.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def busy_fraction(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _await(messages: Any, workers: list, kind: str, limit: float) -> dict[int, Any]:
    """One `kind` message from every worker. A worker's failure is raised here with its
    traceback; a worker that died without a word, or a deadline passed, fails the run too."""
    got: dict[int, Any] = {}
    deadline = time.monotonic() + limit
    quiet = 0
    while len(got) < len(workers):
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not {kind} within {limit:.0f} s: only {sorted(got)}")
        try:
            what, index, payload = messages.get(timeout=0.5)
        except queue.Empty:
            # a dead worker's last message is already in the pipe: allow one more wait for it
            dead = [w.name for i, w in enumerate(workers) if i not in got and w.exitcode is not None]
            quiet = quiet + 1 if dead else 0
            if quiet > 1:
                raise RuntimeError(f"worker(s) {dead} exited without reporting {kind}") from None
            continue
        if what == "failed":
            raise RuntimeError(f"worker {index} failed:\n{payload}")
        if what != kind:
            raise RuntimeError(f"worker {index}: expected {kind!r}, got {what!r}")
        got[index] = payload
    return got


def check(stack: Stack, ends: dict[Partition, int], url: str, jobs: list[Job], reports: list[Report], group_id: str) -> None:
    """Fail the run unless the backlog was ingested exactly once: every worker stored its whole
    share with nothing rejected or dropped, the ledger holds one row per event, and the group's
    committed offsets are at every partition's high watermark."""
    from writeback.ledger import Ledger

    expected = sum(ends.values())
    problems = []
    for job, r in zip(jobs, reports, strict=True):
        if r.consumed != job.expected or r.rejected or r.dropped:
            problems.append(
                f"process {job.index + 1}: {r.consumed} of {job.expected} consumed, {r.rejected} rejected, {r.dropped} dropped"
            )
        if r.rows != job.expected or r.added != job.expected:
            problems.append(f"process {job.index + 1}: {r.rows} rows made, {r.added} added, expected {job.expected}")
    ledger = Ledger.connect(url, migrate_schema=False)
    rows, ids = ledger_events(ledger)
    dialect = ledger.dialect
    ledger.close()
    if rows != expected or ids != expected:
        problems.append(f"ledger holds {rows} rows for {ids} events, expected {expected}")
    committed = group_offsets(stack, group_id, ends)
    short = {tp: (committed.get(tp), end) for tp, end in ends.items() if end and committed.get(tp) != end}
    if short:
        problems.append(f"offsets not committed to the end (committed, end): {short}")
    if problems:
        raise RuntimeError(f"{len(jobs)} process(es) into {dialect}: " + "; ".join(problems))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events in the backlog")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant; the median is reported")
    parser.add_argument("--processes", type=int, default=2, help="processes in the group for (2) and (4) [2]")
    parser.add_argument("--batch-size", type=int, default=2000, help="records per consume() batch [2000, the service default]")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of each event topic")
    parser.add_argument("--no-postgres", action="store_true", help="skip (3) and (4) and do not start PostgreSQL")
    parser.add_argument("--output", type=Path, default=None, help="results file [bench/results/scaling.md]")
    args = parser.parse_args(argv)
    if args.events < 1 or args.repeats < 1 or args.batch_size < 1 or args.partitions < 1:
        parser.error("--events, --repeats, --batch-size and --partitions must be positive")
    if not 2 <= args.processes <= 2 * args.partitions:
        parser.error("--processes must be at least 2 and at most the partitions of both topics")
    return args


def variants(processes: int, postgres: bool) -> dict[str, tuple[str, int, str]]:
    """key -> (label, processes, backend)."""
    k = processes
    found = {
        "sqlite-1": ("(1) SQLite, 1 process: every partition", 1, "sqlite"),
        f"sqlite-{k}": (f"(2) SQLite, {k} processes in one group, partitions split, one file", k, "sqlite"),
    }
    if postgres:
        found["postgresql-1"] = ("(3) PostgreSQL, 1 process: every partition", 1, "postgresql")
        found[f"postgresql-{k}"] = (f"(4) PostgreSQL, {k} processes in one group, partitions split, one database", k, "postgresql")
    return found


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    log(f"bench scaling: {args.events:,} events, {args.repeats} repeats, 1 vs {args.processes} processes")
    events = make_events(args.events)
    workdir = Path(tempfile.mkdtemp(prefix="writeback-bench-"))
    try:
        with started_stack(with_postgres=not args.no_postgres) as stack:
            results = measure(stack, events, args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    markdown = report(args, argv, results)
    path = write_result("scaling", markdown, args.output)
    print(markdown)
    log(f"written to {path}")
    return 0


@dataclass
class Results:
    """Every verified run per variant (timings, the workers' reports, how busy the machine was)
    and how the backlog was split between processes."""

    variants: dict[str, tuple[str, int, str]]
    events: int
    split: list[int]
    runs: dict[str, list[Outcome]]

    def measurement(self, key: str) -> Measurement:
        return Measurement(self.variants[key][0], self.events, [o.seconds for o in self.runs[key]])

    def median_run(self, key: str) -> Outcome:
        """The run whose time is the median (the lower middle one for an even count)."""
        ordered = sorted(self.runs[key], key=lambda o: o.seconds)
        return ordered[(len(ordered) - 1) // 2]

    def retried(self) -> dict[str, int]:
        return {key: sum(r.retried for o in runs for r in o.reports) for key, runs in self.runs.items()}


def measure(stack: Stack, events: list, args: argparse.Namespace, workdir: Path) -> Results:
    log(f"publishing the backlog: {len(events):,} events ...")
    ends = publish_backlog(stack, events, args.partitions)
    split = [sum(ends[tp] for tp in share) for share in shares(ends, args.processes)]
    log(f"  {args.processes} processes get {' / '.join(f'{n:,}' for n in split)} events")

    urls = {"sqlite": lambda: sqlite_url(workdir), "postgresql": lambda: postgres_url(stack)}
    chosen = variants(args.processes, stack.postgres_url is not None)
    results = Results(chosen, len(events), split, {key: [] for key in chosen})

    # Warm-up, not timed: the broker's first fetches, the registry's first lookups.
    consume_run(stack, ends, args.batch_size, "raw")()
    for repeat in range(args.repeats):
        for key in rotated(list(chosen), repeat):
            _, processes, backend = chosen[key]
            # the fresh database, worker start-up and set-up, and the checks are not timed
            run = scaling_run(stack, ends, urls[backend](), processes, args.batch_size)
            results.runs[key].append(run)
            busy = "" if run.busy is None else f", CPUs {run.busy:.0%} busy"
            log(
                f"  repeat {repeat + 1}/{args.repeats} {key:>12}: {len(events) / run.seconds:>10,.0f} events/s "
                f"({run.seconds:.2f} s{busy})"
            )
            for r in run.reports:
                log(f"      {r.consumed:,} events in {r.seconds:.2f} s, {r.cpu:.2f} s CPU; " + _times(r))
    return results


def _times(r: Report) -> str:
    return ", ".join(f"{name} {t:.2f} s" for name, t in r.times.items())


def report(args: argparse.Namespace, argv: list[str], results: Results) -> str:
    rows = []
    for key in results.variants:
        m = results.measurement(key)
        base = results.measurement(key.rsplit("-", 1)[0] + "-1").rate
        rows.append(f"| {m.label} | {m.events:,} | {m.median:.2f} | {m.rate:,.0f} | {m.spread()} | {m.rate / base:.2f} |")
    retried = ", ".join(f"{results.variants[k][0].split(' ')[0]} {n}" for k, n in results.retried().items() if n)
    return "\n".join(
        [
            "# Ingest scaling: more processes in one consumer group",
            "",
            f"- Date: {utc_now()}",
            f"- Machine: {machine()}",
            (
                f"- N = {args.events:,} events in the backlog, ingested to the end by every run into a fresh ledger with "
                f"a fresh consumer group; R = {args.repeats} repeats (median reported, variants in rotating order); "
                f"`consume()` batches of {args.batch_size:,}; {args.partitions} partitions per topic"
            ),
            (
                f"- Events: those of `bench ingest` (over {ACCOUNTS} accounts with one `tracking` connection each, so "
                f"every event makes one ledger row). With {args.processes} processes the partitions are dealt out "
                "round-robin (the same number of each topic's partitions per process; keys decide the events): "
                f"{' / '.join(f'{n:,}' for n in results.split)} events"
            ),
            (
                "- Processes: spawned (`multiprocessing` \"spawn\"), each with its own ledger connection, serde, "
                "publisher and consumer (partitions assigned, commits to the run's group), all set up before the "
                "clock starts; time is from one shared \"go\" until the last process has stored and committed its "
                "share. The ledger is migrated and the settings applied once, by the parent, beforehand. Each "
                "process asks `consume()` for no more than what is left of its share, so none waits out the poll "
                "timeout (0.5 s) for a last batch the backlog cannot fill"
            ),
            (
                "- Stack: the local single-node Kafka (KRaft), Apicurio registry and PostgreSQL on loopback, started "
                "by the benchmark, on the same cores as the ingest processes. SQLite: one file in a temp dir with the "
                "ledger's pragmas (WAL, synchronous=NORMAL, busy_timeout 30 s). PostgreSQL runs with fsync=off"
            ),
            f"- Reproduce: `{command('scaling', argv)}`",
            "",
            "| variant | events | median s | events/s | range of runs (events/s) | ratio to 1 process, same backend |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "Every run is checked: every process reports its whole share consumed, stored and committed with none",
            "rejected or dropped, the ledger holds exactly one row per event (rows and distinct event ids both N),",
            "and the group's committed offsets are at every partition's high watermark. Batches that ingest had",
            "to retry (each a 2 s pause inside the timing, e.g. a database locked past its busy timeout): "
            + (retried or "none") + ".",
            "",
            *breakdown(results),
        ]
    )


def breakdown(results: Results) -> list[str]:
    """Where each process's time went in each variant's median run: the ratio alone cannot say
    whether a second process was held back by the database, by Kafka or by the cores."""
    lines = [
        "## Where the time went (each variant's median run)",
        "",
        "Per process: wall time from \"go\" to its last commit, its CPU time meanwhile (less than the wall",
        "time: it waited, for the database or for a core), and the seconds inside `consume()`, `Ingest.handle`",
        "(decode, validate, fan out, store), of which `Ledger.insert`, and the offset commit. \"CPUs busy\" is",
        "the share of all the machine's cores in use during the run (/proc/stat), whoever used them: ingest,",
        "the broker, the registry, PostgreSQL.",
        "",
        "| variant | process | events | wall s | CPU s | consume s | handle s | of which insert s | commit s | CPUs busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, (label, _, _) in results.variants.items():
        run = results.median_run(key)
        busy = "n/a" if run.busy is None else f"{run.busy:.0%}"
        for r in run.reports:
            t = r.times
            lines.append(
                f"| {label.split(' ')[0]} | {r.index + 1} | {r.consumed:,} | {r.seconds:.2f} | {r.cpu:.2f} | "
                f"{t['consume']:.2f} | {t['handle']:.2f} | {t['insert']:.2f} | {t['commit']:.2f} | {busy} |"
            )
    return [*lines, ""]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
