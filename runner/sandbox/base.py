"""The sandbox backend interface. Core and coordinator see only this; Docker sits behind it."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from runner.core.policy import AllowRule, Policy
from runner.core.results import Denial
from runner.errors import SandboxError

if TYPE_CHECKING:
    from runner.settings import Settings

Role = Literal["task", "verify", "collect", "shell"]


@dataclass(frozen=True)
class SandboxSpec:
    """Everything one sandbox needs. Paths are on the host."""

    run_id: str
    task_id: str
    role: Role
    image: str
    policy: Policy
    script: str
    """Shell script run with `sh -e` at /work."""
    timeout: float
    workspace: Path
    """The task's own clone, mounted read-write at /work."""
    objects: Path
    """The host repo's object store, mounted read-only at /objects (the clone borrows it)."""
    state: Path
    """A host directory of the runner's for this sandbox (scripts, log, copied-out files)."""
    start_commit: str
    shared: Path | None = None
    """Exported shared directory, mounted read-only at /shared."""
    cache_volume: str | None = None
    """Named volume mounted at /cache; survives runs."""
    cache_labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    """Host variables passed through by name (values never logged)."""
    network: str | None = None
    """Network to join when the policy is `open` or `allowlist` (else: none at all)."""
    proxy: str | None = None
    """Egress proxy URL (http://ADDRESS:PORT) of an `allowlist` sandbox."""


@dataclass(frozen=True)
class Execution:
    """How the script ended. A task's failure is a result here, not an exception."""

    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    duration_s: float
    log_path: Path
    cpu_s: float | None = None
    peak_memory_bytes: int | None = None
    metrics_source: str | None = None
    disk_exceeded: bool = False
    """Stopped for adding more than the policy's `disk` to /work, /out and /cache together."""
    lost: str | None = None
    """Why the sandbox went away before the script ended (removed from outside)."""
    disk_added: int | None = None
    """Bytes the task added there (net, at the guard's last look); None: not watched."""
    address: str | None = None
    """The sandbox's address on its network while it ran (allowlist sandboxes: the client
    address the egress proxy logs)."""
    started_at: float | None = None
    """When its script's sandbox started (`time.time()`): what came before was provisioning."""


@dataclass(frozen=True)
class Gateway:
    """How an `allowlist` sandbox gets out: the network it joins and its proxy there."""

    network: str
    """Internal network (no route out) the sandbox joins."""
    proxy: str
    """http://ADDRESS:PORT of the egress proxy on that network."""
    container: str
    """The proxy's name in the backend (its log holds the denials)."""


@dataclass(frozen=True)
class Collected:
    """A task's work after collection: a bundle of start..head, or nothing to bring home."""

    head: str | None
    """The task's final commit (== start_commit when it changed nothing); None: see problem."""
    bundle: Path | None
    """None when there are no commits to carry (no changes, or head already on the host)."""
    out_dir: Path | None
    """RUNNER_OUT as copied out (regular files only); None when refused."""
    problem: str | None = None
    """Why the task's work could not be brought home (the task's doing, not the runner's)."""
    notes: list[str] = field(default_factory=list)
    """What was left out and why (a refused RUNNER_OUT, ignored files)."""
    transfer: tuple[float, float] | None = None
    """When copying the work out to the coordinator began and ended (`time.time()`)."""


class SandboxBackend(abc.ABC):
    """Runs scripts in isolated sandboxes and brings their work home.

    Every method raises only the runner's own errors (SandboxError, InputError): whatever the
    engine's client raises is translated inside the backend.
    """

    workspaces_on_host: bool = False
    """True when a task's sandbox works on `spec.workspace` on this host itself (containers
    of the local daemon), so the coordinator can see that a task changed nothing there and
    skip its collection. False where the workspace lives on another node (Swarm)."""

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings: Settings) -> Self:
        """A backend connected to its engine (runner.sandbox.factory picks the class).

        Raises:
            SandboxError: the engine is not reachable or does not answer (the message says
                where it was looked for and how to start it).
        """

    # -- before a run ------------------------------------------------------------------------
    @abc.abstractmethod
    def required_images(self, *, egress: bool) -> set[str]:
        """Images of the backend's own sandboxes (collector; egress proxy when `egress`)."""

    @abc.abstractmethod
    def missing_images(self, names: Iterable[str]) -> list[str]:
        """Which of these images the engine does not have (sorted)."""

    @abc.abstractmethod
    def image_ids(self, names: Iterable[str]) -> dict[str, str]:
        """Each of these images the engine has -> its id (content hash); missing ones are left
        out. A run pins these ids (`runner show RUN --inputs`, `runner rerun`)."""

    def image_digests(self, names: Iterable[str]) -> dict[str, list[str]]:
        """Each of these images that came from a registry -> its repo digests (NAME@sha256:..);
        images built here have none and are left out."""
        return {}

    def engine_version(self) -> str | None:
        """The engine's version (pinned in a run's inputs); None when it does not say."""
        return None

    @abc.abstractmethod
    def runtimes(self) -> dict[str, dict[str, Any]]:
        """The OCI runtimes the engine can run sandboxes under: name -> its settings
        (`docker info`'s Runtimes: {"path": ..., "runtimeArgs": [...]})."""

    @abc.abstractmethod
    def close(self) -> None:
        """Let go of the connection to the engine."""

    @abc.abstractmethod
    def execute(self, spec: SandboxSpec) -> Execution:
        """Create the sandbox, run spec.script to completion, timeout or OOM kill, keep the log.

        Raises:
            SandboxError: the sandbox could not be made or the daemon failed (not a task result).
        """

    @abc.abstractmethod
    def collect(self, spec: SandboxSpec, moved: Sequence[bytes] | None = None) -> Collected:
        """Commit what the task left uncommitted and copy out its bundle and RUNNER_OUT.

        Runs in a fresh sandbox on the same workspace, so it works after a kill too.
        `moved`: the work-tree paths the host saw change (runner.stamps), whose entries in
        the task's index are not trusted; None: no entry is (every file is hashed again).

        Raises:
            SandboxError: collection failed; the workspace is left in place for inspection.
        """

    def interactive(self, spec: SandboxSpec) -> int:
        """A shell on this terminal in a sandbox made as `spec` (`runner shell`); its exit code.
        Not every backend can attach a terminal: those say so."""
        raise SandboxError(f"{type(self).__name__} cannot attach a terminal to a sandbox")

    @abc.abstractmethod
    def destroy(self, spec: SandboxSpec) -> None:
        """Remove the sandbox's containers. Idempotent."""

    @abc.abstractmethod
    def kill(self, run_id: str) -> int:
        """Kill the run's running sandboxes but keep them, so their work can still be collected.

        Returns the number killed.
        """

    @abc.abstractmethod
    def create_network(self, run_id: str) -> str:
        """A network for `open` policies of this run; returns its name."""

    def gateway(self, run_id: str, allow: Sequence[AllowRule]) -> Gateway:
        """The run's egress gateway for this allowlist, made on first use (thread-safe).

        Sandboxes with other allowlists get other gateways; cleanup(run_id) removes them.

        Raises:
            SandboxError: the backend has no egress proxy, or it could not be started.
        """
        raise SandboxError(f"{type(self).__name__} has no egress proxy for network: allowlist")

    def denials(self, gateway: Gateway, address: str, since: float, until: float) -> list[Denial]:
        """What the gateway's proxy refused to the sandbox at `address` between two times
        (seconds since the epoch).

        Raises:
            SandboxError: the proxy's log could not be read.
        """
        return []

    @abc.abstractmethod
    def cleanup(self, run_id: str | None = None) -> int:
        """Remove every object labelled with run_id (None: every run whose owner is dead).

        Returns the number of objects removed.
        """

    @abc.abstractmethod
    def runs(self) -> set[str]:
        """Ids of every run that has sandboxes or networks, alive or not."""

    @abc.abstractmethod
    def remove_caches(self, repo_key: str | None = None) -> int:
        """Remove cache volumes: of one repo (by its key), or all of them. Volumes in use
        are kept. Returns the number removed."""
