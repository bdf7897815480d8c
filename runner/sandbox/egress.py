"""The egress side of `network: allowlist` in Docker: internal networks and squid proxies.

Per run and per distinct allowlist: one internal network that the sandboxes with that
allowlist join (`internal=True` and no host address on it: no route out, not even to the
host, so Docker's embedded DNS there forwards nothing anywhere; measured on 20.10), and one
proxy container on it and on an egress-side network. One proxy per allowlist rather than
per-client rules: a sandbox can reach every address of its network, so a proxy with a wider
allowlist on the same network would be a way around its own; and the rules need no sandbox
addresses, which exist only once a sandbox starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from runner.core import egress as core
from runner.core.policy import AllowRule
from runner.core.results import Denial
from runner.errors import SandboxError
from runner.images import PROXY_TAG
from runner.sandbox.base import Gateway
from runner.sandbox.labels import labels_for

ROLE = "egress"
READY_MARK = b"Accepting HTTP Socket connections"
_READY_TIMEOUT = 60.0
# An internal network still has a host address (its gateway) and a default route to it:
# measured on 20.10, a sandbox there reaches every service the host itself listens on, on
# any of its addresses (the host's INPUT path, which `internal` does not filter), and a
# resolver on the host would take its DNS. Without a bridge address the host is not on the
# sandboxes' segment at all; they reach only their peers there, the proxy among them.
_NO_HOST_ADDRESS = {"com.docker.network.bridge.inhibit_ipv4": "true"}


@dataclass
class EgressProxies:
    """Opens (once per run and allowlist) and reads the proxies of allowlist sandboxes.

    outside: an existing network the proxies reach the outside through (not removed); None:
    a bridge per run, made here. dns: resolvers the proxies use (None: the daemon's).
    """

    client: docker.DockerClient
    image: str = PROXY_TAG
    outside: str | None = None
    dns: Sequence[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _open: dict[tuple[str, str], Gateway] = field(default_factory=dict)

    def gateway(self, run_id: str, rules: Sequence[AllowRule]) -> Gateway:
        """The run's gateway for these rules, started on first use. Thread-safe.

        Raises:
            SandboxError: the network or proxy could not be made, or the proxy did not start.
        """
        key = core.allowlist_key(rules)
        with self._lock:  # tasks are provisioned from worker threads
            if (run_id, key) not in self._open:
                self._open[run_id, key] = self._start(run_id, key, rules)
            return self._open[run_id, key]

    def denials(self, gateway: Gateway, address: str, since: float, until: float) -> list[Denial]:
        """Requests the gateway's proxy refused to the sandbox at `address` between two times
        (seconds since the epoch)."""
        # Docker's errors here are translated by the backend's method that called this.
        proxy = self.client.containers.get(gateway.container)
        # Whole seconds around the window: the log is filtered by squid's own times.
        raw = proxy.logs(stdout=True, stderr=False, since=int(since) - 1, until=int(until) + 2)
        entries = core.parse_denials(bytes(raw).decode("utf-8", "replace"))
        return core.denials_for(entries, address, since, until)

    def _start(self, run_id: str, key: str, rules: Sequence[AllowRule]) -> Gateway:
        labels = labels_for(run_id, "-", ROLE)
        name = f"runner-{run_id}-{ROLE}-{key}"
        if self.outside:
            self._check_outside(self.outside)
        # Docker's errors here are translated by the backend's method that called this. What
        # was made before one stays labelled with the run: the run's cleanup removes it.
        outside = self.outside or self._outside_network(run_id, labels)
        internal = self.client.networks.create(
            name, driver="bridge", internal=True, options=_NO_HOST_ADDRESS, labels=labels
        )
        proxy = self.client.containers.create(
            **proxy_options(self.image, name, labels, outside, rules, self.dns)
        )
        internal.connect(proxy)
        proxy.start()
        _wait_ready(proxy)
        proxy.reload()
        address = proxy.attrs["NetworkSettings"]["Networks"][name]["IPAddress"]
        return Gateway(network=name, proxy=f"http://{address}:{core.PORT}", container=name)

    def _check_outside(self, name: str) -> None:
        try:
            self.client.networks.get(name)
        except docker.errors.NotFound:
            raise SandboxError(
                f"the egress network {name!r} does not exist",
                hint="create it, or unset RUNNER_EGRESS_NETWORK (a run then makes its own)",
            ) from None

    def _outside_network(self, run_id: str, labels: dict[str, str]) -> str:
        name = f"runner-{run_id}-{ROLE}-out"
        try:
            self.client.networks.get(name)
        except docker.errors.NotFound:
            self.client.networks.create(name, driver="bridge", labels=labels)
        return name


def proxy_options(
    image: str,
    name: str,
    labels: dict[str, str],
    outside: str,
    rules: Sequence[AllowRule],
    dns: Sequence[str] | None,
) -> dict[str, Any]:
    """`containers.create` kwargs of a proxy: hardened like a sandbox, as far as squid allows."""
    opts: dict[str, Any] = {
        "image": image,
        "name": name,
        "labels": labels,
        "environment": {"RUNNER_PROXY_CONF": core.squid_config(rules)},
        "user": "13:13",  # Debian's `proxy` account; squid needs no root for port 3128
        "read_only": True,
        "tmpfs": {"/tmp": "size=16m,nosuid,nodev,noexec"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "mem_limit": 256 * 1024**2,
        "memswap_limit": 256 * 1024**2,
        "nano_cpus": 500_000_000,
        "pids_limit": 64,
        "init": True,
        # The access log (the denials) is read back from the daemon's copy: bounded, kept.
        "log_config": {"type": "json-file", "config": {"max-size": "16m", "max-file": "2"}},
        "network": outside,
        "detach": True,
    }
    if dns:
        opts["dns"] = list(dns)
    return opts


def _wait_ready(proxy: Container) -> None:
    """Until squid listens; its start-up log goes to stderr."""
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        proxy.reload()
        logs = bytes(proxy.logs(stdout=False, stderr=True))
        if READY_MARK in logs:
            return
        if proxy.status not in ("created", "running"):
            tail = logs.decode("utf-8", "replace").strip().splitlines()[-5:]
            raise SandboxError(
                f"the egress proxy {proxy.name} exited at start: " + " | ".join(tail)
            )
        time.sleep(0.1)
    raise SandboxError(f"the egress proxy {proxy.name} did not start in {_READY_TIMEOUT:g}s")
