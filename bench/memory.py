"""Peak memory of `writeback serve` against the size of its backlog: 1,000,000 pending rows vs none.

    python -m bench memory [--rows 0,1000000] [--hold S]

Starts the local stack (Kafka and the schema registry; the topics created empty). For each size,
a fresh SQLite ledger (migrated as the service does, the ingest benchmark's 50 tracking
connections stored) is filled by one INSERT ... SELECT with that many pending rows for one
connection, ten per recipient, each carrying a real event's JSON; their windows close in 2099, so
nothing is due and nothing flushes. Then `writeback serve` (`python -m writeback.cli serve`) runs against it in a
subprocess: once /readyz answers 200 (consumer assigned, database reachable), it is left running
for S seconds (flush passes every second, the backlog gauges refreshed, /metrics scraped once a
second), then stopped with SIGTERM. Its peak resident set is the kernel's VmHWM from
/proc/<pid>/status, read just before the stop; the ledger must still hold every row pending.
Results go to bench/results/memory.md (or --output) and stdout.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench import command, log, machine, utc_now, write_result
from bench.claims import fill
from bench.ingest import (
    Stack,
    account_id,
    make_events,
    started_stack,
    topics,
    tracking_settings,
)

TARGET_MB = 300


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def _create_topics(stack: Stack) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": stack.bootstrap, "log_level": 0})
    for future in admin.create_topics([NewTopic(t, 6, 1) for t in topics()], operation_timeout=30).values():
        future.result(30)


def _ledger(path: Path, rows: int):
    from writeback.ledger import Ledger
    from writeback.settings import apply, parse_settings

    ledger = Ledger.connect(f"sqlite:///{path}")
    apply(ledger, parse_settings(tracking_settings()), datetime.now(UTC))
    if rows:
        started = time.perf_counter()
        payload = make_events(1)[0].model_dump_json()
        fill(ledger, rows, account=account_id(0), connection=f"{account_id(0)}-tracking", closes="2099-01-01 00:00:00", failed_every=None, payload=payload)
        log(f"{rows:,} pending rows filled in {time.perf_counter() - started:.1f} s")
    return ledger


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _pending_gauge(metrics: str, connection: str) -> float:
    """The connection's pending rows as serve's /metrics reports them (its backlog query ran)."""
    prefix = f'writeback_pending_rows{{connection="{connection}"'
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix))


def measure(stack: Stack, rows: int, hold: float, workdir: Path) -> dict[str, float]:
    """Peak and final resident set of one `writeback serve` (MB), and seconds from start to ready."""
    path = workdir / f"{uuid.uuid4().hex}.db"
    ledger = _ledger(path, rows)
    env = {
        **os.environ,
        "WRITEBACK_DATABASE_URL": f"sqlite:///{path}",
        "WRITEBACK_BOOTSTRAP_SERVERS": stack.bootstrap,
        "WRITEBACK_SCHEMA_REGISTRY_URL": stack.registry_url,
        "WRITEBACK_GROUP_ID": f"bench-memory-{uuid.uuid4().hex[:8]}",
        "WRITEBACK_METRICS_PORT": "0",
        "WRITEBACK_HTTP_HOST": "127.0.0.1",
        "BENCH_SF_SECRET": "bench",
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "writeback.cli", "serve"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    lines: list[str] = []
    port: list[int] = []
    found = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = re.search(r"metrics and probes on http://[^:]+:(\d+)", line)
            if match and not port:
                port.append(int(match.group(1)))
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not found.wait(60):
            raise RuntimeError("serve did not open its HTTP port:\n" + "".join(lines[-20:]))
        base = f"http://127.0.0.1:{port[0]}"
        deadline = time.monotonic() + 180
        while (answer := _get(f"{base}/readyz"))[0] != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve not ready: {answer[1][:200]!r}\n" + "".join(lines[-20:]))
            time.sleep(0.5)
        ready = time.perf_counter() - started
        samples = []
        end = time.monotonic() + hold
        while time.monotonic() < end:
            status, body = _get(f"{base}/metrics")
            assert status == 200, status
            samples.append(_status(process.pid)["VmRSS"])
            time.sleep(1)
        peak = _status(process.pid)["VmHWM"]
        last = _status(process.pid)["VmRSS"]
        gauged = _pending_gauge(body.decode(), f"{account_id(0)}-tracking")
        if gauged != rows:
            raise AssertionError(f"serve's writeback_pending_rows gauge says {gauged:,.0f}, the ledger holds {rows:,}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    counts = ledger.counts()
    ledger.close()
    assert sum(counts.values()) == rows and all(s == "pending" for _, s in counts), counts
    return {"peak": peak / 1024, "last": last / 1024, "ready": ready, "samples": len(samples)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="0,1000000", help="pending rows per run, comma separated; the first is the baseline")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds serve runs once ready")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.rows.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    results: dict[int, dict[str, float]] = {}
    try:
        with started_stack(with_postgres=False) as stack:
            _create_topics(stack)
            for rows in sizes:
                results[rows] = measure(stack, rows, args.hold, workdir)
                log(f"{rows:,} pending rows: peak RSS {results[rows]['peak']:.0f} MB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    markdown = report(args, argv, sizes, results)
    path = write_result("memory", markdown, args.output)
    print(markdown)
    log(f"written to {path}")
    return 0


def report(args: argparse.Namespace, argv: list[str], sizes: list[int], results: dict[int, dict[str, float]]) -> str:
    base = results[sizes[0]]["peak"]
    lines = [
        "# Peak memory of `writeback serve` against its backlog",
        "",
        f"- Date: {utc_now()}",
        f"- Machine: {machine()}",
        (
            f"- One `writeback serve` subprocess (`python -m writeback.cli serve`) per size against a fresh SQLite ledger of that many pending rows "
            f"(one connection, windows closing in 2099, so nothing flushes), on the local Kafka and registry; "
            f"held {args.hold:g} s once /readyz answers 200, /metrics scraped once a second, then SIGTERM"
        ),
        f"- Reproduce: `{command('memory', argv)}`",
        "",
        f"| pending rows | peak RSS (VmHWM) MB | RSS at the end MB | peak / {sizes[0]:,} rows' | start → ready s | target ≤ {TARGET_MB} MB |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for rows in sizes:
        r = results[rows]
        met = "met" if r["peak"] <= TARGET_MB else "not met"
        lines.append(f"| {rows:,} | {r['peak']:.0f} | {r['last']:.0f} | {r['peak'] / base:.2f} | {r['ready']:.1f} | {met} |")
    lines += [
        "",
        "Checked after every run: serve's `writeback_pending_rows` gauge reports every row (its backlog query ran",
        "over them) and the ledger still holds exactly that many rows, every one pending. One run per size: peak",
        "memory is not noisy the way throughput is.",
        "",
    ]
    return "\n".join(lines)
