"""A Confluent-compatible Schema Registry: Apicurio Registry 2.4.2 rebuilt from Maven Central.

Confluent's registry is not on Maven Central and no other registry server is reachable from
these machines (see shared/notes/local-stack.md); Apicurio serves the Confluent API under
/apis/ccompat/v7. Storage is in-memory, which suits a per-run test stack.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from writeback_dev.localstack import processes
from writeback_dev.localstack.paths import deploy_dir, maven_argv

CCOMPAT_PATH = "/apis/ccompat/v7"


def runner_jar() -> Path | None:
    return next((deploy_dir() / "registry" / "target").glob("*-runner.jar"), None)


def ensure_built() -> Path:
    """Build once (about 3 minutes cold); later runs reuse target/ and ~/.m2."""
    jar = runner_jar()
    if jar is None:
        processes.require_tool("mvn", "install Maven (apt-get install maven) and a JDK 17+")
        processes.run_checked(
            maven_argv("-DskipTests", "package"),
            "building the schema registry with Maven",
            cwd=deploy_dir() / "registry",
            timeout=1200,
        )
        jar = runner_jar()
    assert jar is not None
    return jar


@dataclass
class SchemaRegistry:
    workdir: Path
    port: int = field(default_factory=processes.free_port)
    heap: str = "256m"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """What Confluent clients take as `url`."""
        return self.base_url + CCOMPAT_PATH

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    def start(self, timeout: float = 90.0) -> SchemaRegistry:
        self.launch()
        processes.start_reliably(self, timeout)
        return self

    def new_ports(self) -> None:
        self.port = processes.free_port()

    def launch(self) -> None:
        processes.require_tool("java", "install a JDK 17+")
        jar = ensure_built()
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            "java",
            f"-Xmx{self.heap}",
            "-XX:TieredStopAtLevel=1",
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={self.port}",
            "-Dquarkus.log.level=WARN",
            "-jar",
            str(jar),
        ]
        self.proc = processes.spawn(argv, self.log_path, cwd=self.workdir)

    def wait_ready(self, timeout: float = 90.0) -> None:
        processes.wait_until(
            self._ready,
            what=f"schema registry on {self.base_url}",
            timeout=timeout,
            proc=self.proc,
            log_path=self.log_path,
        )
        # Apicurio's global default is NONE; Confluent's (and our contract's) is BACKWARD.
        httpx.put(f"{self.url}/config", json={"compatibility": "BACKWARD"}).raise_for_status()

    def _ready(self) -> bool:
        return httpx.get(f"{self.base_url}/health/ready", timeout=2).status_code == 200

    def stop(self) -> None:
        processes.stop(self.proc)
        self.proc = None
