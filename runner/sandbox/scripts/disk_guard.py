# runner disk guard (Swarm backend): runs in a service of its own on the task's node, with the
# task's volumes mounted read-only (RUNNER_GUARD_PATHS), and watches what the task adds to them: the
# container backend's DiskGuard (runner/sandbox/disk.py). Over the limit it kills the task's
# container through its node's Docker socket. It reports on stdout, which the coordinator
# follows (and then stops the task's service too):
#   base BYTES            what was there when it started (does not count)
#   exceeded ADDED N      over the limit; N containers killed (-1: the kill failed)
#   oom 0|1               after SIGTERM (the task ended): whether its memory limit killed it
#   final ADDED PEAK      then a last look
# Standalone (the collector image has python3 and nothing of the runner's);
# runner.sandbox.disk imports its walk: the container backend's guard counts the same way.
import contextlib
import http.client
import json
import os
import signal
import socket
import stat
import sys
import threading
import time
import urllib.parse

BLOCK = 4096


def usage(paths: list[str]) -> int:
    seen: set[tuple[int, int]] = set()
    total, stack = 0, list(paths)
    while stack:
        path = stack.pop()
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        total += max(st.st_blocks * 512, BLOCK)
        if stat.S_ISDIR(st.st_mode):
            try:
                with os.scandir(path) as it:
                    stack.extend(entry.path for entry in it)
            except OSError:
                continue
    return total


def fs_used(paths: list[str]) -> int:
    total, seen = 0, set[int]()
    for path in paths:
        try:
            dev = os.stat(path).st_dev
            st = os.statvfs(path)
        except OSError:
            continue
        if dev not in seen:
            seen.add(dev)
            total += (st.f_blocks - st.f_bfree) * st.f_frsize
    return total


class _Docker(http.client.HTTPConnection):
    """The node's Docker daemon, on its socket (mounted into this service only)."""

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(os.environ.get("RUNNER_GUARD_SOCKET", "/var/run/docker.sock"))


def _containers(conn: http.client.HTTPConnection, service: str) -> list[str]:
    label = json.dumps({"label": [f"com.docker.swarm.service.name={service}"]})
    query = urllib.parse.urlencode({"filters": label, "all": "1"})
    conn.request("GET", f"/containers/json?{query}")
    return [str(c["Id"]) for c in json.loads(conn.getresponse().read())]


def oom_killed(service: str) -> bool:
    """Did the memory limit kill the task's container? The swarm's task status does not say;
    its node's daemon does (the coordinator's daemon knows only its own node's containers)."""
    conn = _Docker("localhost", timeout=30)
    found = False
    for container in _containers(conn, service):
        conn.request("GET", f"/containers/{container}/json")
        state = json.loads(conn.getresponse().read()).get("State") or {}
        found = found or bool(state.get("OOMKilled"))
    conn.close()
    return found


def watch_oom(service: str, seen: threading.Event) -> None:
    """Subscribes (before the task starts) to the daemon's `oom` events of the task's
    container; a thread sets `seen` on one. The container's OOMKilled flag alone was seen
    false right after an OOM exit (the daemon handles the OOM and the exit events apart)."""
    flt = {"type": ["container"], "event": ["oom"]}
    flt["label"] = [f"com.docker.swarm.service.name={service}"]
    conn = _Docker("localhost", timeout=None)
    conn.request("GET", "/events?" + urllib.parse.urlencode({"filters": json.dumps(flt)}))
    response = conn.getresponse()

    def read() -> None:
        with contextlib.suppress(OSError, ValueError):
            while response.readline():
                seen.set()

    threading.Thread(target=read, daemon=True).start()


def kill_task(service: str) -> int:
    """SIGKILL the task's container(s) on this node, as the container backend's guard does:
    at once, not through the swarm's orchestrator (seconds, during which a writer goes on)."""
    conn = _Docker("localhost", timeout=30)
    killed = 0
    for container in _containers(conn, service):
        conn.request("POST", f"/containers/{container}/kill?signal=KILL")
        response = conn.getresponse()
        response.read()
        killed += response.status == 204  # 409: not running (it ended as we looked)
    conn.close()
    return killed


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    limit = int(os.environ["RUNNER_DISK"])
    interval = float(os.environ.get("RUNNER_GUARD_INTERVAL", "0.05"))
    cpu_share = 0.1
    paths = os.environ["RUNNER_GUARD_PATHS"].split(":")
    stop, oom = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service = os.environ["RUNNER_GUARD_SERVICE"]
    watch_oom(service, oom)
    grown_from = fs_used(paths)
    started = time.monotonic()
    base = usage(paths)
    walk_s = time.monotonic() - started
    say(f"base {base}")
    added = peak = 0
    exceeded = False
    # The container backend's schedule: a walk at most every `period` (walks take at most
    # cpu_share of a core), and at once when statvfs says the file system grew past the
    # task's headroom since the last walk.
    period = max(interval, walk_s / cpu_share)
    last_walk = time.monotonic()
    while not exceeded and not stop.wait(interval):
        since = time.monotonic() - last_walk
        if since < period and (since < 2 * walk_s or fs_used(paths) - grown_from <= limit - added):
            continue
        grown_from = fs_used(paths)
        last_walk = time.monotonic()
        added = usage(paths) - base
        peak = max(peak, added)
        if added > limit:
            exceeded = True
            try:
                killed = kill_task(service)
            except (OSError, ValueError, KeyError) as exc:
                killed = -1
                say(f"error could not kill the task: {exc!r}")
            say(f"exceeded {added} {killed}")
        walk_s = time.monotonic() - last_walk
        period = max(interval, walk_s / cpu_share)
    stop.wait()
    added = usage(paths) - base  # the last look: a writer that ended between two looks
    peak = max(peak, added)
    if added > limit and not exceeded:
        say(f"exceeded {added} 0")  # it ended between two looks: nothing left to kill
    try:
        say(f"oom {int(oom.is_set() or oom_killed(service))}")
    except (OSError, ValueError) as exc:
        say(f"error could not read the task's end: {exc!r}")
    say(f"final {added} {peak}")


if __name__ == "__main__":
    main()
