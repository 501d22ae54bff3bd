"""The Prometheus alert rules: valid (`promtool check rules`), firing and not firing as their
unit tests say (`promtool test rules`), and using only metrics the service exports. promtool
comes from the Debian package `prometheus` (deploy/local/install-system-deps.sh); these tests
fail, not skip, without it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client import Counter

from writeback import metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, (
        "promtool is missing: install the Debian package `prometheus` (make system-deps)"
    )
    return subprocess.run(
        [promtool, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def _rules() -> list[dict]:
    return [
        rule
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    ]


def _exported() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names.add(value._name + "_total")
        elif hasattr(value, "_name") and hasattr(value, "_type"):
            names.add(value._name)
    return names


def test_rules_are_valid() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert {rule["alert"] for rule in _rules()} == tested


def test_rules_use_only_exported_metrics() -> None:
    exported = _exported()
    assert (
        "writeback_dead_letters_total" in exported
        and "writeback_consumer_lag" in exported
    )
    used = {
        name
        for rule in _rules()
        for name in re.findall(r"writeback_[a-z_]+", rule["expr"])
    }
    assert used, "no writeback metric found in the rules"
    assert used <= exported, (
        f"not exported by writeback/metrics.py: {sorted(used - exported)}"
    )


def test_every_alert_is_labelled_and_has_a_runbook_section() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in _rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/runbook.md#{rule['alert'].lower()}", url
        assert url.split("#", 1)[1] in anchors, f"{rule['alert']}: no runbook section"
