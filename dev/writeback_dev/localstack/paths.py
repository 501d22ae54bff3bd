"""Where the local stack keeps its build recipes (deploy/local) and caches."""

from __future__ import annotations

import os
from pathlib import Path

from writeback_dev.localstack.errors import StackError


def deploy_dir() -> Path:
    """deploy/local of the source checkout (this file is dev/writeback_dev/localstack/paths.py);
    the stack is a developer tool, installed editable from the checkout, never from a wheel."""
    override = os.environ.get("WRITEBACK_DEPLOY_DIR")
    candidates = [Path(override)] if override else []
    candidates.append(Path(__file__).resolve().parents[3] / "deploy" / "local")
    for candidate in candidates:
        if (candidate / "kafka" / "pom.xml").exists():
            return candidate
    raise StackError(
        "deploy/local not found: install the dev tools from a source checkout (pip install -e dev) "
        "or set WRITEBACK_DEPLOY_DIR"
    )


def maven_argv(*goals: str) -> list[str]:
    return ["mvn", "-q", "-B", "-s", str(deploy_dir() / "maven-settings.xml"), *goals]
