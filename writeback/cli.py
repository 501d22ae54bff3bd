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


if __name__ == "__main__":
    app()
