"""A throwaway Prometheus on loopback that scrapes `writeback serve` instances every second, with
the alert rules loaded: what the integration test and the dashboard renderer query.

Prometheus is Debian's `prometheus` package (deploy/local/install-system-deps.sh installs it).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from writeback_dev.localstack import processes

RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus" / "alerts.yml"


@dataclass
class Prometheus:
    targets: Sequence[str]  # base URLs of /metrics endpoints, e.g. http://127.0.0.1:9464
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="prometheus-")))
    interval: str = "1s"
    port: int = field(default_factory=processes.free_port)
    rule_files: Sequence[Path] = (RULES,)

    def __post_init__(self) -> None:
        self._proc: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Prometheus:
        binary = processes.require_tool("prometheus", "install Debian's `prometheus` package (make system-deps)")
        config = {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": "writeback",
                    "static_configs": [{"targets": [urlsplit(t).netloc for t in self.targets]}],
                }
            ],
        }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = self.workdir / "prometheus.log"
        self._proc = processes.spawn(
            [
                binary,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
            ],
            log,
        )
        processes.wait_until(
            lambda: httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200,
            what="prometheus",
            timeout=timeout,
            proc=self._proc,
            log_path=log,
        )
        return self

    def stop(self) -> None:
        processes.stop(self._proc)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def api(self) -> PrometheusAPI:
        return PrometheusAPI(self.url)



@dataclass(frozen=True)
class PrometheusAPI:
    """Prometheus' HTTP API, of this launcher's server or any other."""

    url: str

    def _get(self, path: str, **params: Any) -> Any:
        reply = httpx.get(f"{self.url.rstrip('/')}/api/v1/{path}", params=params, timeout=30).json()
        if reply.get("status") != "success":
            raise RuntimeError(f"prometheus {path} {json.dumps(params)}: {reply.get('error')}")
        return reply["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        return list(self._get("query", query=expr)["result"])

    def value(self, expr: str) -> float | None:
        """The single value of an instant query (None when it returns nothing)."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return list(self._get("query_range", query=expr, start=start, end=end, step=step)["result"])

    def metric_names(self) -> set[str]:
        return set(self._get("label/__name__/values"))

    def targets_up(self) -> bool:
        active = self._get("targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)
