"""The `writeback` command line: one entry point for operators, platform teams and developers."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Annotated

import typer

from writeback.config import ServiceConfig

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


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


@app.command()
def serve(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run the consumer service (configured by WRITEBACK_* environment variables)."""
    from writeback.service import install_stop_handlers
    from writeback.service import serve as run

    _logging(verbose)
    stop = threading.Event()
    install_stop_handlers(stop)
    run(ServiceConfig(), stop)


@stack_app.command("up")
def stack_up(
    postgres: Annotated[bool, typer.Option(help="Also start a PostgreSQL server.")] = False,
    workdir: Annotated[Path | None, typer.Option(help="Keep logs and data here.")] = None,
) -> None:
    """Start the local stack and print its endpoints; Ctrl-C stops all of it."""
    from writeback.localstack import LocalStack
    from writeback.service import install_stop_handlers

    stop = threading.Event()
    with LocalStack.create(with_postgres=postgres, workdir=workdir) as stack:
        install_stop_handlers(stop)
        typer.echo(f"WRITEBACK_BOOTSTRAP_SERVERS={stack.kafka.bootstrap}")
        typer.echo(f"WRITEBACK_SCHEMA_REGISTRY_URL={stack.registry.url}")
        if stack.postgres is not None:
            typer.echo(f"WRITEBACK_DATABASE_URL={stack.postgres.url}")
        typer.echo(f"logs: {stack.workdir}  (Ctrl-C stops everything)")
        stop.wait()
    typer.echo("stack stopped")


@app.command()
def dev(
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    workdir: Annotated[Path, typer.Option(help="Stack logs and the SQLite ledger.")] = Path(
        ".stack"
    ),
) -> None:
    """Start the local stack and the service on embedded defaults; Ctrl-C stops all of it."""
    from writeback.localstack import LocalStack
    from writeback.service import install_stop_handlers
    from writeback.service import serve as run

    _logging(verbose)
    stop = threading.Event()
    workdir = workdir.resolve()
    with LocalStack.create(workdir=workdir) as stack:
        install_stop_handlers(stop)
        config = ServiceConfig(
            bootstrap_servers=stack.kafka.bootstrap,
            schema_registry_url=stack.registry.url,
            database_url=f"sqlite:///{workdir / 'writeback.db'}",
        )
        typer.echo(f"Kafka {stack.kafka.bootstrap}, registry {stack.registry.url}")
        typer.echo(f"ledger {config.database_url}; logs in {workdir}; Ctrl-C stops everything")
        run(config, stop)
    typer.echo("stopped")


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

    from writeback.errors import WritebackError
    from writeback.producers import Publisher
    from writeback.producers.files import Rejected, read_events
    from writeback.serde import EventSerde, registry_client

    config = ServiceConfig()
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
            serde = EventSerde(registry_client(registry or config.schema_registry_url))
            with Publisher(bootstrap or config.bootstrap_servers, serde) as publisher, Progress(
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
    from writeback.registry import register_all
    from writeback.serde import registry_client

    results = register_all(registry_client(registry or ServiceConfig().schema_registry_url))
    _report_subjects(results)


@schemas_app.command("check")
def schemas_check(registry: RegistryOption = None) -> None:
    """Would the registry accept the local schemas (compatibility check, registers nothing)?"""
    from writeback.registry import check_all
    from writeback.serde import registry_client

    results = check_all(registry_client(registry or ServiceConfig().schema_registry_url))
    _report_subjects(results)


def _report_subjects(results: list) -> None:
    for result in results:
        colour = typer.colors.GREEN if result.ok else typer.colors.RED
        typer.secho(f"{'ok ' if result.ok else 'FAIL'} {result.subject}: {result.detail}", fg=colour)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
