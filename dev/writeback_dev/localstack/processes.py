"""Child-process plumbing shared by the local stack's components.

Children are started in their own session (so a terminal Ctrl-C reaches only us and we shut
them down in order) with a parent-death signal (so a killed test run leaves nothing behind).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from writeback_dev.localstack.errors import StackError

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
    return subprocess.Popen(
        list(argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        preexec_fn=_die_with_parent,
        user=user,
    )


def stop(
    proc: subprocess.Popen[bytes] | None,
    timeout: float = 20.0,
    sig: signal.Signals = signal.SIGTERM,
) -> None:
    """Signal, wait, then SIGKILL: brokers flush their logs on a clean stop."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode}{_tail(log_path)}")
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not ready yet; any failure means "try again"
            pass
        time.sleep(0.25)
    raise StackError(f"{what} was not ready within {timeout:.0f}s{_tail(log_path)}")


def _tail(log_path: Path | None, lines: int = 30) -> str:
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return f"; last log lines from {log_path}:\n" + "\n".join(text)


class Component(Protocol):
    def launch(self) -> None: ...
    def wait_ready(self, timeout: float = ...) -> None: ...
    def stop(self) -> None: ...
    def new_ports(self) -> None: ...


def start_reliably(component: Component, timeout: float, attempts: int = 3) -> None:
    """Start, retrying on fresh ports: a free port found by binding to 0 can be taken by
    someone else before the JVM binds it, and a busy CI machine makes that likelier."""
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            component.new_ports()
            component.launch()
        try:
            component.wait_ready(timeout)
            return
        except StackError:
            component.stop()
            if attempt == attempts:
                raise


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"`{name}` not found on PATH: {hint}")
    return path


def run_checked(argv: Sequence[str], what: str, *, cwd: Path | None = None, timeout: float) -> None:
    result = subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-40:]
        raise StackError(f"{what} failed (exit {result.returncode}):\n" + "\n".join(output))
