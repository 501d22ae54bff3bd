"""Renders the Grafana dashboard's main panels from a real Prometheus into a PNG (matplotlib), so
the README can show what the dashboard looks like before anyone deploys it.

The panels and their queries are read from `deploy/grafana/writeback.json`, so the picture is
of the dashboard as shipped. `tests/deploy/test_prometheus_scrape.py` renders it from the
Prometheus that scraped its end-to-end run; with `WRITEBACK_DASHBOARD_PNG=docs/dashboard.png`
it writes the README's copy.

    python -m writeback_dev.dashboard --prometheus http://127.0.0.1:9090 --minutes 15 --out docs/dashboard.png
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import typer

from writeback_dev.localstack.prometheus import PrometheusAPI

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "writeback.json"
MAIN_PANELS = (
    "Events consumed per second, by topic",
    "Writebacks written per second, by kind and status",
    "Consumer lag (records), by topic",
    "Pending writebacks, by connection and class",
    "End-to-end latency (occurred_at → written), by kind",
    "CRM request latency, by kind",
    "Outcomes with an error code, per second",
    "Dead letters in the last hour",
)


def panels(path: Path = DASHBOARD) -> list[dict]:
    return [p for p in json.loads(path.read_text())["panels"] if p["type"] == "timeseries"]


def metric_names(text: str) -> set[str]:
    """The metric names a PromQL expression reads (writeback's own)."""
    return set(re.findall(r"\bwriteback_[a-z0-9_]+", text))


def _legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip() or "value"


def render(
    prometheus: PrometheusAPI,
    out: Path,
    start: float,
    end: float,
    titles: Sequence[str] = MAIN_PANELS,
    step: float | None = None,
) -> int:
    """Draw the named panels over [start, end]; returns how many series were drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    chosen = [p for title in titles for p in panels() if p["title"] == title]
    step = step or max(1.0, (end - start) / 300)
    cols = 2
    rows = math.ceil(len(chosen) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(14, 3.2 * rows), squeeze=False)
    drawn = 0
    for ax, panel in zip(axes.flat, chosen, strict=False):
        for target in panel["targets"]:
            for series in prometheus.query_range(target["expr"], start, end, step):
                points = [(datetime.fromtimestamp(float(t), UTC), float(v)) for t, v in series["values"]]
                points = [(t, v) for t, v in points if math.isfinite(v)]
                if not any(v for _, v in points):
                    continue  # zero throughout (a series initialised at zero): noise in a picture
                ax.plot([t for t, _ in points], [v for _, v in points], label=_legend(target.get("legendFormat", ""), series["metric"]))
                drawn += 1
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        ax.set_title(panel["title"] + (f" [{unit}]" if unit in ("s", "reqps", "ops") else ""), fontsize=10)
        ax.set_xlim(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.text(0.5, 0.5, "nothing but zeros in this run", ha="center", va="center", transform=ax.transAxes, color="gray")
    for ax in list(axes.flat)[len(chosen) :]:
        ax.axis("off")
    fig.suptitle("writeback dashboard (deploy/grafana/writeback.json), rendered from Prometheus", fontsize=12)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return drawn


def main(
    prometheus: str = typer.Option(..., help="base URL of a Prometheus that scrapes writeback"),
    minutes: float = typer.Option(15.0, help="how far back to draw"),
    out: Path = typer.Option(Path("docs/dashboard.png")),
) -> None:
    end = time.time()
    drawn = render(PrometheusAPI(prometheus), out, end - minutes * 60, end)
    typer.echo(f"{out}: {drawn} series")


if __name__ == "__main__":
    typer.run(main)
