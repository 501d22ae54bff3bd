"""Claims and the failed list against the backlog: 10,000 rows vs 1,000,000, SQLite and PostgreSQL.

    python -m bench claims [--small N] [--large N] [--repeats R] [--no-postgres]

Each size gets a fresh ledger (migrated as the service does) filled by one INSERT ... SELECT of
N rows for one connection: all pending and due (a backlog after downtime), ten rows per
recipient, 1 % failed. On PostgreSQL autovacuum is switched off for the table before the fill
and nothing analyses it, so the planner has no statistics, as when a backlog lands after an
outage. Timed, R times each, median reported: `Ledger.claim_due` of 200 rows (each run claims
the next 200) and `Ledger.list(status=failed, limit=100)` (what `writeback list --status failed`
runs). The PostgreSQL plan of the claim on the large, never-analysed table is written out too.
Done when the large table's times are within 2x of the small one's.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import command, log, machine, utc_now, write_result

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fill(
    ledger,
    rows: int,
    *,
    account: str = "acct",
    connection: str = "c1",
    closes: str = "2026-01-01 01:00:00",
    failed_every: int | None = 100,
    payload: str = '{"n": 1}',
) -> None:
    """`rows` rows for one connection in one INSERT ... SELECT, ten per recipient, every
    `failed_every`-th failed, windows closing at `closes` (UTC); on PostgreSQL the table's
    autovacuum is switched off so it is never analysed."""
    import sqlalchemy as sa

    if ledger.dialect == "postgresql":
        numbers = f"SELECT n FROM generate_series(1, {rows}) AS n"
        stamp = "TIMESTAMPTZ '2026-01-01 00:00:00+00' + n * INTERVAL '1 millisecond'"
        closes_at = f"TIMESTAMPTZ '{closes}+00'"
        body = "CAST(:payload AS jsonb)"
    else:
        numbers = f"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {rows}) SELECT n FROM c"
        stamp = "strftime('%Y-%m-%d %H:%M:%f000', '2026-01-01', '+' || (n / 1000.0) || ' seconds')"
        closes_at = f"'{closes}.000000'"
        body = ":payload"
    failed = f"n % {failed_every} = 0" if failed_every else "0 = 1"
    sql = f"""
        INSERT INTO writebacks (key, id, account_id, connection_id, wb_class, event_type, event_id,
            recipient_key, occurred_at, window_closes_at, status, attempts, replay_count, payload,
            created_at, updated_at, error_code)
        SELECT n, 'wb-' || n, :account, :connection, 'activity', 'activity', 'ev-' || n,
            'r' || (n % {max(rows // 10, 1)}), {stamp}, {closes_at},
            CASE WHEN {failed} THEN 'failed' ELSE 'pending' END, 0, 0, {body},
            {stamp}, {stamp}, CASE WHEN {failed} THEN 'E' END
        FROM ({numbers}) AS numbers
    """
    with ledger.engine.begin() as conn:
        if ledger.dialect == "postgresql":
            conn.execute(sa.text("ALTER TABLE writebacks SET (autovacuum_enabled = false)"))
        conn.execute(sa.text(sql), {"account": account, "connection": connection, "payload": payload})


def _ledger(dialect: str, workdir: Path, postgres_url: str | None):
    from writeback.ledger import Ledger

    if dialect == "sqlite":
        return Ledger.connect(f"sqlite:///{workdir / uuid.uuid4().hex}.db")
    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(postgres_url)
    name = f"claims_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"host={server.host} port={server.port} user={server.username} dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return Ledger.connect(server.set(database=name).render_as_string(hide_password=False))


def _claim_plan(ledger, now: datetime) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the claim's SELECT, as the ledger builds it."""
    import sqlalchemy as sa

    from writeback.ledger import store

    statement = store.claim_query("c1", now, 200)
    compiled = statement.compile(dialect=ledger.engine.dialect, compile_kwargs={"literal_binds": True})
    with ledger.engine.connect() as conn:
        return "\n".join(r[0] for r in conn.execute(sa.text(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}")))


def measure(dialect: str, rows: int, repeats: int, workdir: Path, postgres_url: str | None) -> dict:
    from writeback.ledger.rows import Status

    ledger = _ledger(dialect, workdir, postgres_url)
    started = time.perf_counter()
    fill(ledger, rows)
    log(f"{dialect}: {rows:,} rows filled in {time.perf_counter() - started:.1f} s")
    now = T0 + timedelta(days=1)
    result: dict = {"claim": [], "failed": []}
    if dialect == "postgresql" and rows > 100_000:
        result["plan"] = _claim_plan(ledger, now)
    for _ in range(repeats):
        start = time.perf_counter()
        claimed = ledger.claim_due("c1", "bench", now, 200)
        result["claim"].append(time.perf_counter() - start)
        assert len(claimed) == 200, f"claimed {len(claimed)}"
        start = time.perf_counter()
        failed = ledger.list(status=Status.FAILED, limit=100)
        result["failed"].append(time.perf_counter() - start)
        assert len(failed) == min(100, rows // 100)
    ledger.close()
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench claims")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="writeback-claims-"))
    workdir.chmod(0o755)  # PostgreSQL runs as its own user
    results: dict = {}
    try:
        postgres_url = None
        server = None
        if not args.no_postgres:
            from writeback_dev.localstack.postgres import PostgresServer

            server = PostgresServer(workdir / "postgres").start()
            postgres_url = server.url
        try:
            for dialect in ["sqlite"] + ([] if args.no_postgres else ["postgresql"]):
                for rows in (args.small, args.large):
                    results[(dialect, rows)] = measure(dialect, rows, args.repeats, workdir, postgres_url)
        finally:
            if server is not None:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    lines = [
        "# Claims and the failed list against the backlog",
        "",
        f"- Date: {utc_now()}",
        f"- Machine: {machine()}",
        f"- Reproduce: `{command('claims', argv)}`",
        "- One connection, every row pending and due, ten rows per recipient, 1 % failed; PostgreSQL table never analysed (autovacuum off for it). Medians of "
        f"{args.repeats} runs (range in brackets); each claim takes the next 200 rows.",
        "",
        f"| backend | query | {args.small:,} rows (ms) | {args.large:,} rows (ms) | large / small |",
        "|---|---|---:|---:|---:|",
    ]
    for dialect in ["sqlite"] + ([] if args.no_postgres else ["postgresql"]):
        for query, label in (("claim", "`claim_due` (200 rows)"), ("failed", "`list --status failed` (100 rows)")):
            small, large = results[(dialect, args.small)][query], results[(dialect, args.large)][query]
            ms = lambda xs: f"{statistics.median(xs) * 1000:.1f} [{min(xs) * 1000:.1f}–{max(xs) * 1000:.1f}]"  # noqa: E731
            lines.append(
                f"| {dialect} | {label} | {ms(small)} | {ms(large)} | {statistics.median(large) / statistics.median(small):.2f} |"
            )
    plan = results.get(("postgresql", args.large), {}).get("plan")
    if plan:
        lines += ["", f"PostgreSQL plan of the claim on the never-analysed {args.large:,}-row table:", "", "```", plan, "```"]
    markdown = "\n".join(lines) + "\n"
    path = write_result("claims", markdown, args.output)
    print(markdown)
    log(f"written to {path}")
    return 0
