"""PostgreSQL for tests and local runs: WRITEBACK_PG_URL if given, else a throwaway server.

initdb refuses to run as root, so as root the server runs as the `postgres` system user
(created by the Debian package) on a private data directory and a free loopback port.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from writeback_dev.localstack import processes
from writeback_dev.localstack.errors import StackError

DATABASE = "writeback"


def server_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise StackError(
        "PostgreSQL server binaries not found: apt-get install -y postgresql, "
        "or set WRITEBACK_PG_URL to an existing database"
    )


@dataclass
class PostgresServer:
    workdir: Path
    port: int = field(default_factory=processes.free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def run_as(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        user = self.run_as or pwd.getpwuid(os.geteuid()).pw_name
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "postgres.log"

    def start(self, timeout: float = 90.0) -> PostgresServer:
        self.launch()
        processes.start_reliably(self, timeout)
        return self

    def new_ports(self) -> None:
        self.port = processes.free_port()

    def launch(self) -> None:
        bindir = server_bin()
        data = self.workdir / "pgdata"
        shutil.rmtree(data, ignore_errors=True)  # a retry runs initdb afresh
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            os.chown(self.workdir, pw.pw_uid, pw.pw_gid)
        result = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-E", "UTF8", "--no-sync"],
            capture_output=True,
            text=True,
            user=self.run_as,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"initdb failed: {result.stderr.strip()[-2000:]}")
        argv = [
            str(bindir / "postgres"),
            "-D", str(data),
            "-h", "127.0.0.1",
            "-p", str(self.port),
            "-k", str(self.workdir),
            "-c", "fsync=off",
            "-c", "max_connections=200",
        ]  # fmt: skip
        self.proc = processes.spawn(argv, self.log_path, user=self.run_as)

    def wait_ready(self, timeout: float = 60.0) -> None:
        processes.wait_until(
            self._create_database,
            what=f"PostgreSQL on port {self.port}",
            timeout=timeout,
            proc=self.proc,
            log_path=self.log_path,
        )

    def _create_database(self) -> bool:
        user = self.run_as or pwd.getpwuid(os.geteuid()).pw_name
        dsn = f"host=127.0.0.1 port={self.port} user={user} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
        return True

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM would wait for every client to leave.
        processes.stop(self.proc, sig=signal.SIGINT)
        self.proc = None
