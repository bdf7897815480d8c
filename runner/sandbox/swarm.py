"""SwarmBackend: each sandbox step is a one-shot Docker Swarm service; work travels as git data.

Nothing of the coordinator's disk is mounted into a task. Each run has a *depot*: a directory
of bare repositories on the coordinator's host (run_dir/depot), served by a `git daemon`
service of the run pinned to the coordinator's node, on an internal overlay network of the
run. Per sandbox:

1. stage: the start commit goes into the depot (shared.git), and a repo of the sandbox's own
   (an unguessable name, its objects borrowed from shared.git) gets `refs/heads/start`;
2. provision: a service makes the workspace in node-local volumes (/work, /out) by fetching
   `start` from the depot;
3. the task: a service on the same node (placement constraint) with the policy's limits, on an
   internal overlay network of its own (no route out), or the run's open network;
4. collect: a service on the same node commits what the task left (collect.sh, as for
   containers) and pushes `refs/heads/result` and `refs/heads/out`; the depot's hook takes
   only those two refs, each once;
5. home: the coordinator bundles start..result from the depot, so the intake (fsck, scope,
   quarantine) is exactly the container backend's.

Facts this rests on (measured on Docker 20.10, API 1.41) are in docs/scale-out.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import docker
import docker.errors
import structlog

from runner import git, names
from runner.core.policy import AllowRule
from runner.core.results import Denial
from runner.core.secrets import Masker
from runner.errors import GitError, InputError, SandboxError
from runner.images import PROXY_TAG
from runner.sandbox import labels as L
from runner.sandbox.base import Collected, Execution, Gateway, SandboxBackend, SandboxSpec
from runner.sandbox.docker import _DOCKER_FAULTS, _call, _parse_metrics, connect, translated
from runner.sandbox.logpump import LogPump
from runner.sandbox.options import (
    CACHE,
    CACHE_ENV,
    CONTROL,
    OUT,
    SHARED,
    WORK,
    environment,
    service_task_template,
    volume_mount,
)
from runner.sandbox.swarm_egress import SwarmEgress, task_address
from runner.sandbox.swarm_guard import (
    GUARD_STOP_S,
    Follow,
    Guard,
    GuardLog,
    after,
    guard_template,
)

if TYPE_CHECKING:
    from runner.settings import Settings

log = structlog.get_logger()

DEPOT_PORT = 9418
POLL_S = 0.25
ENDED = {"complete", "failed", "rejected", "shutdown", "orphaned", "remove"}
"""Swarm task states after which the step will not run (any more)."""
START_TRIES = 3
NOT_STARTED = "starting container failed"
"""A task's Err when its container never started (so its script never ran)."""
STAGED = "swarm-staged.json"
"""In a sandbox's state dir: its depot repo and its node (collection after a restart)."""
REREAD_LINES = 64
"""Lines of a task's log read again after it ended, when its follower lost its place."""
GUARD_BASE_S = 300
"""How long a disk guard may take to start and measure what is there before the task."""
MAX_NAME = 63
"""Service names are DNS labels."""


def object_name(*parts: str) -> str:
    """A Swarm object's name: names.container_name's spelling, shortened with a hash when it
    would pass 63 characters (service and config names are DNS labels)."""
    name = "-".join(parts)
    if len(name) <= MAX_NAME:
        return name
    return name[: MAX_NAME - 13] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]


def _script(name: str) -> bytes:
    return (resources.files("runner.sandbox") / "scripts" / name).read_bytes()


@dataclass
class _Staged:
    """A sandbox's place in the depot and on the swarm."""

    repo: Path
    """Its own bare repo in the depot (host path)."""
    url: str
    """The same repo as the run's services reach it."""
    node: str | None = None
    """The node its volumes are on (set by provision)."""


class SwarmBackend(SandboxBackend):
    def __init__(
        self,
        client: docker.DockerClient,
        collector_image: str,
        *,
        proxy_image: str = PROXY_TAG,
        egress_network: str | None = None,
        egress_dns: Sequence[str] | None = None,
    ) -> None:
        self.client = client
        self.collector_image = collector_image
        self.egress = SwarmEgress(client, self._network, proxy_image, egress_network, egress_dns)
        timeout = getattr(client.api, "timeout", None)
        self.timeout: float | None = float(timeout) if timeout else None
        self._lock = threading.Lock()
        self._depots: dict[str, Path] = {}
        self._staged: dict[tuple[str, str, str], _Staged] = {}
        self._keep: set[str] = set()
        """Volumes whose work did not reach the depot: kept by destroy()."""
        self._killed_runs: set[str] = set()
        with translated("reading the swarm's state", self.timeout):
            info = _call(client.info)
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise SandboxError(
                "the Swarm backend needs this daemon to be a swarm manager "
                f"(its swarm state: {swarm.get('LocalNodeState') or 'unknown'}); "
                "run `docker swarm init` here, or the runner on a manager node"
            )
        self.node_id: str = swarm["NodeID"]
        """The coordinator's node: the depot runs here (it serves a directory of this host)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(
            connect(settings.docker_timeout),
            settings.collector_image,
            egress_network=settings.egress_network,
            egress_dns=settings.egress_dns,
        )

    # -- before a run ----------------------------------------------------------------------
    def required_images(self, *, egress: bool) -> set[str]:
        return {self.collector_image} | ({self.egress.image} if egress else set())

    def missing_images(self, names_: Iterable[str]) -> list[str]:
        # Of this node only: each node needs them too (`runner images build` there).
        missing = []
        with translated("looking up images", self.timeout):
            for name in sorted(set(names_)):
                try:
                    _call(self.client.images.get, name)
                except docker.errors.ImageNotFound:
                    missing.append(name)
        return missing

    def image_ids(self, names_: Iterable[str]) -> dict[str, str]:
        # The coordinator's node's ids: each node builds its own (`runner images build`), and a
        # node whose image differs runs that one (Swarm pins no digest of a local image).
        found = {}
        with translated("looking up image ids", self.timeout):
            for name in sorted(set(names_)):
                try:
                    found[name] = str(_call(self.client.images.get, name).id)
                except docker.errors.ImageNotFound:
                    continue
        return found

    def engine_version(self) -> str | None:
        with translated("reading the daemon's version", self.timeout):
            info: dict[str, Any] = _call(self.client.version)
        version = info.get("Version")
        return str(version) if version else None

    def runtimes(self) -> dict[str, dict[str, Any]]:
        with translated("reading the daemon's runtimes", self.timeout):
            info: dict[str, Any] = _call(self.client.info)
        return dict(info.get("Runtimes") or {})

    def close(self) -> None:
        self.client.close()

    # -- the run's depot ---------------------------------------------------------------------
    def _depot(self, spec: SandboxSpec) -> Path:
        """The run's depot directory, its network and its git daemon, made on first use."""
        run_id = spec.run_id
        with self._lock:
            if run_id in self._depots:
                return self._depots[run_id]
            root = spec.state.parent.parent / "depot"
            root.mkdir(parents=True, exist_ok=True)
            shared = root / "shared.git"
            if not shared.exists():
                git.git(
                    root,
                    "init",
                    "--quiet",
                    "--bare",
                    f"--object-format={_format(spec)}",
                    str(shared),
                )
            net = self._network(run_id, "-", object_name("runner", run_id, "depot"), internal=True)
            labels = L.labels_for(run_id, "-", "depot")
            uid = f"{os.getuid()}:{os.getgid()}"
            template = {
                "ContainerSpec": {
                    "Image": self.collector_image,
                    "Command": [
                        "git",
                        "daemon",
                        "--reuseaddr",
                        "--base-path=/depot",
                        "--enable=receive-pack",
                        f"--port={DEPOT_PORT}",
                        "--informative-errors",
                        "/depot",
                    ],
                    "User": uid,
                    "ReadOnly": True,
                    "CapabilityDrop": ["ALL"],
                    "Init": True,
                    "Env": ["HOME=/tmp", "GIT_CONFIG_NOSYSTEM=1"],
                    # The one bind mount of the backend: the coordinator's own depot, into the
                    # depot service on the coordinator's node. Never into a task.
                    "Mounts": [
                        {"Type": "bind", "Source": str(root), "Target": "/depot"},
                        {
                            "Type": "tmpfs",
                            "Target": "/tmp",
                            "TmpfsOptions": {"SizeBytes": 64 << 20},
                        },
                    ],
                    "Labels": labels,
                },
                "Resources": {
                    "Limits": {"NanoCPUs": int(1e9), "MemoryBytes": 512 << 20, "Pids": 256}
                },
                "RestartPolicy": {"Condition": "on-failure", "MaxAttempts": 3},
                "Placement": {"Constraints": [f"node.id=={self.node_id}"]},
                "Networks": [{"Target": net}],
            }
            name = object_name("runner", run_id, "depot")
            with translated(f"starting the depot of run {run_id}", self.timeout):
                existing = self._services([f"{L.RUN}={run_id}", f"{L.ROLE}=depot"])
                for s in existing:  # an earlier process's (a resumed run): made anew
                    with contextlib.suppress(docker.errors.NotFound):
                        _call(self.client.api.remove_service, s["ID"])
                    self._gone(s["Spec"]["Name"])
                # DNS round robin, not a virtual IP: measured here, the VIP of a service on an
                # internal overlay answered "No route to host" (docs/scale-out.md).
                _call(
                    self.client.api.create_service,
                    template,
                    name=name,
                    labels=labels,
                    endpoint_spec={"Mode": "dnsrr"},
                )
            self._depots[run_id] = root
            return root

    def _stage(self, spec: SandboxSpec) -> _Staged:
        """The start commit into the depot, and a repo of this sandbox's own there."""
        root = self._depot(spec)
        shared = root / "shared.git"
        with self._lock:  # one feeder at a time into shared.git
            if not git.has_object(shared, f"{spec.start_commit}^{{commit}}"):
                feeder = spec.state / "feed.git"
                shutil.rmtree(feeder, ignore_errors=True)
                feeder.parent.mkdir(parents=True, exist_ok=True)
                git.git(
                    feeder.parent,
                    "init",
                    "--quiet",
                    "--bare",
                    f"--object-format={_format(spec)}",
                    str(feeder),
                )
                (feeder / "objects" / "info" / "alternates").write_text(f"{spec.objects}\n")
                start = spec.start_commit
                git.git(feeder, "push", "--quiet", str(shared), f"{start}:refs/start/{start}")
                shutil.rmtree(feeder, ignore_errors=True)
        token = secrets.token_hex(16)
        repo = root / f"{token}.git"
        git.git(
            root,
            "init",
            "--quiet",
            "--bare",
            "--template=",
            f"--object-format={_format(spec)}",
            str(repo),
        )
        (repo / "objects" / "info").mkdir(parents=True, exist_ok=True)
        (repo / "objects" / "info" / "alternates").write_text("../../shared.git/objects\n")
        for key, value in (("receive.fsckObjects", "true"), ("core.logAllRefUpdates", "false")):
            git.git(repo, "config", key, value)
        git.update_ref(repo, "refs/heads/start", spec.start_commit)
        shared_commit = self._shared_commit(spec, root)
        if shared_commit:
            git.update_ref(repo, "refs/heads/shared", shared_commit)
        hook = repo / "hooks" / "pre-receive"
        hook.parent.mkdir(exist_ok=True)
        hook.write_bytes(_script("depot-pre-receive.sh"))
        hook.chmod(0o755)
        (repo / "git-daemon-export-ok").touch()  # only sandbox repos are served, not shared.git
        url = f"git://{object_name('runner', spec.run_id, 'depot')}:{DEPOT_PORT}/{token}.git"
        staged = _Staged(repo, url)
        with self._lock:
            self._staged[_key(spec)] = staged
        return staged

    # -- swarm objects ---------------------------------------------------------------------
    def _network(self, run_id: str, task_id: str, name: str, *, internal: bool) -> str:
        with translated(f"creating network {name}", self.timeout):
            try:
                _call(self.client.networks.get, name)
            except docker.errors.NotFound:
                _call(
                    self.client.networks.create,
                    name,
                    driver="overlay",
                    internal=internal,
                    labels=L.labels_for(run_id, task_id, "network"),
                )
        return name

    def _config(self, spec: SandboxSpec, what: str, data: bytes) -> dict[str, Any]:
        """A Swarm config holding one of the sandbox's scripts, mounted at /runner/WHAT."""
        digest = hashlib.sha256(data).hexdigest()[:12]
        name = object_name("runner", spec.run_id, spec.role, spec.task_id, what, digest)
        with translated(f"creating config {name}", self.timeout):
            try:
                found = _call(self.client.configs.get, name)
            except docker.errors.NotFound:
                try:
                    found = _call(
                        self.client.configs.create,
                        name=name,
                        data=data,
                        labels=L.labels_for(spec.run_id, spec.task_id, spec.role),
                    )
                except docker.errors.APIError as exc:
                    if exc.status_code != 409:  # made meanwhile by another step
                        raise
                    found = _call(self.client.configs.get, name)
        return {
            "File": {"Name": f"{CONTROL}/{what}", "UID": "0", "GID": "0", "Mode": 0o444},
            "ConfigID": found.id,
            "ConfigName": name,
        }

    def _volumes(self, spec: SandboxSpec) -> tuple[str, str, str]:
        """The sandbox's node-local volumes: /work, /out and its copy of /shared."""
        role = "task" if spec.role == "collect" else str(spec.role)
        work, out, shared = (
            object_name("runner", spec.run_id, f"{role}-{what}", spec.task_id)
            for what in ("work", "out", "shared")
        )
        return work, out, shared

    def _shared_commit(self, spec: SandboxSpec, depot: Path) -> str | None:
        """The run's exported shared directory as a commit in the depot (made once)."""
        if spec.shared is None:
            return None
        shared = depot / "shared.git"
        with self._lock:
            ref = "refs/shared"
            found = git.resolve(shared, ref)
            if found:
                return found
            index = depot / "shared.index"
            env = {"GIT_INDEX_FILE": str(index), "GIT_WORK_TREE": str(spec.shared)}
            git.git(shared, "add", "-A", "--force", ".", env=env)
            tree = git.out(shared, "write-tree", env=env)
            index.unlink(missing_ok=True)
            ident = {
                "GIT_AUTHOR_NAME": "runner",
                "GIT_AUTHOR_EMAIL": "runner@runner.invalid",
                "GIT_COMMITTER_NAME": "runner",
                "GIT_COMMITTER_EMAIL": "runner@runner.invalid",
            }
            commit = git.out(shared, "commit-tree", tree, "-m", "runner: shared", env=ident)
            git.update_ref(shared, ref, commit)
            return commit

    def _step(
        self,
        spec: SandboxSpec,
        step: str,
        template: dict[str, Any],
        timeout: float,
        on_created: Callable[[str], object] | None = None,
    ) -> tuple[dict[str, Any], bool, str]:
        """Run one one-shot service to its end: (its task's status, timed out, its name).
        `on_created` gets the id of each service made (one per try), before it is waited on."""
        for attempt in range(1, START_TRIES + 1):
            status, timed_out, name = self._step_once(spec, step, template, timeout, on_created)
            # Seen here under load (20.10): "starting container failed: unable to remount dir
            # as readonly: mount tmpfs .../mounts/secrets ... device or resource busy". The
            # container never started, so its script never ran: made again, bounded.
            why = str(status.get("Err") or "")
            if not (status.get("State") == "failed" and why.startswith(NOT_STARTED)):
                break
            log.warning("service did not start; making it again", service=name, error=why[:300],
                        attempt=attempt)  # fmt: skip
        return status, timed_out, name

    def _step_once(
        self,
        spec: SandboxSpec,
        step: str,
        template: dict[str, Any],
        timeout: float,
        on_created: Callable[[str], object] | None = None,
    ) -> tuple[dict[str, Any], bool, str]:
        name = object_name("runner", spec.run_id, step, spec.task_id)
        labels = L.labels_for(spec.run_id, spec.task_id, step)
        with translated(f"creating service {name}", self.timeout):
            with contextlib.suppress(docker.errors.NotFound):  # an earlier attempt's
                _call(self.client.api.remove_service, name)
                self._gone(name)
            made = _call(self.client.api.create_service, template, name=name, labels=labels)
        service_id = made["ID"]
        if on_created is not None:
            on_created(service_id)
        deadline = time.monotonic() + timeout
        timed_out = False
        last: dict[str, Any] = {}
        while True:
            with translated(f"watching service {name}", self.timeout):
                status = self._task_status(service_id)
            if not status and last:
                # Scaled to zero (a timeout, an interrupt), the swarm may delete its task's
                # record before a look sees it end (seen here): it ended, as last seen.
                status = last | {"State": "remove"}
            last = status
            state = status.get("State", "")
            if state in ENDED:
                break
            if time.monotonic() > deadline and not timed_out:
                timed_out = True
                with translated(f"stopping service {name}", self.timeout):
                    self._scale_to_zero(service_id)
                deadline = time.monotonic() + 60
            elif timed_out and time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
        if state == "rejected":
            why = status.get("Err") or "rejected"
            if "No such image" in why:
                raise InputError(
                    f"service {name}: {why} (the image must be on every node of the swarm)",
                    hint="build the images on each node with `runner images build`",
                )
            raise SandboxError(f"the swarm refused service {name}: {why}")
        return status, timed_out, name

    def _task_status(self, service_id: str) -> dict[str, Any]:
        tasks = _call(self.client.api.tasks, filters={"service": service_id})
        if not tasks:
            return {}
        newest = max(tasks, key=lambda t: t.get("CreatedAt", ""))
        status: dict[str, Any] = dict(newest.get("Status") or {})
        status["NodeID"] = newest.get("NodeID")
        status["NetworksAttachments"] = newest.get("NetworksAttachments") or []
        return status

    def _scale_to_zero(self, service_id: str) -> None:
        inspected = _call(self.client.api.inspect_service, service_id)
        spec = inspected["Spec"]
        spec["Mode"] = {"Replicated": {"Replicas": 0}}
        _call(
            self.client.api.update_service,
            service_id,
            inspected["Version"]["Index"],
            task_template=spec["TaskTemplate"],
            name=spec["Name"],
            labels=spec.get("Labels"),
            mode=spec["Mode"],
        )

    def _logs(self, service: str, tail: int | None = None) -> Iterator[bytes]:
        chunks = _call(
            self.client.api.service_logs,
            service,
            stdout=True,
            stderr=True,
            follow=False,
            tail=tail if tail is not None else "all",
        )
        yield from chunks

    def _gone(self, service: str) -> None:
        """Wait (bounded) until a removed service's containers are gone: its volumes free."""
        for _ in range(100):
            left = _call(
                self.client.containers.list,
                all=True,
                sparse=True,
                filters={"label": f"com.docker.swarm.service.name={service}"},
            )
            if not left:
                return
            time.sleep(0.1)

    # -- execute ---------------------------------------------------------------------------
    def execute(self, spec: SandboxSpec) -> Execution:
        with translated(f"running sandbox {spec.role} {spec.task_id} on the swarm", self.timeout):
            return self._execute(spec)

    def _execute(self, spec: SandboxSpec) -> Execution:
        if spec.policy.runtime:
            raise InputError(
                f"policy runtime {spec.policy.runtime!r}: a Swarm service cannot choose its "
                "OCI runtime (API 1.41)",
                hint="make it the nodes' default-runtime in daemon.json and set runtime: null",
            )
        spec.state.mkdir(parents=True, exist_ok=True)
        staged = self._stage(spec)
        node = self._provision(spec, staged)
        staged.node = node
        # Where its work is, for a collection by a later process (`runner resume`).
        record = {"repo": str(staged.repo), "url": staged.url, "node": node}
        (spec.state / STAGED).write_text(json.dumps(record))
        work, out, shared = self._volumes(spec)
        vlabels = L.labels_for(spec.run_id, spec.task_id, "volume")
        mounts = [volume_mount(work, WORK, vlabels), volume_mount(out, OUT, vlabels)]
        if spec.shared is not None:
            mounts.append(volume_mount(shared, SHARED, vlabels, read_only=True))
        env = environment(spec)
        if spec.cache_volume:
            mounts.append(volume_mount(spec.cache_volume, CACHE, spec.cache_labels))
        else:
            env = {k: v for k, v in env.items() if k not in CACHE_ENV}
        if spec.policy.network in ("open", "allowlist") and spec.network:
            networks = [spec.network]  # the run's open overlay, or its allowlist's (a proxy)
        else:  # an internal overlay network of its own: no route anywhere
            networks = [
                self._network(
                    spec.run_id,
                    spec.task_id,
                    object_name("runner", spec.run_id, "net", spec.role, spec.task_id),
                    internal=True,
                )
            ]
        configs = [
            self._config(spec, "task.sh", spec.script.encode()),
            self._config(spec, "wrap.sh", _script("wrap.sh")),
        ]
        template = service_task_template(
            spec,
            command=["/bin/sh", f"{CONTROL}/wrap.sh"],
            image=spec.image,
            mounts=mounts,
            networks=networks,
            configs=configs,
            node=node,
            env=env,
        )
        log_path = spec.state / f"{spec.role}.log"
        follows: list[tuple[str, Follow, LogPump]] = []  # one per try of the task service

        def created(service_id: str) -> None:
            # Followed live from its creation, as a container's attach stream: a flood keeps
            # its head. A new masker each try (it carries a partial match between chunks).
            masker = Masker.from_env(spec.env) if spec.env else None
            pump = LogPump(log_path, spec.policy.max_log, masker=masker)

            def rest(seen: bytes) -> list[bytes]:
                if pump.metrics:  # wrap.sh's last line came: the stream was whole
                    return []
                with contextlib.suppress(*_DOCKER_FAULTS):  # gone: the log ends here
                    tail = b"".join(self._logs(service_id, tail=REREAD_LINES))
                    return [after(seen, tail)]
                return []

            follow = Follow(self.client.api, service_id, pump.run, rest)
            follows.append((service_id, follow, pump))
            follow.start()

        def stop(killed: int) -> None:
            if killed < 1:  # the guard could not kill it on its node: the swarm stops it
                self._scale_to_zero(follows[-1][0])

        guard = self._start_guard(spec, template, stop)
        try:
            started, began = time.monotonic(), time.time()  # provisioned: the task's own step
            status, timed_out, service = self._step(
                spec, spec.role, template, spec.timeout, created
            )
            duration = time.monotonic() - started
        except BaseException:
            for _, follow, _ in follows:
                follow.close()
            raise
        finally:
            self._stop_guard(guard, spec.state)
        glog = guard.log
        container = (status.get("ContainerStatus") or {}).get("ContainerID")
        code = (status.get("ContainerStatus") or {}).get("ExitCode")
        state = status.get("State")
        lost = None
        ours = timed_out or glog.exceeded or spec.run_id in self._killed_runs
        if state not in ("complete", "failed") and not ours:
            lost = f"its service {service} ended {state}: {status.get('Err') or 'no reason'}"
        _, follow, pump = follows[-1]
        if state in ("complete", "failed") and code is not None and code < 128 and not ours:
            # wrap.sh's metrics line is its last: once it came, what is left is a burst. A
            # follower quiet for a second without it lost its place (rotation): see rest().
            follow.settle(
                lambda: bool(pump.metrics) or follow.quiet_for() >= 1, quiet=0.2, bound=15
            )
        else:  # killed: no metrics line is coming
            follow.settle(lambda: True, quiet=0.5, bound=5)
        for _, earlier, _ in follows:
            earlier.close()
        oom = glog.oom or self._oom_killed(container)
        # The client address its proxy logs (allowlist tasks), from the swarm's task record.
        address = task_address(status, spec.network) if spec.proxy and spec.network else None
        cpu, mem, source = _parse_metrics(pump.metrics[-1] if pump.metrics else b"")
        return Execution(
            exit_code=None if code is None and lost else (137 if code is None else int(code)),
            timed_out=timed_out,
            oom_killed=oom,
            duration_s=round(duration, 3),
            log_path=log_path,
            cpu_s=cpu,
            peak_memory_bytes=mem,
            metrics_source=source,
            lost=lost,
            disk_exceeded=glog.exceeded,
            disk_added=glog.added if glog.final else None,
            address=address,
            started_at=began,
        )

    def _oom_killed(self, container: str | None) -> bool:
        """Swarm's task status does not say OOM: the container's state does, read here when
        it is on this node (the task's guard reads it on any node: GuardLog.oom)."""
        if not container:
            return False
        try:
            attrs = _call(self.client.api.inspect_container, container)
        except (docker.errors.NotFound, docker.errors.APIError):
            return False
        return bool((attrs.get("State") or {}).get("OOMKilled"))

    def _start_guard(
        self, spec: SandboxSpec, task: dict[str, Any], kill: Callable[[int], None]
    ) -> Guard:
        """The task's disk guard on its node, once it has measured the base (docs/scale-out.md)."""
        role = f"guard-{spec.role}"
        name = object_name("runner", spec.run_id, role, spec.task_id)
        labels = L.labels_for(spec.run_id, spec.task_id, role)
        template = guard_template(
            task,
            service=object_name("runner", spec.run_id, spec.role, spec.task_id),
            image=self.collector_image,
            network=object_name("runner", spec.run_id, "depot"),
            disk=spec.policy.disk,
            script=self._config(spec, "disk_guard.py", _script("disk_guard.py")),
            labels=labels,
        )
        for _ in range(START_TRIES):
            with contextlib.suppress(docker.errors.NotFound):  # an earlier try's
                _call(self.client.api.remove_service, name)
                self._gone(name)
            made = _call(self.client.api.create_service, template, name=name, labels=labels)
            glog = GuardLog(kill)
            guard = Guard(made["ID"], glog, Follow(self.client.api, made["ID"], glog.run).start())
            deadline = time.monotonic() + GUARD_BASE_S
            status: dict[str, Any] = {}
            while time.monotonic() < deadline:
                if glog.wait(lambda g: g.base is not None, POLL_S * 4):
                    return guard
                status = self._task_status(made["ID"])
                if status.get("State") in ENDED:
                    break
            guard.follow.close()
            why = str(status.get("Err") or "")
            if not why.startswith(NOT_STARTED):  # else: made again, as any step (_step)
                break
        said = "; ".join(glog.errors[-3:]) or why or f"no base within {GUARD_BASE_S} s"
        raise SandboxError(f"the disk guard of {spec.role} {spec.task_id} did not start: {said}")

    def _stop_guard(self, guard: Guard, state: Path) -> None:
        """SIGTERM: the task's OOM as its node saw it, its last look (a writer that ended
        between two looks), then `final`; what it said goes to state/guard.log."""
        with contextlib.suppress(*_DOCKER_FAULTS):  # gone already: what it said stands
            self._scale_to_zero(guard.service)
        if not guard.log.wait(lambda g: g.final, GUARD_STOP_S + 10):
            log.warning("the disk guard gave no last look", service=guard.service,
                        said=guard.log.errors[-3:])  # fmt: skip
        guard.follow.close()
        (state / "guard.log").write_text("".join(f"{line}\n" for line in guard.log.lines))

    def _provision(self, spec: SandboxSpec, staged: _Staged) -> str:
        work, out, shared = self._volumes(spec)
        vlabels = L.labels_for(spec.run_id, spec.task_id, "volume")
        depot_net = object_name("runner", spec.run_id, "depot")
        env = {
            "HOME": "/tmp",
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "RUNNER_DEPOT": staged.url,
            "RUNNER_START": spec.start_commit,
            "RUNNER_BRANCH": _branch(spec),
            "RUNNER_WITH_SHARED": "1" if spec.shared is not None else "",
        }
        # /out too: a new volume takes the ownership of the image's directory it is first
        # mounted on (the collector image's /out and /cache are the sandbox user's); the
        # shared copy is written at /cache here and mounted read-only at /shared in the task.
        mounts = [volume_mount(work, WORK, vlabels), volume_mount(out, OUT, vlabels)]
        if spec.shared is not None:
            mounts.append(volume_mount(shared, CACHE, vlabels))
        template = service_task_template(
            spec,
            command=["/bin/sh", "-e", f"{CONTROL}/provision.sh"],
            image=self.collector_image,
            mounts=mounts,
            networks=[depot_net],
            configs=[self._config(spec, "provision.sh", _script("swarm-provision.sh"))],
            env=env,
        )
        status, timed_out, service = self._step(spec, f"provision-{spec.role}", template, 600)
        code = (status.get("ContainerStatus") or {}).get("ExitCode")
        if status.get("State") != "complete" or timed_out:
            tail = b"".join(self._logs(service)).decode("utf-8", "replace").strip()[-500:]
            why = tail or status.get("Err")
            raise SandboxError(
                f"provisioning {spec.role} {spec.task_id} failed (exit {code}): {why}"
            )
        node = status.get("NodeID")
        if not node:
            raise SandboxError(f"provisioning {spec.task_id}: the swarm did not say on which node")
        return str(node)

    # -- collect ---------------------------------------------------------------------------
    def collect(self, spec: SandboxSpec, moved: Sequence[bytes] | None = None) -> Collected:
        with translated(f"collecting task {spec.task_id}", self.timeout):
            return self._collect(spec)

    def _collect(self, spec: SandboxSpec) -> Collected:
        staged = self._staged.get(_key(spec)) or _load_staged(spec.state / STAGED)
        if staged is None or staged.node is None:
            raise SandboxError(f"collecting task {spec.task_id}: it was never provisioned here")
        work, out, _ = self._volumes(spec)
        vlabels = L.labels_for(spec.run_id, spec.task_id, "volume")
        p = spec.policy
        env = {
            "HOME": "/tmp",
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "RUNNER_DEPOT": staged.url,
            "RUNNER_START": spec.start_commit,
            "RUNNER_TASK": spec.task_id,
            "RUNNER_MAX_OUT": str(p.max_out),
            "GIT_AUTHOR_NAME": f"runner task {spec.task_id}",
            "GIT_AUTHOR_EMAIL": f"{spec.task_id}@runner.invalid",
            "GIT_COMMITTER_NAME": f"runner task {spec.task_id}",
            "GIT_COMMITTER_EMAIL": f"{spec.task_id}@runner.invalid",
        }
        template = service_task_template(
            spec,
            command=["/bin/sh", f"{CONTROL}/swarm-collect.sh"],
            image=self.collector_image,
            mounts=[
                volume_mount(work, WORK, vlabels),
                volume_mount(out, OUT, vlabels, read_only=True),
            ],
            networks=[object_name("runner", spec.run_id, "depot")],
            configs=[
                self._config(spec, "collect.sh", _script("collect.sh")),
                self._config(spec, "swarm-collect.sh", _script("swarm-collect.sh")),
            ],
            node=staged.node,
            env=env,
            # The collector's own git dir (collect.sh's /bundle): the task's commit and
            # RUNNER_OUT's objects are written there before the push.
            tmpfs={"/bundle": p.max_bundle + p.max_out + (64 << 20)},
        )
        status, timed_out, service = self._step(spec, "collect", template, 300)
        raw = b"".join(self._logs(service))[-64 * 1024 :]
        logs = raw.decode("utf-8", "replace")
        (spec.state / "collect.log").write_text(logs)
        if timed_out:
            self._keep.add(work)
            raise SandboxError(
                f"collecting task {spec.task_id}: the collector did not finish within 300 s; "
                f"the workspace is kept in volume {work} on node {staged.node}"
            )
        if status.get("State") != "complete":
            self._keep.add(work)
            return Collected(None, None, None, f"collection failed: {_last_line(logs)}")
        return self._home(spec, staged)

    def _home(self, spec: SandboxSpec, staged: _Staged) -> Collected:
        """What the collector pushed, from the depot: a bundle of start..result, RUNNER_OUT."""
        p = spec.policy
        head = git.resolve(staged.repo, "refs/heads/result")
        outc = git.resolve(staged.repo, "refs/heads/out")
        if head is None or outc is None:
            return Collected(None, None, None, "collection pushed no result to the depot")
        notes: list[str] = []
        message = git.out(staged.repo, "log", "-1", "--format=%B", outc)
        fields = dict(ln.split(" ", 1) for ln in message.splitlines() if " " in ln)
        ignored = fields.get("ignored", "0")
        if ignored.isdigit() and int(ignored):
            notes.append(f"{ignored} path(s) matched by .gitignore were not collected")
        out_dir: Path | None = spec.state / "report" / "out"
        if fields.get("out", "ok") != "ok":
            size = fields["out"].split()[-1]
            out_dir = None
            notes.append(
                f"RUNNER_OUT is larger than the policy's cap ({p.max_out} bytes, it "
                f"has {size}); not copied home"
            )
        else:
            assert out_dir is not None
            _extract_tree(staged.repo, outc, out_dir)
        if head == spec.start_commit:
            return Collected(head, None, out_dir, None, notes)
        dest = spec.state / "collected" / "out"
        dest.mkdir(parents=True, exist_ok=True)
        bundle = dest / "task.bundle"
        git.update_ref(staged.repo, names.RESULT_REF, head)
        try:
            git.git(
                staged.repo,
                "bundle",
                "create",
                "--quiet",
                str(bundle),
                names.RESULT_REF,
                f"^{spec.start_commit}",
            )
        except GitError as exc:
            return Collected(None, None, out_dir, f"its work could not be bundled: {exc}", notes)
        if bundle.stat().st_size > p.max_bundle:
            bundle.unlink()
            return Collected(
                None,
                None,
                out_dir,
                f"bundle is larger than the policy's cap ({p.max_bundle} bytes)",
                notes,
            )
        return Collected(head, bundle, out_dir, None, notes)

    # -- teardown --------------------------------------------------------------------------
    def destroy(self, spec: SandboxSpec) -> None:
        with translated(f"removing the services of {spec.role} {spec.task_id}", self.timeout):
            if spec.role in ("task", "collect"):
                steps = {"task", "collect", "provision-task", "guard-task"}
            else:
                steps = {str(spec.role), f"provision-{spec.role}", f"guard-{spec.role}"}
            found = self._services([f"{L.RUN}={spec.run_id}", f"{L.TASK}={spec.task_id}"])
            ours = [s for s in found if s["Spec"]["Labels"].get(L.ROLE) in steps]
            for s in ours:
                with contextlib.suppress(docker.errors.NotFound):
                    _call(self.client.api.remove_service, s["ID"])
            for s in ours:
                self._gone(s["Spec"]["Name"])
            # A task's volumes go once its collection pushed to the depot (collect() ran),
            # or when it was verify's: the work is in the depot, or it was never work.
            collected = self._staged.get(_key(spec)) or _load_staged(spec.state / STAGED)
            done = spec.role == "verify" or (
                collected is not None and git.resolve(collected.repo, "refs/heads/result")
            )
            for v in self._volumes(spec):
                if not done:  # the task's work is only there: kept past the run's cleanup
                    self._keep.add(v)
                elif v not in self._keep:
                    self._remove_volume(v)
            for n in self._networks([f"{L.RUN}={spec.run_id}", f"{L.TASK}={spec.task_id}"]):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    _call(n.remove)

    def kill(self, run_id: str) -> int:
        self._killed_runs.add(run_id)
        n = 0
        with translated(f"stopping the services of run {run_id}", self.timeout):
            for s in self._services([f"{L.RUN}={run_id}"]):
                if s["Spec"]["Labels"].get(L.ROLE) in ("task", "verify"):
                    with contextlib.suppress(docker.errors.APIError):
                        self._scale_to_zero(s["ID"])
                        n += 1
        return n

    def gateway(self, run_id: str, allow: Sequence[AllowRule]) -> Gateway:
        with translated(f"starting the egress proxy of run {run_id}", self.timeout):
            return self.egress.gateway(run_id, allow)

    def denials(self, gateway: Gateway, address: str, since: float, until: float) -> list[Denial]:
        with translated(f"reading the log of egress proxy {gateway.container}", self.timeout):
            return self.egress.denials(gateway, address, since, until)

    def create_network(self, run_id: str) -> str:
        # `open`: an overlay with a route out (through the node's docker_gwbridge).
        return self._network(run_id, "-", object_name("runner", run_id, "open"), internal=False)

    def cleanup(self, run_id: str | None = None) -> int:
        with translated(
            f"removing the services, networks, configs and volumes of run {run_id}"
            if run_id
            else "looking for what dead runs left",
            self.timeout,
        ):
            if run_id is None:
                dead = {
                    labels[L.RUN]
                    for labels in self._all_labels()
                    if L.RUN in labels and not L.owner_alive(labels)
                }
                return sum(self.cleanup(r) for r in sorted(dead))
            flt = [f"{L.RUN}={run_id}"]
            n = 0
            services = self._services(flt)
            for s in services:
                with contextlib.suppress(docker.errors.NotFound):
                    _call(self.client.api.remove_service, s["ID"])
                    n += 1
            for s in services:
                self._gone(s["Spec"]["Name"])
            for c in _call(self.client.configs.list, filters={"label": flt}):
                with contextlib.suppress(docker.errors.NotFound):
                    _call(c.remove)
                    n += 1
            for net in self._networks(flt):
                with contextlib.suppress(docker.errors.NotFound):
                    _call(net.remove)
                    n += 1
            for v in _call(self.client.volumes.list, filters={"label": flt}):
                if v.name in self._keep:
                    continue
                if self._remove_volume(v.name):
                    n += 1
            self.egress.forget(run_id)
            with self._lock:
                self._depots.pop(run_id, None)
                for key in [k for k in self._staged if k[0] == run_id]:
                    del self._staged[key]
            return n

    def runs(self) -> set[str]:
        with translated("listing the runs' services, networks and volumes", self.timeout):
            return {labels[L.RUN] for labels in self._all_labels() if L.RUN in labels}

    def _all_labels(self) -> list[dict[str, str]]:
        found = [s["Spec"].get("Labels") or {} for s in self._services([L.RUN])]
        found += [n.attrs.get("Labels") or {} for n in self._networks([L.RUN])]
        found += [
            c.attrs["Spec"].get("Labels") or {}
            for c in _call(self.client.configs.list, filters={"label": [L.RUN]})
        ]
        found += [
            v.attrs.get("Labels") or {}
            for v in _call(self.client.volumes.list, filters={"label": [L.RUN]})
        ]
        return found

    def _services(self, labels: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = _call(self.client.api.services, filters={"label": labels})
        return found

    def _networks(self, labels: list[str]) -> list[Any]:
        return _call(self.client.networks.list, filters={"label": labels})

    def _remove_volume(self, name: str) -> bool:
        """Remove a volume of this node; its services' containers may take a moment to go."""
        for _ in range(50):
            try:
                _call(self.client.api.remove_volume, name)
                return True
            except docker.errors.NotFound:
                return False
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
            time.sleep(0.2)
        return False

    def remove_caches(self, repo_key: str | None = None) -> int:
        label = f"{L.CACHE}={repo_key}" if repo_key else L.CACHE
        removed = 0
        with translated("removing cache volumes", self.timeout):
            for v in _call(self.client.volumes.list, filters={"label": label}):
                try:
                    _call(v.remove, force=True)
                    removed += 1
                except docker.errors.APIError as exc:
                    if exc.status_code not in (404, 409):
                        raise
        return removed


def _load_staged(path: Path) -> _Staged | None:
    try:
        record = json.loads(path.read_text())
        return _Staged(Path(record["repo"]), str(record["url"]), str(record["node"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _key(spec: SandboxSpec) -> tuple[str, str, str]:
    role = "task" if spec.role == "collect" else str(spec.role)
    return (spec.run_id, role, spec.task_id)


def _format(spec: SandboxSpec) -> str:
    return "sha256" if len(spec.start_commit) == 64 else "sha1"


def _branch(spec: SandboxSpec) -> str:
    """The branch of the host clone the pipeline made (the task's own name for it)."""
    try:
        head = (spec.workspace / ".git" / "HEAD").read_text().strip()
    except OSError:
        head = ""
    if head.startswith("ref: refs/heads/"):
        return head.removeprefix("ref: refs/heads/")
    return f"task/{spec.task_id}" if spec.role == "task" else str(spec.role)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def _extract_tree(repo: Path, commit: str, dest: Path) -> None:
    """A commit's tree into dest: regular files and directories only (no symlink, no
    submodule of the task's ever reaches the host's file system)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)
    if not git.out(repo, "ls-tree", "--name-only", commit):
        return  # an empty tree's archive is not one tarfile reads
    archive = dest.parent / "out.tar"
    git.git(repo, "archive", "--format=tar", "-o", str(archive), commit)
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isreg() or m.isdir()]
            tar.extractall(dest, members=members, filter="data")
    finally:
        archive.unlink(missing_ok=True)
