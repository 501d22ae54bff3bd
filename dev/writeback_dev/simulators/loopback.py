"""An ASGI app served by uvicorn on a loopback socket of its own: in a background thread for
tests, or on the calling thread for `python -m`. Every simulator runs on one."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


class LoopbackServer:
    def __init__(self, app: Any, host: str, port: int, name: str, tls: tuple[str, str] | None = None) -> None:
        """`tls`: (certificate chain file, key file) to serve https."""
        self.app, self.host, self.name, self.tls = app, host, name, tls
        self._requested_port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError(f"the {self.name} is not started")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        sock = self._bind()
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            **({"ssl_certfile": self.tls[0], "ssl_keyfile": self.tls[1]} if self.tls else {}),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name=self.name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self.name} did not start")
            time.sleep(0.01)

    def serve_forever(self) -> None:
        sock = self._bind()
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="info", lifespan="off"))
        self._server.run(sockets=[sock])

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def _bind(self) -> socket.socket:
        """TCP_NODELAY on the listener, inherited by accepted sockets on Linux: uvicorn writes
        headers and body separately, and Nagle plus the client's delayed ACK would otherwise
        stall every response by ~40 ms."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self._requested_port))
        self._socket = sock
        return sock
