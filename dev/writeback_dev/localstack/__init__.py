"""The local stack: a real Kafka broker, a schema registry and (optionally) PostgreSQL.

Shared by `writeback dev`, the pytest fixtures and the benchmarks, so all three exercise the
same real components.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from writeback_dev.localstack import processes
from writeback_dev.localstack.kafka import KafkaBroker, SaslSslListener
from writeback_dev.localstack.postgres import PostgresServer
from writeback_dev.localstack.registry import SchemaRegistry

__all__ = ["KafkaBroker", "LocalStack", "PostgresServer", "SaslSslListener", "SchemaRegistry"]


@dataclass
class LocalStack:
    workdir: Path
    kafka: KafkaBroker
    registry: SchemaRegistry
    postgres: PostgresServer | None
    keep_workdir: bool = False

    @classmethod
    def create(cls, *, with_postgres: bool = False, workdir: Path | None = None) -> LocalStack:
        keep = workdir is not None
        root = workdir or Path(tempfile.mkdtemp(prefix="writeback-stack-"))
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
        return cls(
            workdir=root,
            kafka=KafkaBroker(root / "kafka"),
            registry=SchemaRegistry(root / "registry"),
            postgres=PostgresServer(root / "postgres") if with_postgres else None,
            keep_workdir=keep,
        )

    def start(self) -> LocalStack:
        """Launch every component, then wait for each: the JVMs start side by side.

        Launching happens on this thread because the children's parent-death signal is tied
        to the thread that forked them.
        """
        parts = [p for p in (self.kafka, self.registry, self.postgres) if p is not None]
        try:
            for part in parts:
                part.launch()
            for part in parts:
                processes.start_reliably(part, timeout=90.0)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for part in (self.registry, self.kafka, self.postgres):
            if part is not None:
                part.stop()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
