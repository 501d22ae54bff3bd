"""`writeback dev` (what `make run` runs) starts the stack and the service; Ctrl-C stops all of it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def test_python_dash_m_writeback_is_the_writeback_command_and_its_help_lists_the_service_commands():
    out = subprocess.run(
        [sys.executable, "-m", "writeback", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "Usage: writeback " in out.stdout
    for command in ("serve", "dev", "stack"):
        assert command in out.stdout


@pytest.mark.timeout(400)
def test_dev_shows_the_whole_path_and_ctrl_c_leaves_nothing_running(tmp_path):
    workdir = tmp_path / "devstack"
    proc = subprocess.Popen(
        [sys.executable, "-m", "writeback.cli", "dev", "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "consuming" in line or not line:
                break
        assert any("consuming" in line for line in lines), "".join(lines)
        # sample events flow; a minute's window closes; notes and correspondence reach the simulators
        status = re.compile(
            r"writeback list: .*\b([1-9]\d*) completed.* \| Salesforce: ([1-9]\d*) notes.*"
            r"\| netFORUM: ([1-9]\d*) correspondence rows"
        )
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if status.search(line) or not line:
                break
        assert any(status.search(line) for line in lines), "".join(lines[-40:])
        assert any("published" in line for line in lines)
        assert len(_processes_mentioning(str(workdir))) >= 2, "broker and registry are running"
    except BaseException:
        proc.send_signal(signal.SIGINT)  # never leave the demo and its stack running
        proc.communicate(timeout=60)
        raise

    proc.send_signal(signal.SIGINT)
    remaining, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines) + remaining
    assert "stopped" in remaining
    time.sleep(0.5)
    assert _processes_mentioning(str(workdir)) == []
