"""network: allowlist against the real daemon: only listed names and ports get out, by name.

"The outside" is a Docker network each test creates, with an HTTP server of the test's own
(aliases api.example.test and other.example.test, ports 8080 and 9090) and a DNS server of
its own that logs every query it gets. RUNNER_EGRESS_NETWORK puts the run's proxies on that
network; no traffic goes anywhere else.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from runner.core.egress import PORT
from runner.core.policy import AllowRule, Policy
from runner.errors import SandboxError
from runner.images import BASE_TAG, PROXY_TAG, SANDBOX_TAG
from runner.sandbox import labels
from runner.sandbox.base import SandboxSpec
from runner.sandbox.docker import DockerBackend
from runner.sandbox.options import container_options
from tests.integration.conftest import leftovers, make_repo, remove_caches, runner_cli
from tests.security.attacks import attack

SERVE = "python3 -u -m http.server 9090 & exec python3 -u -m http.server 8080"


class HostObserver:
    """A DNS server (NXDOMAIN to everything) and a TCP listener of the test's own, on a host
    address: whatever reaches them has left the sandbox's network, to the host or beyond."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.names: list[str] = []
        self.connections: list[str] = []
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((address, 53))
        self.tcp = socket.create_server((address, 0))
        self.port = self.tcp.getsockname()[1]
        for target in (self._dns, self._accept):
            threading.Thread(target=target, daemon=True).start()

    def _dns(self) -> None:
        with contextlib.suppress(OSError):  # closed: the test is over
            while True:
                data, peer = self.udp.recvfrom(512)
                i, labels_ = 12, []
                while i < len(data) and data[i]:
                    labels_.append(data[i + 1 : i + 1 + data[i]].decode(errors="replace"))
                    i += 1 + data[i]
                self.names.append(".".join(labels_))
                reply = data[:2] + b"\x81\x83" + data[4:6] + b"\0" * 6 + data[12 : i + 5]
                self.udp.sendto(reply, peer)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, peer = self.tcp.accept()
                self.connections.append(peer[0])
                conn.close()

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


# What a hostile task tries, as a script: every attempt's outcome into $RUNNER_OUT.
PROBE = r"""
import http.client, json, os, socket, sys, urllib.request
proxy = os.environ.get("HTTP_PROXY", "")
addr = proxy.removeprefix("http://").split(":")
def get(url):
    try:
        return urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:
        return type(e).__name__
def tunnel(host, port):
    try:
        c = http.client.HTTPConnection(addr[0], int(addr[1]), timeout=10)
        c.set_tunnel(host, port)
        c.request("GET", "/")
        return c.getresponse().status
    except OSError as e:
        return str(e)[:60]
def direct(host, port):
    try:
        socket.create_connection((host, port), timeout=5).close()
        return "connected"
    except OSError as e:
        return type(e).__name__
def lookup(name):
    try:
        return socket.gethostbyname(name)
    except OSError as e:
        return type(e).__name__
def raw_dns(server, name):
    q = b"\x12\x34\x01\x00\x00\x01\0\0\0\0\0\0"
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0\0\x01\0\x01"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    try:
        s.sendto(q, (server, 53))
        return "answered %d bytes" % len(s.recv(512))
    except OSError as e:
        return type(e).__name__
results = {"proxy": proxy}
for line in sys.stdin.read().splitlines():
    name, call = line.split("=", 1)
    results[name] = eval(call)
print(json.dumps(results), flush=True)
try:  # a task of a run: RUNNER_OUT comes home (a bare sandbox may not write there)
    json.dump(results, open(os.path.join(os.environ["RUNNER_OUT"], "probe.json"), "w"))
except OSError:
    pass
"""


@dataclass
class Outside:
    network: str
    server: str
    """The HTTP server's address (for IP-literal and direct attempts)."""
    host: HostObserver
    """Listening on the host's address on this network."""


@pytest.fixture
def outside(docker_client: docker.DockerClient, images: None) -> Iterator[Outside]:
    suffix = secrets.token_hex(3)
    name = f"egress-test-{suffix}"
    net = docker_client.networks.create(name, driver="bridge")
    web = None
    try:
        web = docker_client.containers.run(
            BASE_TAG, ["sh", "-c", SERVE], name=f"egress-test-web-{suffix}", detach=True,
            network=name, user="10001:10001",
        )  # fmt: skip
        # Aliases are given on a connect, not at run: reconnect with them.
        net.disconnect(web)
        net.connect(web, aliases=["api.example.test", "other.example.test"])
        _wait_for(web, b"Serving HTTP", 2)
        net.reload()
        host = HostObserver(net.attrs["IPAM"]["Config"][0]["Gateway"])
        try:
            yield Outside(name, _address(web, name), host)
        finally:
            host.close()
    finally:
        if web is not None:
            web.remove(force=True)
        net.remove()


def _wait_for(container: Any, mark: bytes, count: int) -> None:
    for _ in range(200):  # bounded: about 20 s at most
        if bytes(container.logs()).count(mark) >= count:
            return
        time.sleep(0.1)
    pytest.fail(f"the test's own server {container.name} did not come up")


def _address(container: Any, network: str) -> str:
    container.reload()
    return str(container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"])


def _policy_file(path: Path, *hosts: str, ports: str = "[8080]") -> str:
    allow = "".join(f"\n  - host: {h}\n    ports: {ports}" for h in hosts)
    path.write_text(f"network: allowlist\nallow:{allow}\n")
    return path.name


def _task(task_id: str, policy: str, attempts: dict[str, str]) -> str:
    lines = "\n".join(f"{k}={v}" for k, v in attempts.items())
    script = f"cat > /tmp/probe.py <<'PY'\n{PROBE}\nPY\n"
    script += f"python3 /tmp/probe.py <<'IN'\n{lines}\nIN\n"
    head = f"  - id: {task_id}\n    scope: ['{task_id}/**']\n    policy: {policy}\n"
    return head + "    run: |\n" + textwrap.indent(script, "      ")


@attack(
    "an allowlist task reaching its listed name through the proxy, then the same server by IP "
    "(through the proxy and directly), another name, another port, and the host",
    "only the listed name and port answer; every other try fails and is recorded as a denial",
)
def test_allowlist_run_reaches_only_listed_names_and_ports(
    tmp_path: Path, outside: Outside, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, {"README.md": "hi\n"})
    api = _policy_file(tmp_path / "api.yaml", "api.example.test")
    other = _policy_file(tmp_path / "other.yaml", "other.example.test")
    ip = outside.server
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "tasks:\n"
        + _task(
            "api",
            api,
            {
                "allowed_get": "get('http://api.example.test:8080/')",
                "allowed_tunnel": "tunnel('api.example.test', 8080)",
                "other_name": "get('http://other.example.test:8080/')",
                "other_port_get": "get('http://api.example.test:9090/')",
                "other_port_tunnel": "tunnel('api.example.test', 9090)",
                "ip_literal": f"get('http://{ip}:8080/')",
                "ip_literal_tunnel": f"tunnel('{ip}', 8080)",
                "direct": f"direct('{ip}', 8080)",
                "direct_by_name": "direct('api.example.test', 8080)",
                "to_host": f"direct('{outside.host.address}', {outside.host.port})",
            },
        )
        + _task(
            "other",
            other,
            {
                "own_name": "get('http://other.example.test:8080/')",
                "api_name": "get('http://api.example.test:8080/')",
            },
        )
    )
    env = {
        "RUNNER_EGRESS_NETWORK": outside.network,
        "RUNNER_EGRESS_DNS": json.dumps([outside.host.address]),
    }
    proc = runner_cli("run", str(plan), "--repo", str(repo), "--json", env=env)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"no result: {proc.stderr[-2000:]}")
    try:
        tasks = {t["id"]: t for t in result["tasks"]}
        assert [t["status"] for t in tasks.values()] == ["no_changes", "no_changes"], proc.stderr
        probe = json.loads((Path(tasks["api"]["out_path"]) / "probe.json").read_text())
        # Listed name and port: through the proxy, plain HTTP and CONNECT alike.
        assert probe["allowed_get"] == 200
        assert probe["allowed_tunnel"] == 200
        # Everything else is refused by the proxy...
        assert probe["other_name"] == 403
        assert probe["other_port_get"] == 403
        assert probe["ip_literal"] == 403
        assert "403" in str(probe["other_port_tunnel"])
        assert "403" in str(probe["ip_literal_tunnel"])
        # ...and without it there is no way out at all: no route, no name.
        assert probe["direct"] != "connected"
        assert probe["direct_by_name"] != "connected"
        assert probe["to_host"] != "connected"
        assert outside.host.connections == []
        # The proxies resolved the listed names among Docker's own; nothing else was asked.
        assert outside.host.names == []
        denied = {(d["host"], d["port"]) for d in tasks["api"]["denials"]}
        assert denied == {
            ("other.example.test", 8080),
            ("api.example.test", 9090),
            (ip, 8080),
        }
        # Another allowlist in the same run: its own name only, through its own proxy.
        own = json.loads((Path(tasks["other"]["out_path"]) / "probe.json").read_text())
        assert (own["own_name"], own["api_name"]) == (200, 403)
        assert own["proxy"] != probe["proxy"]
        assert [(d["host"], d["port"]) for d in tasks["other"]["denials"]] == [
            ("api.example.test", 8080)
        ]
    finally:
        remove_caches(docker_client, repo)
    assert leftovers(docker_client, result["run_id"]) == []
    # The operator's network is the operator's: used, never removed.
    assert docker_client.networks.get(outside.network).name == outside.network


@pytest.fixture
def backend(docker_client: docker.DockerClient, outside: Outside) -> Iterator[DockerBackend]:
    dns = [outside.host.address]
    yield DockerBackend(docker_client, SANDBOX_TAG, egress_network=outside.network, egress_dns=dns)


@pytest.fixture
def run_id(docker_client: docker.DockerClient) -> Iterator[str]:
    run = f"egress-{secrets.token_hex(4)}"
    yield run
    DockerBackend(docker_client, SANDBOX_TAG).cleanup(run)
    assert leftovers(docker_client, run) == []


def _sandbox(
    client: docker.DockerClient, tmp_path: Path, **overrides: Any
) -> tuple[SandboxSpec, dict[str, Any]]:
    """A task sandbox's options as the runner makes them (mounts on empty dirs)."""
    for sub in ("work", "objects", "state/control", "state/out"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
    spec = SandboxSpec(
        run_id="x", task_id="probe", role="task", image=SANDBOX_TAG, policy=Policy(),
        script="true", timeout=60, workspace=tmp_path / "work", objects=tmp_path / "objects",
        state=tmp_path / "state", start_commit="0" * 40,
    )  # fmt: skip
    spec = replace(spec, **overrides)
    return spec, container_options(spec)


def _probe(client: docker.DockerClient, opts: dict[str, Any], attempts: dict[str, str]) -> Any:
    lines = "\n".join(f"{k}={v}" for k, v in attempts.items())
    opts = opts | {
        "name": f"{opts['name']}-{secrets.token_hex(3)}",
        "command": ["sh", "-c", f"python3 -c \"$PROBE\" <<'IN'\n{lines}\nIN"],
        "environment": opts["environment"] | {"PROBE": PROBE},
    }
    container = client.containers.create(**opts)
    try:
        container.start()
        container.wait(timeout=120)
        out = bytes(container.logs(stderr=False)).decode().strip().splitlines()
    finally:
        container.remove(force=True)
    return json.loads(out[-1])


@attack(
    "DNS exfiltration: looking up unlisted names (resolver, Docker's DNS, raw queries, via the "
    "proxy)",
    "no query for an unlisted name reaches any resolver (a resolver of the test's own sees none)",
)
def test_dns_of_unlisted_names_does_not_leave(
    tmp_path: Path, docker_client: docker.DockerClient, backend: DockerBackend,
    outside: Outside, run_id: str,
) -> None:  # fmt: skip
    rules = [AllowRule(host="api.example.test", ports=[8080]),
             AllowRule(host="resolved.example.test", ports=[8080])]  # fmt: skip
    host = outside.host
    gateway = backend.gateway(run_id, rules)
    policy = Policy(network="allowlist", allow=rules)
    _, opts = _sandbox(
        docker_client, tmp_path, run_id=run_id, policy=policy,
        network=gateway.network, proxy=gateway.proxy,
    )  # fmt: skip
    # The observer is made the sandbox's upstream resolver too: a lookup Docker's embedded
    # DNS forwarded out of the sandbox's network would arrive there.
    opts["dns"] = [outside.host.address]
    probe = _probe(
        docker_client,
        opts,
        {
            "lookup": "lookup('leak-a.example.test')",
            "embedded": "raw_dns('127.0.0.11', 'leak-b.example.test')",
            "direct_dns": f"raw_dns('{host.address}', 'leak-c.example.test')",
            "to_host": f"direct('{host.address}', {host.port})",
            "via_proxy": "get('http://leak-d.example.test:8080/')",
            "via_tunnel": "tunnel('leak-e.example.test', 443)",
            "by_ip": f"get('http://{outside.server}:8080/')",  # the test's own server
            "listed": "get('http://resolved.example.test:8080/')",
        },
    )
    # Controls: a name the proxy may resolve reaches the observer through the proxy, and
    # the same options on a network with a route reach it too.
    _, routed = _sandbox(docker_client, tmp_path, run_id=run_id)
    routed |= {"network": outside.network, "dns": [host.address]}
    routed.pop("network_mode")
    control = _probe(
        docker_client,
        routed,
        {
            "lookup": "lookup('control.example.test')",
            "tcp": f"direct('{host.address}', {host.port})",
        },
    )

    queries = host.names
    assert "resolved.example.test" in queries, probe  # the proxy resolves listed names
    assert "control.example.test" in queries  # the observer sees what leaves
    assert [q for q in queries if q.startswith("leak-") or q.endswith("in-addr.arpa")] == []
    assert control["tcp"] == "connected" and len(host.connections) == 1  # from the control
    assert probe["to_host"] != "connected"  # not even the host is reachable
    assert not probe["direct_dns"].startswith("answered")  # no route to any resolver
    assert (probe["via_proxy"], probe["by_ip"]) == (403, 403)
    assert "403" in probe["via_tunnel"]


def test_each_allowlist_gets_its_own_network_and_proxy(
    tmp_path: Path, docker_client: docker.DockerClient, backend: DockerBackend, run_id: str
) -> None:
    one = [AllowRule(host="api.example.test", ports=[8080]), AllowRule(host="b.example.test")]
    two = [AllowRule(host="other.example.test", ports=[8080])]
    first, second = backend.gateway(run_id, one), backend.gateway(run_id, two)
    assert backend.gateway(run_id, list(reversed(one))) == first  # same rules, same gateway
    assert first.network != second.network
    _, opts = _sandbox(
        docker_client, tmp_path, run_id=run_id,
        policy=Policy(network="allowlist", allow=one), network=first.network, proxy=first.proxy,
    )  # fmt: skip
    own, theirs = (g.proxy.removeprefix("http://").split(":")[0] for g in (first, second))
    probe = _probe(
        docker_client, opts,
        {"own": f"direct('{own}', {PORT})", "theirs": f"direct('{theirs}', {PORT})"},
    )  # fmt: skip
    assert probe["own"] == "connected"
    assert probe["theirs"] != "connected"  # another allowlist's proxy is out of reach


def test_proxy_is_hardened_and_labelled(
    docker_client: docker.DockerClient, backend: DockerBackend, outside: Outside, run_id: str
) -> None:
    gateway = backend.gateway(run_id, [AllowRule(host="api.example.test")])
    proxy = docker_client.containers.get(gateway.container)
    host = proxy.attrs["HostConfig"]
    assert proxy.attrs["Config"]["User"] == "13:13"
    assert proxy.attrs["Config"]["Image"] == PROXY_TAG
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["ReadonlyRootfs"] is True
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["Memory"] > 0 and host["PidsLimit"] > 0 and host["NanoCpus"] > 0
    assert not host["Privileged"] and host["NetworkMode"] == outside.network
    assert set(proxy.attrs["NetworkSettings"]["Networks"]) == {gateway.network, outside.network}
    internal = docker_client.networks.get(gateway.network)
    assert internal.attrs["Internal"] is True
    for labelled in (proxy.labels, internal.attrs["Labels"]):
        assert labelled[labels.RUN] == run_id
        assert labelled[labels.ROLE] == "egress"


def test_a_missing_egress_network_is_named_before_anything_is_made(
    docker_client: docker.DockerClient, run_id: str
) -> None:
    backend = DockerBackend(docker_client, SANDBOX_TAG, egress_network=f"missing-{run_id}")
    with pytest.raises(SandboxError, match="does not exist") as caught:
        backend.gateway(run_id, [AllowRule(host="api.example.test")])
    assert "RUNNER_EGRESS_NETWORK" in str(caught.value.hint)
    assert leftovers(docker_client, run_id) == []


def test_plan_shows_what_each_task_may_reach(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"README.md": "hi\n"})
    (tmp_path / "agent.yaml").write_text(
        "network: allowlist\nallow:\n  - host: api.example.test\n"
        "  - host: '*.pkg.example.test'\n    ports: [80, 443]\n"
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text("tasks:\n  - id: agent\n    policy: agent.yaml\n    run: 'true'\n")
    proc = runner_cli("plan", str(plan), "--repo", str(repo))
    assert proc.returncode == 0, proc.stderr
    assert (
        "egress only to api.example.test:443, *.pkg.example.test:80,443 (through the run's proxy)"
        in proc.stdout
    )
