"""Flush throughput: due writebacks written into the CRM simulators, as a ratio to the flusher alone.

    python -m bench flush [--records N] [--repeats R] [--output FILE]

Each run fills a fresh SQLite ledger with N due writebacks for one connection, one recipient each,
and times `Flusher.flush_connection` until every row is recorded, in two workloads:

- mailing activity: N Sent (Delivered) writebacks;
- unsubscribe: N unsubscribes.

and three variants, in an order that rotates every repeat:

(a) baseline: the same Flusher with an adapter that completes every writeback without a call
    (claiming, decoding the stored events, recording outcomes: the service's own cost);
(b) Salesforce: the Salesforce adapter into the Salesforce simulator (Tasks by upsert, 200 a
    call; Email Opt Out and a Note per unsubscribe, in collection calls);
(c) netFORUM: the netFORUM adapter into the xWeb simulator (GetQuery lookups, then
    CustomerMessagingActivity rows 100 an InsertFacadeObject; an UpdateFacadeObject per
    unsubscribe for Do Not Contact).

The simulators run in a process of their own (spawned, driven through a multiprocessing manager),
so their CPU does not share the flusher's interpreter; they are reset and seeded before each run
and each run's adapter is opened and warmed with one writeback (WSDL, token) before the clock
starts, as a running service keeps its adapters. Every run is checked against the simulator's
state: N records written, each recipient's flag set by an unsubscribe, no failure and no fault.
Results go to bench/results/flush.md (or --output) and stdout.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.managers import BaseManager
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

ACCOUNT, ZONE = "bench", "America/New_York"
SF_SECRET_ENV, NF_PASSWORD_ENV = "BENCH_SF_SECRET", "BENCH_NF_PASSWORD"
WORKLOADS = ("mailing activity", "unsubscribe")
VARIANTS = ("baseline", "salesforce", "httpx", "netforum")
LABELS = {
    "baseline": "(a) baseline: the flusher, an adapter that makes no call",
    "salesforce": "(b) Salesforce adapter into the Salesforce simulator",
    "httpx": "(b, bare) a bare httpx loop sending (b)'s exact requests to the same simulator",
    "netforum": "(c) netFORUM adapter into the xWeb simulator",
}
_NAMESPACE = uuid.UUID("0b6f2c1e-5d3a-4e8f-9a71-2c4d6e8f1a3b")


# -- the simulators, in a process of their own ---------------------------------------------------


class SimHost:
    """Both simulators, started in the manager's process; methods return plain data."""

    def __init__(self) -> None:
        from writeback_dev.simulators.netforum import NetforumSim
        from writeback_dev.simulators.salesforce import SalesforceSim

        self._sf = SalesforceSim(api_limit=10_000_000).start()
        self._nf = NetforumSim().start()

    def endpoints(self) -> dict[str, str]:
        return {
            "login_url": self._sf.login_url,
            "client_id": self._sf.client_id,
            "client_secret": self._sf.client_secret,
            "xweb_url": self._nf.endpoint,
            "username": self._nf.user,
            "password": self._nf.password,
        }

    def seed(self, variant: str, people: int) -> list[str]:
        """A fresh simulator of the variant with `people` recipients; their CRM keys."""
        if variant == "salesforce":
            self._sf.reset()
            return [self._sf.add_contact(f"Bench{i}", f"bench{i}@example.org") for i in range(people)]
        self._nf.reset()
        return [self._nf.add_individual("Bench", f"Member{i}", f"bench{i}@example.org") for i in range(people)]

    def holds(self, variant: str) -> dict[str, int]:
        """What the simulator holds and was asked: records written, flags set, calls, faults."""
        if variant == "salesforce":
            people = self._sf.records("Contact")
            data = [r for r in self._sf.request_log if "/services/data/" in r.path]
            return {
                "records": len(self._sf.records("Task")) + len(self._sf.records("Note")),
                "flagged": sum(1 for p in people if p["HasOptedOutOfEmail"]),
                "calls": len(data),
                "faults": sum(1 for r in data if r.status >= 400),
            }
        return {
            "records": len(self._nf.activities()),
            "flagged": sum(1 for p in self._nf.individuals() if p["cst_no_email_flag"]),
            "calls": len(self._nf.request_log),
            "faults": self._nf.fault_count(),
        }

    def cpu(self) -> float:
        """CPU seconds the simulators' process has used: what a run cost the CRM side."""
        return time.process_time()

    def stop(self) -> None:
        self._sf.stop()
        self._nf.stop()


class _SimManager(BaseManager):
    pass


_SimManager.register("SimHost", SimHost)


@contextmanager
def simulators() -> Iterator[tuple[Any, dict[str, str]]]:
    """Both simulators in a spawned process of their own, and their endpoints; the secrets the
    benchmarks' settings name are put in the environment."""
    manager = _SimManager(ctx=multiprocessing.get_context("spawn"))
    manager.start()
    try:
        host = manager.SimHost()  # type: ignore[attr-defined]
        endpoints = host.endpoints()
        os.environ[SF_SECRET_ENV], os.environ[NF_PASSWORD_ENV] = endpoints["client_secret"], endpoints["password"]
        yield host, endpoints
        host.stop()
    finally:
        manager.shutdown()


# -- one run -------------------------------------------------------------------------------------


class NoCallAdapter:
    """(a): completes every writeback at once, so only the flusher and the ledger are timed."""

    max_batch = 500  # netFORUM's; Salesforce's is 200

    def write(self, batch: Sequence[Any]) -> list[Any]:
        from writeback.adapters.base import Outcome

        return [Outcome.completed(wb.id) for wb in batch]

    def close(self) -> None:
        pass


class NoDeadLetters:
    """The sink a checked run needs: any dead letter means the run failed."""

    def send(self, letters: Sequence[Any], timeout: float = 30.0) -> None:
        if letters:
            raise AssertionError(f"{len(letters)} writebacks failed: {letters[0].error_code} {letters[0].error_message}")


@dataclass
class Prepared:
    """A ledger full of due rows and a warmed adapter, ready for the clock."""

    ledger: Any
    flusher: Any
    adapter: Any
    connection_id: str
    expected: int
    keys: list[str]


def settings_for(variant: str, endpoints: dict[str, str]) -> Any:
    from writeback.settings import parse_settings

    if variant == "salesforce":
        crm = {"login_url": endpoints["login_url"], "client_id": endpoints["client_id"], "client_secret": {"env": SF_SECRET_ENV}}
        connection = {"id": "bench-salesforce", "kind": "salesforce", "writebacks": {"mailing_activity": ["sent"]}, "crm": crm}
    else:
        crm = {"xweb_url": endpoints["xweb_url"], "username": endpoints["username"], "password": {"env": NF_PASSWORD_ENV}}
        connection = {"id": f"bench-{variant}", "kind": "netforum", "crm": crm}
    return parse_settings({"accounts": [{"id": ACCOUNT, "time_zone": ZONE, "connections": [connection]}]})


def event_for(workload: str, key: str, index: int, run: str) -> Any:
    from writeback.contract.events import parse_event

    at = datetime(2026, 3, 10, 14, 0, tzinfo=UTC) + timedelta(seconds=index)
    data: dict[str, Any] = {
        "event_id": str(uuid.uuid5(_NAMESPACE, f"{run}:{workload}:{index}")),
        "account_id": ACCOUNT,
        "occurred_at": at.isoformat(),
        "recipient": {"integration_id": key, "email": f"bench{index}@example.org"},
    }
    if workload == "unsubscribe":
        return parse_event({**data, "type": "subscriber", "source": "MAILING_LINK", "action": "UNSUBSCRIBE"})
    mailing = {"mailing_id": "m-bench", "name": "Bench Newsletter", "send_date": (at - timedelta(hours=1)).isoformat()}
    return parse_event({**data, "type": "activity", "source": "CAMPAIGN", "subcode": "Delivered", "mailing": mailing})


def rows_for(events: Sequence[Any], connection_id: str, due: datetime) -> list[Any]:
    from writeback.ingest.consume import writeback_id
    from writeback.ledger.rows import WritebackClass
    from writeback.ledger.store import NewWriteback

    return [
        NewWriteback(
            id=writeback_id(e.event_id, connection_id),
            account_id=ACCOUNT,
            connection_id=connection_id,
            wb_class=WritebackClass.SUBSCRIBER if e.event_type == "subscriber" else WritebackClass.ACTIVITY,
            event_type=e.event_type,
            event_id=e.event_id,
            recipient_key=e.recipient.key(),
            occurred_at=e.occurred_at,
            window_closes_at=due,
            payload=e.model_dump_json(),
            mailing_id=getattr(getattr(e, "mailing", None), "mailing_id", None),
        )
        for e in events
    ]


def prepare(host: Any, endpoints: dict[str, str], variant: str, workload: str, records: int, workdir: Path, run: str) -> Prepared:
    """Everything the clock must not see: seeding, the ledger's rows, the adapter's warm-up."""
    from writeback.flush.flusher import Flusher, open_adapter
    from writeback.ledger import Ledger
    from writeback.settings import apply

    target = "netforum" if variant == "baseline" else variant
    keys = host.seed(target, records + 1)  # the last one takes the warm-up writeback
    settings = settings_for(variant, endpoints)
    account = settings.accounts[0]
    connection = account.connections[0]
    adapter = NoCallAdapter() if variant == "baseline" else open_adapter(account, connection)
    assert adapter is not None
    warm_up(adapter, connection.id, event_for("mailing activity", keys[-1], records, f"{run}:warm-up"))

    ledger = Ledger.connect(f"sqlite:///{workdir / f'{run}.db'}")
    apply(ledger, settings, datetime.now(UTC))
    events = [event_for(workload, key, i, run) for i, key in enumerate(keys[:records])]
    ledger.insert(rows_for(events, connection.id, datetime.now(UTC) - timedelta(seconds=1)), now=datetime.now(UTC))
    flusher = Flusher(
        ledger, lambda: settings, lambda _a, _c: adapter, cast(Any, NoDeadLetters()), cast(Any, None), lease_ttl=timedelta(minutes=10)
    )
    return Prepared(ledger, flusher, adapter, connection.id, records, keys)


@dataclass
class Replay:
    """(b, bare): the requests the Salesforce adapter made for the same rows, recorded on a run
    before the clock, to be sent again by a plain httpx client to a freshly seeded simulator."""

    client: Any
    base: str
    requests: list[tuple[str, str, bytes]]
    expected: int


def prepare_replay(host: Any, endpoints: dict[str, str], workload: str, records: int, workdir: Path, run: str) -> Replay:
    import httpx

    capture = prepare(host, endpoints, "salesforce", workload, records, workdir, f"{run}-capture")
    recorded: list[tuple[str, str, bytes]] = []
    http = capture.adapter._client._http
    http.event_hooks = {"request": [lambda r: recorded.append((r.method, r.url.raw_path.decode(), r.content))], "response": []}
    try:
        flush_all(capture)()
    finally:
        capture.adapter.close()
        capture.ledger.close()
    keys = host.seed("salesforce", records + 1)  # a fresh org hands out the same ids again
    assert keys == capture.keys, "the simulator's ids changed between seeds"
    client = httpx.Client(headers={"Accept": "application/json"})
    token = client.post(
        f"{endpoints['login_url']}/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": endpoints["client_id"], "client_secret": endpoints["client_secret"]},
    ).json()
    client.headers["Authorization"] = f"Bearer {token['access_token']}"
    client.headers["Content-Type"] = "application/json"
    return Replay(client, token["instance_url"].rstrip("/"), recorded, records)


def replay_all(replay: Replay) -> Callable[[], None]:
    def run() -> None:
        for method, path, body in replay.requests:
            response = replay.client.request(method, replay.base + path, content=body or None)
            if response.status_code >= 400:
                raise AssertionError(f"{method} {path}: {response.status_code}")

    return run


def warm_up(adapter: Any, connection_id: str, event: Any) -> None:
    """One Sent writeback before the clock: the WSDL read and the first token, as a running
    service has them from its earlier flushes."""
    from writeback.adapters.base import Disposition, Writeback
    from writeback.ledger.rows import WritebackClass

    wb = Writeback("warm-up", ACCOUNT, connection_id, WritebackClass.ACTIVITY, event.recipient.key(), event.occurred_at, event)
    [outcome] = adapter.write([wb])
    assert outcome.disposition is Disposition.COMPLETED and outcome.error_code is None, outcome


def flush_all(prepared: Prepared) -> Callable[[], None]:
    def run() -> None:
        report = prepared.flusher.flush_connection(prepared.connection_id)
        written = report.outcomes.get("completed", 0)
        if written != prepared.expected:
            raise AssertionError(f"{written} of {prepared.expected} completed: {report.outcomes}")

    return run


def check(host: Any, prepared: Prepared, variant: str, workload: str) -> dict[str, int]:
    """The simulator holds exactly what the ledger says was written, and nothing failed."""
    counts = prepared.ledger.counts()
    assert counts == {(prepared.connection_id, "completed"): prepared.expected}, counts
    if variant == "baseline":
        return {}
    held = host.holds(variant)
    assert held["records"] == prepared.expected + 1, held  # + the warm-up's Task or row
    if workload == "unsubscribe":
        assert held["flagged"] == prepared.expected, held
    assert held["faults"] == 0, held
    return held


# -- the benchmark ---------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench flush", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1000, help="writebacks per run (one recipient each)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-flush-"))
    manager = _SimManager(ctx=multiprocessing.get_context("spawn"))
    manager.start()
    results: dict[tuple[str, str], Measurement] = {}
    calls: dict[tuple[str, str], int] = {}
    cpu_per_row: dict[tuple[str, str], list[float]] = {}
    try:
        host = manager.SimHost()  # type: ignore[attr-defined]
        endpoints = host.endpoints()
        os.environ[SF_SECRET_ENV], os.environ[NF_PASSWORD_ENV] = endpoints["client_secret"], endpoints["password"]
        for workload in WORKLOADS:
            for variant in VARIANTS:
                if variant != "httpx" or workload == "mailing activity":
                    results[(workload, variant)] = Measurement(LABELS[variant], args.records)
        for repeat in range(args.repeats):
            for workload in WORKLOADS:
                for variant in rotated(VARIANTS, repeat):
                    if variant == "httpx" and workload != "mailing activity":
                        continue
                    run = f"r{repeat}-{workload.replace(' ', '-')}-{variant}"
                    cpu = time.process_time()
                    if variant == "httpx":
                        replay = prepare_replay(host, endpoints, workload, args.records, workdir, run)
                        try:
                            with frozen_heap():
                                cpu = time.process_time()
                                seconds = timed(replay_all(replay))
                                cpu = time.process_time() - cpu
                        finally:
                            replay.client.close()
                        held = host.holds("salesforce")
                        assert held["records"] == args.records and held["faults"] == 0, held
                    else:
                        prepared = prepare(host, endpoints, variant, workload, args.records, workdir, run)
                        try:
                            with frozen_heap():
                                cpu = time.process_time()
                                seconds = timed(flush_all(prepared))
                                cpu = time.process_time() - cpu
                            held = check(host, prepared, variant, workload)
                        finally:
                            prepared.adapter.close()
                            prepared.ledger.close()
                    cpu_per_row.setdefault((workload, variant), []).append(cpu / args.records * 1e6)
                    results[(workload, variant)].seconds.append(seconds)
                    calls[(workload, variant)] = held.get("calls", 0)
                    log(f"{run}: {args.records / seconds:,.0f} records/s ({seconds:.2f} s)")
        host.stop()
    finally:
        manager.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    markdown = report(args, argv, results, calls, cpu_per_row)
    path = write_result("flush", markdown, args.output)
    print(markdown)
    log(f"written to {path}")
    return 0


def report(
    args: argparse.Namespace,
    argv: list[str],
    results: dict[tuple[str, str], Measurement],
    calls: dict[tuple[str, str], int],
    cpu_per_row: dict[tuple[str, str], list[float]],
) -> str:
    lines = [
        "# Flush throughput: Salesforce and netFORUM",
        "",
        f"- Date: {utc_now()}",
        f"- Machine: {machine()}",
        (
            f"- N = {args.records:,} due writebacks per run, one recipient each, flushed to the end by one "
            "`Flusher.flush_connection` from a fresh SQLite ledger; "
            f"R = {args.repeats} repeats (median reported, variants in rotating order)"
        ),
        (
            "- Simulators: the Salesforce REST and netFORUM xWeb simulators on loopback, in a process of their own, "
            "reset and seeded before every run; each run's adapter is opened and warmed with one writeback before "
            "the clock starts"
        ),
        f"- Reproduce: `{command('flush', argv)}`",
        "",
        "| workload | variant | records | median s | records/s | range of runs (records/s) | ratio to (a) | CRM calls per run | flusher CPU µs/record |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workload in WORKLOADS:
        base = results[(workload, "baseline")].rate
        for variant in VARIANTS:
            m = results.get((workload, variant))
            if m is None:
                continue
            count = "–" if variant == "baseline" else f"{calls[(workload, variant)]:,}"
            cpu = statistics.median(cpu_per_row[(workload, variant)])
            lines.append(
                f"| {workload} | {m.label} | {m.events:,} | {m.median:.2f} | {m.rate:,.0f} | {m.spread()} "
                f"| {m.rate / base:.3f} | {count} | {cpu:,.0f} |"
            )
        if (workload, "httpx") in results:
            ratio = results[(workload, "salesforce")].rate / results[(workload, "httpx")].rate
            lines.append(f"| {workload} | (b) / (b, bare): the flusher against a bare loop making its calls | | | | | {ratio:.3f} | | |")
            ceiling = base / results[(workload, "httpx")].rate
            lines.append(f"| {workload} | (a) / (b, bare): the same with no call at all, the ceiling of the line above | | | | | {ceiling:.3f} | | |")
    lines += [
        "",
        "Every run is checked: every row completed with no error (a dead letter fails the run), and the simulator holds",
        "exactly N records (Tasks, or Notes for Salesforce unsubscribes; CustomerMessagingActivity rows for netFORUM)",
        "besides the warm-up's, every unsubscribed recipient flagged (Email Opt Out, Do Not Contact by Email), and no",
        "fault or error status. CRM calls count the run's requests to the simulator, warm-up included.",
        "(b, bare) records (b)'s requests on a run before the clock (httpx event hook on the adapter's client),",
        "reseeds the simulator (same ids), then times a plain `httpx.Client` sending them in turn: Kafka-free,",
        "ledger-free, no decoding; the simulator must then hold exactly N Tasks. Flusher CPU is the benchmark",
        "process's CPU time (`time.process_time`) over the timed run per record: ledger, decoding, adapter and",
        "HTTP client, not the simulators (their own process).",
        "",
        "Reading it: (a) is what the flusher and the SQLite ledger cost per record with no CRM at all (claiming,",
        "decoding the stored event, recording the outcome), the ceiling for every CRM. Mailing activity is batched by",
        "both CRMs (Salesforce: 200 Tasks an upsert; netFORUM: GetQuery lookups of 100 keys, then 100 rows an",
        "InsertFacadeObject), so its calls stay few. A netFORUM unsubscribe needs one UpdateFacadeObject of the",
        "Individual (Do Not Contact by Email) per recipient, since a facade update takes one object, before its",
        "rows are inserted in batches: about one round trip per record. Both simulators are Python servers on the",
        "same two cores, so the figures compare the adapters' work and call counts, not the CRMs' own speed.",
        "",
    ]
    return "\n".join(lines)
