"""The `writeback` command line: one entry point for operators, platform teams and developers."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated

import typer

from writeback.config import ServiceConfig, load_config
from writeback.ledger.rows import Status, WritebackClass
from writeback.logs import LogFormat
from writeback.logs import configure as configure_logs

if TYPE_CHECKING:
    from rich.console import Console

    from writeback.ledger import Ledger
    from writeback.settings import Settings

app = typer.Typer(
    help="Keep CRMs in step with the email-marketing platform, from Kafka events.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
stack_app = typer.Typer(help="The local development stack (Kafka, schema registry, PostgreSQL).")
app.add_typer(stack_app, name="stack")
schemas_app = typer.Typer(help="The Avro contract in the schema registry.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")

RegistryOption = Annotated[
    str | None,
    typer.Option("--registry", help="Schema registry URL [default: WRITEBACK_SCHEMA_REGISTRY_URL]"),
]
BootstrapOption = Annotated[
    str | None,
    typer.Option("--bootstrap", help="Kafka bootstrap servers [default: WRITEBACK_BOOTSTRAP_SERVERS]"),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _config() -> ServiceConfig:
    """WRITEBACK_* settings; a bad one is a one-line error naming the variable, never a traceback."""
    from writeback.errors import ConfigError

    try:
        return load_config()
    except ConfigError as exc:
        raise _fail(str(exc)) from None


DEV_TOOLS_HINT = (
    "the development tools (local stack, CRM simulators, demo) are not installed; they are the "
    "writeback-dev distribution in the source checkout's dev/ directory: run `make deps`, or "
    "`pip install -e dev` from the checkout"
)


def _dev_commands(command: str) -> ModuleType:
    """`writeback_dev.commands`, imported only when a development command runs.

    The runtime never imports the dev tools otherwise: a production install does not have them
    (they are not in the wheel), and `serve` and the operator commands must not need them.
    """
    try:
        return importlib.import_module("writeback_dev.commands")
    except ModuleNotFoundError as exc:
        if exc.name != "writeback_dev":
            raise  # the dev tools are there but broken: show the real error
        raise _fail(f"`writeback {command}` needs {DEV_TOOLS_HINT}", 1) from None


def _logging(verbose: bool, fmt: LogFormat = LogFormat.TEXT) -> None:
    configure_logs(fmt, verbose=verbose)


@app.command()
def serve(
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    log_format: Annotated[
        LogFormat,
        typer.Option("--log-format", envvar="WRITEBACK_LOG_FORMAT", help="text, or json: one JSON object per line"),
    ] = LogFormat.TEXT,
) -> None:
    """Run the consumer service (configured by WRITEBACK_* environment variables).

    Not ready (/readyz 503, the reason logged) while the broker or registry refuses its
    credentials; SIGTERM stops it within WRITEBACK_SHUTDOWN_TIMEOUT_S."""
    from writeback.errors import ConfigError
    from writeback.service import install_stop_handlers
    from writeback.service import serve as run

    _logging(verbose, log_format)
    config = _config()
    stop = threading.Event()
    install_stop_handlers(stop)
    try:
        run(config, stop)
    except ConfigError as exc:  # e.g. a secret reference that names nothing
        raise _fail(str(exc)) from None


@stack_app.command("up")
def stack_up(
    postgres: Annotated[bool, typer.Option(help="Also start a PostgreSQL server.")] = False,
    workdir: Annotated[Path | None, typer.Option(help="Keep logs and data here.")] = None,
) -> None:
    """Start the local stack and print its endpoints; Ctrl-C stops all of it (needs the dev tools)."""
    _dev_commands("stack up").stack_up(postgres=postgres, workdir=workdir)


@app.command()
def dev(
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    workdir: Annotated[Path, typer.Option(help="Stack logs and the SQLite ledger.")] = Path(
        ".stack"
    ),
) -> None:
    """The whole path on this machine: local stack, CRM simulators, sample events every
    few seconds, windows closing every minute, and the service; Ctrl-C stops all of it (needs the
    dev tools)."""
    commands = _dev_commands("dev")
    _logging(verbose)
    commands.run_demo(workdir=workdir)


@app.command()
def publish(
    file: Annotated[str, typer.Argument(help="NDJSON or JSON array of events; - for stdin.")],
    topic: Annotated[
        str | None, typer.Option(help="Publish every event to this topic (types must match).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only.")] = False,
    bootstrap: BootstrapOption = None,
    registry: RegistryOption = None,
) -> None:
    """Validate and publish events; invalid lines are reported and the rest published once."""
    import sys

    from rich.progress import Progress

    from writeback.contract.files import Rejected, read_events
    from writeback.contract.serde import EventSerde, registry_client
    from writeback.errors import WritebackError
    from writeback.kafka.producer import Publisher

    config = _config()
    try:
        stream = sys.stdin if file == "-" else open(file, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror}") from None
    # a configured topic fixes the event type; any other topic takes each line's "type"
    model = config.topic_models().get(topic) if topic else None
    with stream:
        items = list(read_events(stream, topic=model.topic if model else None))
    rejected = [item for _, item in items if isinstance(item, Rejected)]
    events = [item for _, item in items if not isinstance(item, Rejected)]
    for problem in rejected:
        typer.secho(f"line {problem.line}: {problem.reason}", fg=typer.colors.RED, err=True)
    published = 0
    if not dry_run and events:
        try:
            serde = EventSerde(registry_client(registry or config.schema_registry_url, config.registry_config()))
            with Publisher(
                bootstrap or config.bootstrap_servers, serde, config=config.kafka.client_config()
            ) as publisher, Progress(
                transient=True, disable=len(events) < 1000
            ) as progress:
                task = progress.add_task("publishing", total=len(events))
                for event in events:
                    publisher.publish(event, topic=topic)
                    progress.advance(task)
                publisher.flush()
                published = publisher.delivered
        except WritebackError as exc:
            raise _fail(str(exc)) from None
    verb = "valid" if dry_run else "published"
    typer.echo(f"{len(events) if dry_run else published} {verb}, {len(rejected)} rejected")
    if rejected:
        raise typer.Exit(1)


@schemas_app.command("register")
def schemas_register(registry: RegistryOption = None) -> None:
    """Register every schema under its `<topic>-value` subject with BACKWARD compatibility."""
    from writeback.contract.schema_registry import register_all
    from writeback.contract.serde import registry_client

    config = _config()
    results = register_all(registry_client(registry or config.schema_registry_url, config.registry_config()))
    _report_subjects(results)


@schemas_app.command("check")
def schemas_check(registry: RegistryOption = None) -> None:
    """Would the registry accept the local schemas (compatibility check, registers nothing)?"""
    from writeback.contract.schema_registry import check_all
    from writeback.contract.serde import registry_client

    config = _config()
    results = check_all(registry_client(registry or config.schema_registry_url, config.registry_config()))
    _report_subjects(results)


@schemas_app.command("pairs")
def schemas_pairs(
    extensions: Annotated[bool, typer.Option(help="Also the pairs seed 000 adds (Blocked, SocialShare).")] = False,
) -> None:
    """Every Activity Code / Activity Subcode pair a tracking connection writes (seed 001), tab
    separated: the values to create in the integrated product before its first push."""
    from writeback.contract.taxonomy import all_tracking_pairs

    for code, subcode in all_tracking_pairs(include_extensions=extensions):
        typer.echo(f"{code}\t{subcode}")


def _report_subjects(results: list) -> None:
    for result in results:
        colour = typer.colors.GREEN if result.ok else typer.colors.RED
        typer.secho(f"{'ok ' if result.ok else 'FAIL'} {result.subject}: {result.detail}", fg=colour)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


# operator commands: the writeback list, settings, send activity now, retry -------------------

settings_app = typer.Typer(
    help="Writeback Settings: validate, store and show them; exclude a mailing.", no_args_is_help=True
)
app.add_typer(settings_app, name="settings")

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", help="Ledger database URL \\[default: WRITEBACK_DATABASE_URL]"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command()
def migrate(database: DatabaseOption = None) -> None:
    """Bring the ledger database to the newest schema and exit: what a deployment runs once
    before rolling out a new version (`serve` migrates at start too; concurrent runs are safe)."""
    with _ledger(database):
        typer.echo("ledger schema is up to date")


def _parse_since(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO-8601 datetime (e.g. 2026-03-01T09:00:00+00:00)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@contextmanager
def _ledger(database: str | None) -> Iterator[Ledger]:
    """Open (and migrate) the ledger; a database that cannot be reached is a clear error."""
    import sqlalchemy as sa

    from writeback.ledger import Ledger

    url = database or _config().database_url
    try:
        ledger = Ledger.connect(url)
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        safe = sa.make_url(url).render_as_string(hide_password=True)
        reason = getattr(exc, "orig", None) or exc
        raise _fail(f"cannot open the ledger at {safe}: {reason}", 1) from None
    try:
        yield ledger
    finally:
        ledger.close()


def _console() -> Console:
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 250  # piped or captured: keep each row on one line for grep
    return console


@app.command("list")
def list_writebacks(
    status: Annotated[Status | None, typer.Option(help="Only rows with this status.")] = None,
    connection: Annotated[str | None, typer.Option(help="Only this CRM connection.")] = None,
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    mailing: Annotated[str | None, typer.Option(help="Only this mailing id.")] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            parser=_parse_since,
            metavar="DATETIME",
            help="Only rows updated at or after this ISO-8601 time (UTC if no offset is given).",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows, newest first.")] = 100,
    as_json: JsonOption = False,
    database: DatabaseOption = None,
) -> None:
    """The writeback list: pending, in-flight, completed and failed writebacks, newest first."""
    from writeback import listing

    with _ledger(database) as ledger:
        rows = ledger.list(
            status=status,
            connection_id=connection,
            account_id=account,
            mailing_id=mailing,
            since=since,
            limit=limit,
        )
    if as_json:
        typer.echo(listing.rows_json(rows))
    elif rows:
        _console().print(listing.rows_table(rows))
    else:
        typer.echo("no writebacks match", err=True)


@app.command()
def show(
    writeback_id: Annotated[str, typer.Argument(metavar="ID", help="A writeback id from `list`.")],
    as_json: JsonOption = False,
    database: DatabaseOption = None,
) -> None:
    """Every field of one writeback, including the payload a replay would write."""
    import json

    from writeback import listing

    with _ledger(database) as ledger:
        row = ledger.get(writeback_id)
    if row is None:
        raise _fail(f"no writeback with id {writeback_id}", 1)
    typer.echo(json.dumps(listing.row_json(row), indent=2) if as_json else listing.row_detail(row))


def _load(file: Path) -> Settings:
    from writeback.errors import ConfigError
    from writeback.settings import load_settings

    try:
        return load_settings(file)
    except ConfigError as exc:
        raise _fail(str(exc), 1) from None


@settings_app.command("validate")
def settings_validate(
    file: Annotated[Path, typer.Argument(help="Settings file (TOML, or YAML by .yaml/.yml).")],
) -> None:
    """Check a settings file; every problem is named by its field and reason."""
    from writeback import listing

    settings = _load(file)
    typer.echo(f"{file}: valid")
    typer.echo(listing.settings_summary(settings))


@settings_app.command("apply")
def settings_apply(
    file: Annotated[Path, typer.Argument(help="Settings file (TOML, or YAML by .yaml/.yml).")],
    database: DatabaseOption = None,
) -> None:
    """Validate a settings file and store it for every instance; what it leaves out is removed."""
    from writeback import listing
    from writeback import settings as wb_settings
    from writeback.errors import ConfigError

    settings = _load(file)
    with _ledger(database) as ledger:
        try:
            before = _connection_ids(wb_settings.stored(ledger))
        except ConfigError:
            before = set()  # what was stored no longer validates: replacing it is the fix
        wb_settings.apply(ledger, settings, datetime.now(UTC))
        counts = ledger.counts()
    typer.echo(f"stored {file}")
    typer.echo(listing.settings_summary(settings))
    if removed := sorted(before - _connection_ids(settings)):
        typer.echo(f"removed connections: {', '.join(removed)}")
        for connection in removed:
            # kept, not failed: they are written if the connection comes back
            if waiting := sum(n for (c, status), n in counts.items() if c == connection and status in ("pending", "in_flight")):
                typer.echo(f"  {connection}: {waiting} unwritten writebacks stay pending until it is configured again")


def _connection_ids(settings: Settings) -> set[str]:
    return {c.id for a in settings.accounts for c in a.connections}


def _stored(ledger: Ledger) -> Settings:
    from writeback import settings as wb_settings
    from writeback.errors import ConfigError

    try:
        return wb_settings.stored(ledger)
    except ConfigError as exc:
        raise _fail(f"the stored settings are invalid; apply a valid file. {exc}", 1) from None


@settings_app.command("show")
def settings_show(as_json: JsonOption = False, database: DatabaseOption = None) -> None:
    """The settings every instance runs with (as last stored by `settings apply`)."""
    import json

    from writeback import listing

    with _ledger(database) as ledger:
        settings = _stored(ledger)
    if as_json:
        typer.echo(json.dumps(settings.model_dump(mode="json"), indent=2))
    elif settings.accounts:
        _console().print(listing.settings_table(settings))
    else:
        typer.echo("no settings stored (see `writeback settings apply`)", err=True)


ConnectionOption = Annotated[str, typer.Option("--connection", help="The CRM connection.")]
MailingOption = Annotated[str, typer.Option("--mailing", help="The mailing id, as events carry it.")]


@settings_app.command("exclude-mailing")
def settings_exclude_mailing(
    connection: ConnectionOption, mailing: MailingOption, database: DatabaseOption = None
) -> None:
    """Write back none of a mailing's optional activity for a connection (000: writebacks "can be
    disabled if they are not needed for a particular mailing"); subscriber status is never excluded."""
    _change_exclusion(connection, mailing, excluded=True, database=database)


@settings_app.command("include-mailing")
def settings_include_mailing(
    connection: ConnectionOption, mailing: MailingOption, database: DatabaseOption = None
) -> None:
    """Undo `exclude-mailing`: the mailing's activity is written back again as the connection's
    checkboxes say."""
    _change_exclusion(connection, mailing, excluded=False, database=database)


def _change_exclusion(connection: str, mailing: str, *, excluded: bool, database: str | None) -> None:
    """Change one connection's exclusions in the stored settings, validated as a whole, and say
    what the change does not reach: routing happens at ingest, so rows already queued stay."""
    from writeback import settings as wb_settings
    from writeback.errors import ConfigError

    with _ledger(database) as ledger:
        current = _stored(ledger)
        found = current.connection(connection)
        if found is None:
            raise _fail(f"unknown connection {connection} (not in the stored settings; see `writeback settings show`)", 1)
        was = mailing in found[1].writebacks.excluded_mailings
        try:
            changed = wb_settings.with_excluded_mailing(current, connection, mailing, excluded)
        except ConfigError as exc:
            raise _fail(str(exc), 1) from None
        if was != excluded:
            wb_settings.apply(ledger, changed, datetime.now(UTC))
        queued = ledger.unwritten(connection, mailing)
    verb = "excluded from" if excluded else "included in"
    state = "already " if was == excluded else ""
    typer.echo(f"mailing {mailing} {state}{verb} {connection}'s writebacks")
    if was != excluded:
        typer.echo(
            "  applies to activity ingested from now on (running instances pick it up within "
            "WRITEBACK_SETTINGS_TTL_S); a settings file applied later replaces it unless it lists it too"
        )
    if queued:
        typer.echo(f"  {queued} writebacks of the mailing already queued for {connection} are written as before")


@app.command("send-activity")
def send_activity(
    connection: Annotated[str, typer.Option(help="The CRM connection to flush.")],
    mailing: Annotated[str | None, typer.Option(help="Only this mailing's writebacks.")] = None,
    wb_class: Annotated[
        WritebackClass, typer.Option("--class", help="Which writebacks to release.")
    ] = WritebackClass.ACTIVITY,
    database: DatabaseOption = None,
) -> None:
    """"Send activity now": close the connection's open windows so the next flush writes them."""
    with _ledger(database) as ledger:
        if _stored(ledger).connection(connection) is None:
            raise _fail(
                f"unknown connection {connection} (not in the stored settings; "
                "see `writeback settings show`)",
                1,
            )
        released = ledger.close_windows(
            connection, datetime.now(UTC), wb_class=wb_class, mailing_id=mailing
        )
    which = f"{wb_class} writebacks" + (f" of mailing {mailing}" if mailing else "")
    typer.echo(f"{released} {which} released for the next flush of {connection}")


@app.command()
def retry(
    ids: Annotated[list[str], typer.Argument(metavar="ID", help="Failed writeback ids.")],
    database: DatabaseOption = None,
) -> None:
    """Put failed writebacks back in the queue, due now (attempts are kept)."""
    ids = list(dict.fromkeys(ids))
    with _ledger(database) as ledger:
        rows = {i: ledger.get(i) for i in ids}
        failed = [i for i, row in rows.items() if row is not None and row["status"] == Status.FAILED]
        requeued = ledger.requeue(failed, datetime.now(UTC)) if failed else 0
    typer.echo(f"{requeued} of {len(ids)} requeued")
    for writeback_id, row in rows.items():
        if row is None:
            typer.secho(f"  {writeback_id}: unknown", fg=typer.colors.YELLOW, err=True)
        elif row["status"] != Status.FAILED:
            typer.secho(
                f"  {writeback_id}: not failed ({row['status']})", fg=typer.colors.YELLOW, err=True
            )
    if not requeued:
        raise typer.Exit(1)


@app.command()
def replay(
    kind: Annotated[list[str] | None, typer.Option("--kind", help="CRM kind(s) whose dead-letter topic to read, or ingest \\[default: all].")] = None,
    connection: Annotated[str | None, typer.Option(help="Only this connection's letters.")] = None,
    account: Annotated[str | None, typer.Option(help="Only this account's letters.")] = None,
    error_code: Annotated[str | None, typer.Option("--error-code", help="Only letters with this code.")] = None,
    since: Annotated[datetime | None, typer.Option(parser=_parse_since, help="Last failure at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, typer.Option(parser=_parse_since, help="Last failure before (ISO 8601).")] = None,
    ids: Annotated[list[str] | None, typer.Option("--id", help="Only these writeback ids (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Replay at most this many letters.")] = None,
    rate: Annotated[float | None, typer.Option(min=0.001, help="At most N letters per second.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be replayed and why each failed.")] = False,
    group: Annotated[str, typer.Option(help="Consumer group that remembers how far replay got.")] = "writeback-replay",
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Ignore the group's position (safe: completed writebacks are skipped).")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for each batch's outcomes.")] = 60.0,
    database: DatabaseOption = None,
    bootstrap: BootstrapOption = None,
    registry: RegistryOption = None,
) -> None:
    """Replay dead letters: writebacks through the flusher (completed ones are skipped), undecodable records through ingest."""
    from datetime import timedelta

    from confluent_kafka import Consumer
    from rich.progress import Progress

    from writeback import replay as replaying
    from writeback.contract.serde import EventSerde, registry_client
    from writeback.errors import WritebackError
    from writeback.ingest.consume import Ingest
    from writeback.kafka.dead_letters import DeadLetterSink
    from writeback.service import build_flusher
    from writeback.settings import StoredSettings

    config = _config()
    filters = replaying.Filters(connection, account, error_code, since, until, frozenset(ids or ()))
    console = _console()
    with _ledger(database) as ledger:
        try:
            serde = EventSerde(registry_client(registry or config.schema_registry_url, config.registry_config()))
            consumer = Consumer(
                config.kafka_config(bootstrap)
                | {
                    "group.id": group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                }
            )
            sink = DeadLetterSink.connect(
                bootstrap or config.bootstrap_servers, serde, config.dead_letter_prefix, config=config.kafka.client_config()
            )
        except WritebackError as exc:
            raise _fail(str(exc), 1) from None
        settings = StoredSettings(ledger)
        flusher = build_flusher(config, ledger, settings, serde, sink)
        ingest = Ingest(ledger, serde, config.topic_models(), settings, sink)
        replayer = replaying.Replayer(
            consumer,
            ledger,
            serde,
            settings,
            flusher,
            ingest=ingest,
            fetch=replaying.original_reader(bootstrap or config.bootstrap_servers, config=config.kafka.client_config()),
            wait=timedelta(seconds=wait),
        )
        topics = replaying.dead_letter_topics(consumer, config.dead_letter_prefix, kind or ())
        if not topics:
            raise _fail(f"no dead-letter topics {config.dead_letter_prefix}<kind> on the broker", 1)

        def show(planned: replaying.Planned) -> None:
            if dry_run:
                letter = planned.letter
                first = letter.original[0] if letter.original else None
                where = (
                    f"{letter.writeback_id}  {letter.connection_id}"
                    if letter.writeback_id or first is None
                    else f"{first.topic}[{first.partition}]@{first.offset}  ingest"
                )
                console.print(
                    f"{where}  {letter.error_code}: "
                    f"{letter.error_message[:120]}  (attempts {letter.attempts}, replays {letter.replay_count})"
                    f"  -> {planned.verdict}",
                    markup=False,
                )

        try:
            with Progress(console=console, transient=True, disable=dry_run) as progress:
                task = progress.add_task("replaying", total=None)
                summary = replaying.run(
                    replayer,
                    topics,
                    filters,
                    limit=limit,
                    rate=rate,
                    dry_run=dry_run,
                    from_beginning=from_beginning,
                    on_read=lambda n: progress.update(task, advance=n, total=getattr(replayer, "total", None)),
                    on_planned=show,
                )
        finally:
            flusher.close()
            sink.close()
            consumer.close()
    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(summary.verdicts.items())) or "nothing to do"
    outcomes = ", ".join(f"{n} {s}" for s, n in sorted(summary.outcomes.items()))
    typer.echo(f"{summary.read} dead letters read, {summary.matched} matched: {verdicts}")
    if outcomes:
        typer.echo(f"outcomes: {outcomes}")
    if config.pushgateway_url and not dry_run:
        from prometheus_client import REGISTRY, push_to_gateway

        try:
            push_to_gateway(config.pushgateway_url, job="writeback_replay", registry=REGISTRY)
        except OSError as exc:
            typer.echo(f"metrics not pushed to the Pushgateway: {type(exc).__name__}", err=True)


# community lists (seed 003, inbound) -----------------------------------------------------------

community_app = typer.Typer(
    help="Community List Builder lists as target groups in the Online Community folder (seed 003).",
    no_args_is_help=True,
)
app.add_typer(community_app, name="community")
campaign_app = typer.Typer(help="Running campaigns: their groups are synced hourly.", no_args_is_help=True)
community_app.add_typer(campaign_app, name="campaign")
CommunityConnection = Annotated[str, typer.Option("--connection", help="The community connection.")]


@contextmanager
def _community_publish(bootstrap: str | None, registry: str | None) -> Iterator[object]:
    from writeback.adapters.community.sync import kafka_publish
    from writeback.contract.serde import EventSerde, registry_client
    from writeback.errors import WritebackError
    from writeback.kafka.producer import Publisher

    config = ServiceConfig()
    try:
        serde = EventSerde(registry_client(registry or config.schema_registry_url, config.registry_config()))
        publisher = Publisher(bootstrap or config.bootstrap_servers, serde, config=config.kafka.client_config())
    except WritebackError as exc:
        raise _fail(str(exc), 1) from None
    with publisher:
        yield kafka_publish(publisher, config.community_topic)


def _print_sync(report: object, as_json: bool) -> None:
    import json

    from writeback.adapters.community import report as shown

    if as_json:
        typer.echo(json.dumps(shown.sync_json(report), indent=2, default=str))  # type: ignore[arg-type]
        return
    _console().print(shown.sync_table(report))  # type: ignore[arg-type]
    typer.echo(shown.sync_summary(report))  # type: ignore[arg-type]


@community_app.command("sync")
def community_sync(
    connection: CommunityConnection,
    group: Annotated[str | None, typer.Option(help="Only this target group (its name, or its list's name).")] = None,
    as_json: JsonOption = False,
    database: DatabaseOption = None,
    bootstrap: BootstrapOption = None,
    registry: RegistryOption = None,
) -> None:
    """Sync target groups now (003's "Sync Target Group Now" / "Resync Now"): all or nothing,
    with community members vs subscribers and why they differ."""
    _community_sync(connection, group, as_json, database, bootstrap, registry)


def _community_sync(
    connection: str, group: str | None, as_json: bool, database: str | None, bootstrap: str | None, registry: str | None
) -> None:
    from writeback.adapters.community.sync import SyncError, community_connection, sync
    from writeback.errors import WritebackError

    with _ledger(database) as ledger, _community_publish(bootstrap, registry) as publish:
        try:
            account, conn = community_connection(_stored(ledger), connection)
            report = sync(ledger, publish, account, conn, datetime.now(UTC), group=group)  # type: ignore[arg-type]
        except SyncError as exc:
            raise _fail(str(exc), 1) from None
        except WritebackError as exc:
            raise _fail(f"{connection}: the sync is applied but its events wait for the broker: {exc}", 1) from None
    _print_sync(report, as_json)


@community_app.command("refresh")
def community_refresh(
    connection: Annotated[str | None, typer.Option("--connection", help="Only this connection.")] = None,
    database: DatabaseOption = None,
) -> None:
    """003's "Refresh Target Group List": the lists List Builder has now, as target groups
    (members are read by `sync`)."""
    from writeback.adapters.community import report as shown
    from writeback.adapters.community.sync import (
        SyncError,
        community_connection,
        community_connections,
        refresh,
    )

    with _ledger(database) as ledger:
        settings = _stored(ledger)
        try:
            chosen = [community_connection(settings, connection)] if connection else community_connections(settings)
            found = [g for _, conn in chosen for g in refresh(ledger, conn, datetime.now(UTC))]
        except SyncError as exc:
            raise _fail(str(exc), 1) from None
    if not chosen:
        raise _fail("no community connection in the stored settings", 1)
    _console().print(shown.groups_table(found))


@community_app.command("groups")
def community_groups(
    connection: Annotated[str | None, typer.Option("--connection", help="Only this connection.")] = None,
    as_json: JsonOption = False,
    database: DatabaseOption = None,
) -> None:
    """Target groups with their last sync, member count, status and the action 003's Info panel
    offers ("Sync Target Group Now" when never synced, else "Resync Now")."""
    import json

    from writeback.adapters.community import groups
    from writeback.adapters.community import report as shown

    with _ledger(database) as ledger:
        found = groups.groups(ledger, connection)
    if as_json:
        typer.echo(json.dumps([shown.group_json(g) for g in found], indent=2, default=str))
    elif found:
        _console().print(shown.groups_table(found))
    else:
        typer.echo("no target groups yet: run `writeback community refresh`", err=True)


@community_app.command("on-send")
def community_on_send(
    connection: CommunityConnection,
    group: Annotated[str, typer.Option(help="The target group the mailing uses.")],
    as_json: JsonOption = False,
    database: DatabaseOption = None,
    bootstrap: BootstrapOption = None,
    registry: RegistryOption = None,
) -> None:
    """003's "Sync on send/publish": sync the group a mailing is about to use; returns once the
    sync is applied (exit 1, group unchanged, if it could not be)."""
    _community_sync(connection, group, as_json, database, bootstrap, registry)


@campaign_app.command("start")
def community_campaign_start(
    connection: CommunityConnection,
    campaign: Annotated[str, typer.Option(help="The campaign's id.")],
    group: Annotated[list[str], typer.Option(help="A target group the campaign uses (repeat for more).")],
    database: DatabaseOption = None,
) -> None:
    """A campaign is running: `serve` syncs its groups hourly until it stops (003's hourly sync)."""
    from writeback.adapters.community.sync import SyncError
    from writeback.adapters.community.triggers import start_campaign

    with _ledger(database) as ledger:
        try:
            keys = start_campaign(ledger, _stored(ledger), connection, campaign, group, datetime.now(UTC))
        except SyncError as exc:
            raise _fail(str(exc), 1) from None
    typer.echo(f"campaign {campaign} running: {len(keys)} target groups synced hourly")


@campaign_app.command("stop")
def community_campaign_stop(
    connection: CommunityConnection,
    campaign: Annotated[str, typer.Option(help="The campaign's id.")],
    database: DatabaseOption = None,
) -> None:
    """The campaign stopped: its groups are no longer synced hourly for it."""
    from writeback.adapters.community.sync import SyncError
    from writeback.adapters.community.triggers import stop_campaign

    with _ledger(database) as ledger:
        try:
            stopped = stop_campaign(ledger, _stored(ledger), connection, campaign)
        except SyncError as exc:
            raise _fail(str(exc), 1) from None
    typer.echo(f"campaign {campaign} stopped" if stopped else f"campaign {campaign} was not running")


if __name__ == "__main__":
    app()
