"""`network: allowlist` on a swarm: the container backend's egress proxy as a service of the run.

Per run and distinct allowlist (as runner/sandbox/egress.py, for the same reasons): an internal
overlay network that the allowlist's task services join (no route anywhere: measured, see
docs/scale-out.md), and one squid service (the proxy image, the same squid config) on it and on
an outside network: RUNNER_EGRESS_NETWORK when set (a swarm-scoped network: an overlay, made
`--attachable` when containers outside the swarm's services sit on it), else a non-internal
overlay of the run (a route out through each node's docker_gwbridge). Tasks reach the proxy by
its service name on the internal overlay (endpoint mode dnsrr: a VIP there answered "No route
to host", as for the depot). Its denials are read from its service log, as a container's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors

from runner.core import egress as core
from runner.core.policy import AllowRule
from runner.core.results import Denial
from runner.errors import SandboxError
from runner.images import PROXY_TAG
from runner.sandbox.base import Gateway
from runner.sandbox.docker import _call
from runner.sandbox.egress import READY_MARK, ROLE
from runner.sandbox.labels import labels_for

READY_S = 120.0
"""How long a proxy service may take to be scheduled, start and listen."""


def proxy_template(
    image: str,
    rules: Sequence[AllowRule],
    networks: Sequence[str],
    labels: dict[str, str],
    dns: Sequence[str] | None,
) -> dict[str, Any]:
    """The proxy service's TaskTemplate: egress.proxy_options in the service's words (less
    no-new-privileges and the tmpfs options, which a service cannot set on API 1.41)."""
    container: dict[str, Any] = {
        "Image": image,
        "Env": [f"RUNNER_PROXY_CONF={core.squid_config(rules)}"],
        "User": "13:13",  # Debian's `proxy` account; squid needs no root for port 3128
        "ReadOnly": True,
        "CapabilityDrop": ["ALL"],
        "Init": True,
        "Mounts": [{"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 16 << 20}}],
        "Labels": labels,
    }
    if dns:
        container["DNSConfig"] = {"Nameservers": list(dns)}
    return {
        "ContainerSpec": container,
        "Resources": {"Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 256 << 20, "Pids": 64}},
        "RestartPolicy": {"Condition": "on-failure", "MaxAttempts": 3},
        "Networks": [{"Target": n} for n in networks],
        # The access log (the denials) is read back from the service's log: bounded, kept.
        "LogDriver": {"Name": "json-file", "Options": {"max-size": "16m", "max-file": "2"}},
    }


@dataclass
class SwarmEgress:
    """Opens (once per run and allowlist) and reads the proxy services of allowlist tasks.
    `network(run_id, name, internal)` makes an overlay network of the run (the backend's)."""

    client: docker.DockerClient
    network: Callable[..., str]
    image: str = PROXY_TAG
    outside: str | None = None
    dns: Sequence[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _open: dict[tuple[str, str], Gateway] = field(default_factory=dict)

    def gateway(self, run_id: str, rules: Sequence[AllowRule]) -> Gateway:
        key = core.allowlist_key(rules)
        with self._lock:
            if (run_id, key) not in self._open:
                self._open[run_id, key] = self._start(run_id, key, rules)
            return self._open[run_id, key]

    def forget(self, run_id: str) -> None:
        with self._lock:
            for key in [k for k in self._open if k[0] == run_id]:
                del self._open[key]

    def _start(self, run_id: str, key: str, rules: Sequence[AllowRule]) -> Gateway:
        labels = labels_for(run_id, "-", ROLE)
        name = f"runner-{run_id}-{ROLE}-{key}"
        if self.outside:
            try:
                found = _call(self.client.networks.get, self.outside)
            except docker.errors.NotFound:
                raise SandboxError(
                    f"the egress network {self.outside!r} does not exist",
                    hint="create it (an overlay), or unset RUNNER_EGRESS_NETWORK",
                ) from None
            if found.attrs.get("Scope") != "swarm":
                raise SandboxError(
                    f"the egress network {self.outside!r} is a {found.attrs.get('Driver')} "
                    "network of one daemon; a swarm service can join only swarm-scoped ones",
                    hint=f"make it an overlay: docker network create -d overlay --attachable "
                    f"{self.outside}",
                )
            outside = self.outside
        else:
            outside = self.network(run_id, "-", f"runner-{run_id}-{ROLE}-out", internal=False)
        internal = self.network(run_id, "-", name, internal=True)
        template = proxy_template(self.image, rules, [internal, outside], labels, self.dns)
        made = _call(
            self.client.api.create_service,
            template,
            name=name,
            labels=labels,
            endpoint_spec={"Mode": "dnsrr"},
        )
        self._wait_ready(made["ID"], name)
        return Gateway(network=internal, proxy=f"http://{name}:{core.PORT}", container=name)

    def _wait_ready(self, service: str, name: str) -> None:
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            logs = b"".join(_call(self.client.api.service_logs, service, stderr=True, stdout=False))
            if READY_MARK in logs:
                return
            tasks = _call(self.client.api.tasks, filters={"service": service})
            failed = [t for t in tasks if t["Status"]["State"] in ("rejected", "failed")]
            if len(failed) > 3:  # its restarts, spent
                why = failed[-1]["Status"].get("Err") or "failed"
                tail = " | ".join(logs.decode("utf-8", "replace").strip().splitlines()[-5:])
                raise SandboxError(f"the egress proxy {name} did not start: {why} {tail}")
            time.sleep(0.5)
        raise SandboxError(f"the egress proxy {name} did not start in {READY_S:g}s")

    def denials(self, gateway: Gateway, address: str, since: float, until: float) -> list[Denial]:
        raw = _call(
            self.client.api.service_logs,
            gateway.container,
            stdout=True,
            stderr=False,
            since=int(since) - 1,
        )
        entries = core.parse_denials(b"".join(raw).decode("utf-8", "replace"))
        return core.denials_for(entries, address, since, until)


def task_address(task: dict[str, Any], network: str) -> str | None:
    """A swarm task's address on one of its networks (by name or id), from its record."""
    for attachment in task.get("NetworksAttachments") or []:
        net = attachment.get("Network") or {}
        if network in (net.get("ID"), (net.get("Spec") or {}).get("Name")):
            for cidr in attachment.get("Addresses") or []:
                return str(cidr).split("/", 1)[0]
    return None
