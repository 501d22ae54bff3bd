"""What `writeback stack up` and `writeback dev` do.

The `writeback` CLI keeps those two commands, so `make run` and the README's commands stay the
same, but their bodies live here: they start the local stack and a CRM simulator, which a
production install does not have. The runtime CLI imports this module only when one of them
runs, and says how to install the dev tools when it is missing.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import typer

from writeback.config import ServiceConfig
from writeback.ledger import Ledger
from writeback.service import install_stop_handlers
from writeback.service import serve as run_service
from writeback.settings import apply
from writeback_dev import demo
from writeback_dev.localstack import LocalStack
from writeback_dev.simulators.netforum import NetforumSim
from writeback_dev.simulators.salesforce import SalesforceSim


def stack_up(*, postgres: bool, workdir: Path | None) -> None:
    """Start the local stack, print its endpoints as WRITEBACK_* variables, wait for Ctrl-C."""
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


def run_demo(*, workdir: Path) -> None:
    """The whole path on this machine: stack, Salesforce and netFORUM simulators, sample events,
    the service."""
    stop = threading.Event()
    workdir = workdir.resolve()
    with LocalStack.create(workdir=workdir) as stack, SalesforceSim() as sim, NetforumSim() as nf:
        install_stop_handlers(stop)
        config = ServiceConfig(
            bootstrap_servers=stack.kafka.bootstrap,
            schema_registry_url=stack.registry.url,
            database_url=f"sqlite:///{workdir / 'writeback.db'}",
            metrics_port=0,
            http_host="127.0.0.1",
        )
        ledger = Ledger.connect(config.database_url)
        apply(ledger, demo.settings(sim, nf), datetime.now(UTC))
        ledger.close()
        typer.echo(f"Kafka {stack.kafka.bootstrap}, registry {stack.registry.url}")
        typer.echo(f"Salesforce simulator {sim.login_url}, netFORUM xWeb simulator {nf.endpoint}")
        typer.echo(f"ledger {config.database_url}; logs in {workdir}; Ctrl-C stops everything")
        typer.echo("windows close every minute; try `writeback list --database " + config.database_url + "`")
        demo.start(config, sim, nf, stop)
        run_service(config, stop)
    typer.echo("stopped")
