"""network: allowlist reaches only what the policy lists; the test's own server is not listed."""

from __future__ import annotations

import pytest

from tests.integration.conftest import GVISOR
from tests.security.attacks import attack
from tests.security.conftest import Attempt, Launch, Server

FILES = {"README.md": "hello\n", "src/app.txt": "app\n"}

PLAN = r"""
tasks:
  - id: honest
    scope: ["src/**"]
    run: echo "honest change" >> src/app.txt
  - id: allowlisted
    scope: ["net/**"]
    policy: allow.yaml
    run: |
      mkdir net
      python3 - > net/results.txt <<'PY'
      import os, socket, urllib.parse, urllib.request
      target = ("@ADDR@", @PORT@)

      def direct():
          try:
              socket.create_connection(target, timeout=3).close()
              return "reached"
          except OSError:
              return "unreachable"

      def via_proxy(url):
          try:
              urllib.request.urlopen(url, timeout=5).read()
              return "reached"
          except Exception:
              return "refused"

      def connect_by_ip():
          proxy = urllib.parse.urlsplit(os.environ.get("HTTPS_PROXY") or "http://127.0.0.1:9")
          try:
              s = socket.create_connection((proxy.hostname, proxy.port or 80), timeout=3)
              s.sendall(b"CONNECT @ADDR@:@PORT@ HTTP/1.1\r\nHost: @ADDR@:@PORT@\r\n\r\n")
              status = s.recv(100).split(b" ")[1]
              return "reached" if status == b"200" else "refused"
          except (OSError, IndexError):
              return "refused"

      print("proxied", "yes" if os.environ.get("HTTPS_PROXY") else "no")
      print("direct", direct())
      print("proxy-ip", via_proxy("http://@ADDR@:@PORT@/"))
      print("connect-ip", connect_by_ip())
      PY
"""
POLICY = "network: allowlist\nallow:\n  - host: api.example.test\n    ports: [@PORT@]\n"


@pytest.fixture(scope="module")
def run(hostile: Launch, outside_server: Server) -> Attempt:
    assert outside_server.reachable()  # the control: the host reaches it
    port = str(outside_server.port)
    return hostile(
        PLAN,
        FILES,
        setup=lambda _repo: {"ADDR": outside_server.addr, "PORT": port},
        extra={"allow.yaml": POLICY.replace("@PORT@", port)},
    )


@attack(
    "with `network: allowlist` (api.example.test only), reaching a server the test runs on "
    "another Docker network: directly, through the proxy by IP, and by CONNECT",
    "all refused; the server sees no request; the denial is recorded in the task's result",
)
def test_allowlist_reaches_nothing_unlisted(run: Attempt, outside_server: Server) -> None:
    if GVISOR:  # this machine's runsc has no network: the plan is refused, nothing starts
        assert run.code == 2 and "no network at all" in run.stderr, run.stderr[-3000:]
        assert outside_server.requests_seen() == []
        return
    assert run.stdout.startswith("{"), run.stderr[-3000:]
    assert run.task("honest")["status"] == "merged"
    task = run.task("allowlisted")
    assert task["status"] == "merged", task
    results = dict(line.split() for line in run.show(task["ref"], "net/results.txt").splitlines())
    assert results == {
        "proxied": "yes",
        "direct": "unreachable",
        "proxy-ip": "refused",
        "connect-ip": "refused",
    }
    assert outside_server.requests_seen() == []
    denied = {(d["host"], d["port"]) for d in task["denials"]}
    assert (outside_server.addr, outside_server.port) in denied, task["denials"]
