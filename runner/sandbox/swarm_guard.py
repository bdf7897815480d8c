"""What the Swarm backend watches while a task runs: its log, live, and its disk, on its node.

Both travel the one way a swarm carries anything from a node to the manager without a shared
disk: a service's log.

- The task's log is followed while it runs (`GET /services/ID/logs?follow=1`), into the same
  LogPump as a container's attach stream, so a flood keeps its head and its last 4 KiB.
- The disk guard is a service of its own on the task's node (placement constraint), with the
  task's volumes mounted read-only at the task's paths, running scripts/disk_guard.py: the
  container backend's DiskGuard walk and schedule; over the limit it kills the task's
  container through its node's Docker socket. It says `base`, `exceeded` and `final` on
  stdout; the coordinator follows that log (and stops the task's service itself if the guard
  could not kill its container), and stops the guard (SIGTERM: a last look, `final`) once
  the task ended. The task cannot reach the guard: no network in common, no process in
  common, and the guard reads its volumes without following a symlink.

Measured here (Docker 20.10): a followed service log does not end when the service's task does,
nor when the service is removed, so the follower is closed by shutting its socket down; and it
stops carrying anything once the daemon rotates the container's json-file (a flood past
`max-size`), as the container backend found with `docker logs -f`. So when a task's last line
(wrap.sh's metrics line) did not come, the end of its log is read once more (`tail`) and
what comes after the follower's last bytes is fed on: a flood keeps its head and its end.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import structlog

from runner.sandbox.logpump import TAIL
from runner.sandbox.options import CACHE, OUT, WORK

log = structlog.get_logger()

WATCHED = (WORK, OUT, CACHE)
"""What a task can write that outlives it, as the guard sees it too (same paths, read-only:
a new volume mounted first by the guard takes the ownership of the collector image's
directory at that path, the one the task would give it)."""
NODE_SOCKET = "/var/run/docker.sock"
"""Each node's Docker engine, where the guard kills its task's container."""
GUARD_STOP_S = 60
"""Grace the guard gets on SIGTERM for its last walk (then the daemon kills it)."""


class Follow:
    """A service's log (stdout and stderr, demultiplexed) fed to `sink` by a thread of its own
    until close(). `sink` consumes an iterable of byte chunks (LogPump.run, GuardLog.run)."""

    def __init__(
        self,
        api: docker.APIClient,
        service: str,
        sink: Callable[[Iterable[bytes]], Any],
        rest: Callable[[bytes], Iterable[bytes]] | None = None,
    ):
        self.api: Any = api  # its private helpers are used (start()), which no stub names
        self.service, self.sink, self.rest = service, sink, rest
        """`rest(seen)`: what to feed after the stream ended, given its last bytes."""
        self.seen = b""
        """The last 4 KiB the stream carried."""
        self.last = time.monotonic()
        """When the last chunk came (monotonic)."""
        self._response: Any = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"follow-{service}", daemon=True)

    def start(self) -> Follow:
        # docker-py's service_logs() hides the response, and only its socket can end a
        # follow (see the module's docstring): the same request, its response kept.
        params = {"follow": 1, "stdout": 1, "stderr": 1, "timestamps": 0, "tail": "all"}
        url = self.api._url("/services/{0}/logs", self.service)
        self._response = self.api._get(url, params=params, stream=True)
        self.api._raise_for_status(self._response)
        self._thread.start()
        return self

    def _chunks(self) -> Iterator[bytes]:
        try:
            for chunk in self.api._multiplexed_response_stream_helper(self._response):
                self.last = time.monotonic()
                self.seen = (self.seen + chunk)[-TAIL:]
                yield chunk
        except Exception as exc:  # close() ends it with whatever http says
            if not self._closing:
                log.warning("a followed service log ended", service=self.service, error=repr(exc))
        if self.rest is not None:
            yield from self.rest(self.seen)

    def _run(self) -> None:
        try:
            self.sink(self._chunks())
        except Exception as exc:  # a thread boundary: said, never raised
            log.warning("a service log's reader failed", service=self.service, error=repr(exc))

    def quiet_for(self) -> float:
        return time.monotonic() - self.last

    def settle(self, done: Callable[[], bool], quiet: float, bound: float) -> None:
        """Wait until `done()` and no chunk for `quiet` seconds, at most `bound` seconds: the
        daemon sends a task's last lines a moment after its status says it ended."""
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline and self._thread.is_alive():
            if done() and self.quiet_for() >= quiet:
                return
            time.sleep(0.05)

    def close(self) -> None:
        """End the stream and wait (bounded) for the sink to finish."""
        if self._response is None:
            return
        self._closing = True
        with contextlib.suppress(Exception):
            raw = self.api._get_raw_response_socket(self._response)
            getattr(raw, "_sock", raw).shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self._response.close()
        self._thread.join(timeout=30)


def after(seen: bytes, tail: bytes, key: int = 256) -> bytes:
    """What of `tail` (the end of a log, read again) comes after `seen` (the last bytes a
    follower got): after the last place where seen's last `key` bytes occur in it; all of it
    when they do not (a gap: the follower lost its place)."""
    mark = seen[-key:]
    at = tail.rfind(mark) if mark else -1
    return tail if at < 0 else tail[at + len(mark) :]


@dataclass
class GuardLog:
    """The guard's reports, parsed as they come; `kill(killed)` runs (once) on `exceeded`
    with the number of containers the guard killed itself (0: none left; -1: it failed)."""

    kill: Callable[[int], None]
    base: int | None = None
    exceeded: bool = False
    added: int | None = None
    peak: int | None = None
    final: bool = False
    oom: bool = False
    """The task's container was killed by its memory limit (read on its node)."""
    lines: list[str] = field(default_factory=list)
    """All it said (kept in the sandbox's state directory as guard.log)."""
    errors: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def run(self, chunks: Iterable[bytes]) -> None:
        partial = b""
        for chunk in chunks:
            *lines, partial = (partial + chunk).split(b"\n")
            for line in lines:
                self.line(line.decode("utf-8", "replace").strip())

    def line(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        numbers = [int(n) for n in rest.split() if n.lstrip("-").isdigit()]
        kill, killed = False, -1
        with self.changed:
            self.lines.append(line[:500])
            if word == "base" and numbers:
                self.base = numbers[0]
            elif word == "exceeded" and numbers:
                kill = not self.exceeded
                self.exceeded, self.added = True, numbers[0]
                killed = numbers[1] if len(numbers) > 1 else killed
            elif word == "oom" and numbers:
                self.oom = bool(numbers[0])
            elif word == "final" and len(numbers) == 2:
                self.added, self.peak, self.final = numbers[0], numbers[1], True
            elif line:
                self.errors.append(line[:500])  # a traceback: said when the guard fails
            self.changed.notify_all()
        if kill:
            log.warning("disk limit exceeded", added=self.added)
            try:
                self.kill(killed)
            except Exception as exc:  # a thread boundary: report, never lose the guard
                log.error("disk guard could not stop the task", error=repr(exc))

    def wait(self, ready: Callable[[GuardLog], bool], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: ready(self), timeout)


@dataclass
class Guard:
    """A running guard: its service, what it said, the follower of its log."""

    service: str
    log: GuardLog
    follow: Follow


def guard_template(
    task: dict[str, Any],
    *,
    service: str,
    image: str,
    network: str,
    disk: int,
    script: dict[str, Any],
    labels: dict[str, str],
) -> dict[str, Any]:
    """The guard's TaskTemplate from its task's (`service`): the same node, the task's /work,
    /out and /cache volumes read-only at the same paths, the node's Docker socket (to kill the
    task's container), the collector image, root with DAC_READ_SEARCH only (it must read what
    the task chmods 000), SIGTERM for its last look, and `network` (the run's depot network:
    never the task's, whose env and configs it does not get either)."""
    container = task["ContainerSpec"]
    mounts = [
        m | {"ReadOnly": True}
        for m in container["Mounts"]
        if m["Type"] == "volume" and m["Target"] in WATCHED
    ]
    watched = ":".join(m["Target"] for m in mounts)
    # The node's own Docker socket (not the coordinator's: each node's guard gets its node's),
    # so the kill is as quick as the container backend's: the guard is the coordinator's agent
    # on the node, in the collector image, reachable from no task.
    mounts.append({"Type": "bind", "Source": NODE_SOCKET, "Target": NODE_SOCKET})
    mounts.append({"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 16 << 20}})
    return {
        "ContainerSpec": {
            "Image": image,
            "Command": ["python3", "-I", "-S", "/runner/disk_guard.py"],
            "Env": [
                f"RUNNER_DISK={disk}",
                f"RUNNER_GUARD_PATHS={watched}",
                f"RUNNER_GUARD_SERVICE={service}",
                f"RUNNER_GUARD_SOCKET={NODE_SOCKET}",
                "HOME=/tmp",
            ],
            "Dir": "/",
            "User": "0:0",
            "ReadOnly": True,
            "CapabilityDrop": ["ALL"],
            "CapabilityAdd": ["CAP_DAC_READ_SEARCH"],
            "Init": True,
            "Mounts": mounts,
            "Configs": [script],
            "StopSignal": "SIGTERM",
            "StopGracePeriod": GUARD_STOP_S * 10**9,
            "Labels": labels,
        },
        # Its walk keeps itself to a tenth of a core (the schedule): these are a backstop.
        "Resources": {"Limits": {"NanoCPUs": int(0.5e9), "MemoryBytes": 256 << 20, "Pids": 16}},
        "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
        "Placement": task["Placement"],
        "Networks": [{"Target": network}],
        "LogDriver": {"Name": "json-file", "Options": {"max-size": "1m", "max-file": "2"}},
    }
