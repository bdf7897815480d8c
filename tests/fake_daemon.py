"""A stand-in Docker daemon on a unix socket, for the faults a real one will not show on demand:
a daemon that accepts connections and never answers, one that answers 500 under load, one that
answers 4xx. Speaks just enough HTTP/1.1 for docker-py; every request is recorded.
"""

from __future__ import annotations

import json
import socketserver
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Reply = tuple[int, Any] | None
"""(status, JSON body), or None: never answer."""
Route = Callable[[str, str], Reply]
"""(method, path without the /vX.Y prefix) -> the reply."""

VERSION = {"ApiVersion": "1.41", "MinAPIVersion": "1.12", "Version": "20.10.0"}


def handshake(method: str, path: str) -> Reply:
    """What docker.from_env() and ping() ask first; anything else: no answer."""
    if path == "/version":
        return 200, VERSION
    if path == "/_ping":
        return 200, "OK"
    return None


def hang(method: str, path: str) -> Reply:
    return None


@dataclass
class FakeDaemon:
    socket: Path
    requests: list[tuple[str, str]] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def count(self, method: str, path: str) -> int:
        return self.requests.count((method, path))


@contextmanager
def fake_daemon(route: Route) -> Iterator[FakeDaemon]:
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="fd-", dir="/tmp") as tmp:  # short: sun_path
        daemon = FakeDaemon(Path(tmp) / "docker.sock")

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode("latin-1").split()
                if len(line) < 2:
                    return
                method, target = line[0], line[1]
                length = 0
                while (header := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                self.rfile.read(length)
                path = target.split("?", 1)[0]
                if path.startswith("/v1."):
                    path = "/" + path.split("/", 2)[2]
                daemon.requests.append((method, path))
                reply = route(method, path)
                if reply is None:
                    stop.wait()  # hung: the connection stays open, nothing comes back
                    return
                status, body = reply
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                kind = "text/plain" if isinstance(body, str) else "application/json"
                self.wfile.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                    + data
                )

        server = socketserver.ThreadingUnixStreamServer(str(daemon.socket), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield daemon
        finally:
            stop.set()
            server.shutdown()
            server.server_close()
