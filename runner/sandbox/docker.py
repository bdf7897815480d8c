"""DockerBackend: the only module that imports docker. Sandboxes are hardened containers.

Every public method of DockerBackend goes through one translation (`_docker_op`): whatever
docker-py, requests or urllib3 raise becomes a SandboxError naming what was being done (or an
InputError for the user's own mistakes, such as a missing image). Nothing above this module
handles Docker's exceptions.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import wraps
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

import docker
import docker.errors
import requests.exceptions
import structlog
import urllib3.exceptions
from docker.models.containers import Container
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from runner.core.policy import AllowRule
from runner.core.results import Denial
from runner.core.secrets import Masker
from runner.errors import InputError, RunnerError, SandboxError
from runner.images import PROXY_TAG
from runner.sandbox import labels as L
from runner.sandbox.base import Collected, Execution, Gateway, SandboxBackend, SandboxSpec
from runner.sandbox.caches import CacheVolume, from_attrs
from runner.sandbox.disk import DiskGuard
from runner.sandbox.egress import EgressProxies
from runner.sandbox.logpump import METRICS_MARK, LogPump
from runner.sandbox.options import BUNDLE, OUT, container_name, container_options
from runner.stamps import is_empty

if TYPE_CHECKING:
    from runner.settings import Settings

log = structlog.get_logger()
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
START_HINT = (
    "start it with `sudo systemctl start docker` (or run `dockerd`), "
    "or set DOCKER_HOST to a daemon that runs"
)
IMAGE_HINT = "build the runner's images with `runner images build` (a plan may name yours)"


# -- the one translation of Docker's errors ----------------------------------------------------
def _chain(exc: BaseException) -> Iterator[BaseException]:
    """exc and what it wraps: causes, contexts, and the exceptions urllib3 and requests keep
    in their args (a timeout inside a ConnectionError inside a DockerException...)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        inner = [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
        todo.extend(x for x in inner if isinstance(x, BaseException))


def _timed_out(exc: BaseException) -> bool:
    timeouts = (
        requests.exceptions.ReadTimeout,
        urllib3.exceptions.ReadTimeoutError,
        TimeoutError,  # socket.timeout: a raw socket read (attach) that got no answer
    )
    return any(isinstance(e, timeouts) for e in _chain(exc))


def _unreachable(exc: BaseException) -> OSError | None:
    """The OSError that kept us from the daemon (no socket, refused, reset), if that is it."""
    links = (
        requests.exceptions.ConnectionError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.NewConnectionError,
        ConnectionError,
        FileNotFoundError,
    )
    chain = list(_chain(exc))
    if not any(isinstance(e, links) for e in chain):
        return None
    found = [e for e in chain if isinstance(e, OSError) and e.strerror]
    return found[-1] if found else OSError(str(exc))


def daemon_address() -> str:
    """Where the client looks for the daemon, as the user would set it."""
    host = os.environ.get("DOCKER_HOST")
    return f"DOCKER_HOST={host}" if host else f"{DEFAULT_SOCKET} (DOCKER_HOST unset)"


def runner_error(exc: BaseException, doing: str, timeout: float | None) -> RunnerError:
    """The runner's own error for a Docker fault met while `doing` (a phrase: "creating ...")."""
    if isinstance(exc, RunnerError):
        return exc
    if _timed_out(exc):
        within = f" within {timeout:g} s" if timeout else ""
        return SandboxError(
            f"the Docker daemon did not answer{within} while {doing} ({daemon_address()}); "
            "if it hangs, restart it (`sudo systemctl restart docker`), or raise "
            "RUNNER_DOCKER_TIMEOUT if it is only slow"
        )
    if isinstance(exc, docker.errors.ImageNotFound):
        return InputError(f"{_explained(exc)} (while {doing})", hint=IMAGE_HINT)
    cause = _unreachable(exc)
    if cause is not None:
        why = cause.strerror or str(cause)
        return SandboxError(
            f"cannot reach the Docker daemon at {daemon_address()} while {doing}: {why}; "
            + START_HINT
        )
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code or 0
        if status == 400:  # the daemon refused what it was asked: the plan's or policy's doing
            return InputError(f"the Docker daemon refused {doing}: {_explained(exc)}")
        if status >= 500:
            return SandboxError(f"the Docker daemon failed while {doing}: {_explained(exc)}")
        return SandboxError(f"Docker said no while {doing}: {_explained(exc)} ({status})")
    return SandboxError(f"Docker failed while {doing}: {exc}")


def _explained(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc).strip()


_DOCKER_FAULTS = (
    docker.errors.DockerException,
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)


@contextlib.contextmanager
def translated(doing: str, timeout: float | None) -> Iterator[None]:
    """Docker's errors inside become the runner's own (RunnerError passes through as is)."""
    try:
        yield
    except _DOCKER_FAULTS as exc:
        raise runner_error(exc, doing, timeout) from None


def _docker_op(doing: str | Callable[..., str]) -> Callable[[F], F]:
    """A public method of the backend: its Docker errors translated. `doing` is a phrase, or
    a function of the method's arguments (self first) making one."""

    def deco(fn: F) -> F:
        @wraps(fn)
        def wrapper(self: DockerBackend, *args: Any, **kwargs: Any) -> Any:
            what = doing(self, *args, **kwargs) if callable(doing) else doing
            with translated(what, self.timeout):
                return fn(self, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return deco


# -- retries of transient faults -------------------------------------------------------------
def _transient(exc: BaseException) -> bool:
    # Observed on busy hosts: the daemon answers 5xx or drops the connection under load.
    # Answers are not faults: 4xx (400 refused, 404 missing, 409 conflict) is never retried.
    # Nor is a timeout: a hung daemon would only be waited for again.
    if _timed_out(exc):
        return False
    if isinstance(exc, requests.exceptions.ConnectionError):
        return True
    if isinstance(exc, docker.errors.APIError) and exc.status_code is not None:
        text = str(exc).lower()
        # "no such ..." and a runtime that cannot start the process come as 500 too: answers.
        return exc.status_code >= 500 and "no such" not in text and "oci runtime" not in text
    return False


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    fn = state.args[0] if state.args else None
    log.warning(
        "docker API call failed; retrying",
        call=getattr(fn, "__qualname__", repr(fn)),
        attempt=state.attempt_number,
        wait_s=round(state.next_action.sleep, 2) if state.next_action else None,
        error=str(exc)[:300],
    )


RETRIES = 4
"""Attempts of one API call (bounded: about 4 s of backoff in all)."""

_retry = retry(
    retry=retry_if_exception(_transient),
    stop=stop_after_attempt(RETRIES),
    # Jitter: workers that failed together do not all come back at the same instant.
    wait=wait_exponential(multiplier=0.5, max=4) + wait_random(0, 0.5),
    before_sleep=_log_retry,
    reraise=True,
)


# Bound Docker API calls at once, apart from sandboxes at once: a burst of creates from many
# workers is what makes a busy daemon answer 5xx or hang.
_API_SLOTS = threading.BoundedSemaphore(8)


@_retry
def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with _API_SLOTS:
        return fn(*args, **kwargs)


def connect(timeout: float = 120) -> docker.DockerClient:
    """A client with a timeout on every call.

    Raises:
        SandboxError: the daemon is not there, or does not answer within `timeout`.
    """
    # No retry here: a daemon that is not running will not be by the next attempt, and the
    # user waits for the one line that says so.
    with translated("connecting", timeout):
        client = docker.from_env(timeout=timeout)  # type: ignore[arg-type]
        try:
            client.ping()
        except BaseException:
            client.close()
            raise
    return client


def script_text(name: str) -> str:
    return (resources.files("runner.sandbox") / "scripts" / name).read_text(encoding="utf-8")


def _sandbox(self: DockerBackend, spec: SandboxSpec, *_: Any) -> str:
    return f"running sandbox {container_name(spec)}"


MOVED = "moved"
"""In the collector's control dir: the paths whose index entries collect.sh drops."""


class DockerBackend(SandboxBackend):
    workspaces_on_host = True  # bind-mounted from spec.workspace

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
        # The collector uses the runner's own image: it has git even when a task's image has not.
        self.collector_image = collector_image
        self.egress = EgressProxies(client, proxy_image, egress_network, egress_dns)
        timeout = getattr(client.api, "timeout", None)
        self.timeout: float | None = float(timeout) if timeout else None
        """Seconds one API call may take (the client's); named in a hung daemon's error."""
        self._killed_runs: set[str] = set()
        """Runs whose sandboxes this backend killed (kill()): their ends are not lost."""

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

    @_docker_op("looking up images")
    def missing_images(self, names: Iterable[str]) -> list[str]:
        missing = []
        for name in sorted(set(names)):
            try:
                _call(self.client.images.get, name)
            except docker.errors.ImageNotFound:
                missing.append(name)
        return missing

    @_docker_op("looking up image ids")
    def image_ids(self, names: Iterable[str]) -> dict[str, str]:
        found = {}
        for name in sorted(set(names)):
            try:
                image = _call(self.client.images.get, name)
            except docker.errors.ImageNotFound:
                continue
            found[name] = str(image.id)
        return found

    @_docker_op("looking up image digests")
    def image_digests(self, names: Iterable[str]) -> dict[str, list[str]]:
        found = {}
        for name in sorted(set(names)):
            try:
                image = _call(self.client.images.get, name)
            except docker.errors.ImageNotFound:
                continue
            digests = [str(d) for d in image.attrs.get("RepoDigests") or []]
            if digests:
                found[name] = sorted(digests)
        return found

    @_docker_op("reading the daemon's version")
    def engine_version(self) -> str | None:
        info: dict[str, Any] = _call(self.client.version)
        version = info.get("Version")
        return str(version) if version else None

    @_docker_op("reading the daemon's runtimes")
    def runtimes(self) -> dict[str, dict[str, Any]]:
        info: dict[str, Any] = _call(self.client.info)
        return dict(info.get("Runtimes") or {})

    def close(self) -> None:
        self.client.close()

    # -- execute ---------------------------------------------------------------------------
    @_docker_op(_sandbox)
    def execute(self, spec: SandboxSpec) -> Execution:
        self._prepare_state(spec)
        self._ensure_cache(spec)
        disk_paths = self._disk_paths(spec)
        log_path = spec.state / f"{spec.role}.log"
        container = self._create(spec)
        masker = Masker.from_env(spec.env) if spec.env else None
        if masker and masker.too_short:
            log.warning(
                "values too short to mask; they may show in the log", names=masker.too_short
            )
        pump = LogPump(log_path, spec.policy.max_log, masker=masker)
        timed_out, stats, address, lost = False, None, None, None
        started, since = time.monotonic(), time.time()
        guard = DiskGuard(disk_paths, spec.policy.disk, lambda: _kill(container))
        try:
            # Attached before the start, so the stream carries every byte from the first.
            stream = _call(container.attach, stdout=True, stderr=True, stream=True, logs=False)
            # Started before the container: what is there already (the checkout, a warm cache)
            # is the base; only what the task adds counts against the policy's `disk`.
            guard.start()
            started, since = time.monotonic(), time.time()
            _call(container.start)
            if spec.run_id in self._killed_runs and spec.role != "collect":
                # The run was stopped between its kill of running sandboxes and this start:
                # this one would otherwise run until its timeout.
                _kill(container)
            if spec.proxy and spec.network:  # the client address its proxy logs
                address = _address(container, spec.network)
            reader = threading.Thread(target=_drain, args=(pump, stream), daemon=True)
            reader.start()
            try:
                code: int | None = int(container.wait(timeout=spec.timeout)["StatusCode"])
            except requests.exceptions.RequestException as exc:
                if not _timed_out(exc):
                    raise  # the daemon went away, not the task's time
                timed_out = True  # the read timed out: the task did
                stats = self._sample_stats(container)
                _kill(container)
                code = int(container.wait(timeout=60)["StatusCode"])
            duration = time.monotonic() - started
            guard.stop()
            reader.join(timeout=30)
            _call(container.reload)
            oom = bool(container.attrs["State"].get("OOMKilled"))
            ours = oom or timed_out or guard.exceeded or spec.run_id in self._killed_runs
            if code == 137 and not (oom or timed_out) and _being_removed(container):
                raise docker.errors.NotFound("removed while it ran")
            if code is not None and code > 128 and not ours:
                signal = self._killed_from_outside(container, since)
                if signal is not None:
                    lost = (
                        f"its sandbox {container.name} was killed from outside "
                        f"(signal {signal}) while it ran"
                    )
        except docker.errors.NotFound:
            # Removed from outside while it ran: the task's result, not the runner's fault.
            # Its workspace is still on the host, so its work can still be collected.
            lost = f"its sandbox {container.name} was removed from outside while it ran"
            code, oom, duration = None, False, time.monotonic() - started
        finally:
            guard.stop()
        cpu, mem, source = _parse_metrics(pump.metrics[-1] if pump.metrics else b"")
        if source is None and stats is not None:
            cpu, mem, source = stats
        return Execution(
            code, timed_out, oom, round(duration, 3), log_path, cpu, mem, source,
            disk_exceeded=guard.exceeded, disk_added=guard.added, address=address, lost=lost,
            started_at=since,
        )  # fmt: skip

    def _killed_from_outside(self, container: Container, since: float) -> str | None:
        """The signal of a kill someone else sent it through the daemon (`docker kill`,
        `docker stop`), if any. A task that kills itself leaves no such event; the runner's
        own kills (timeout, disk guard, interrupt) are known before this is asked."""
        events = _call(
            self.client.events,
            since=int(since) - 1,
            until=int(time.time()) + 1,
            filters={"container": container.id, "event": "kill"},
            decode=True,
        )
        try:
            for event in events:
                attrs = (cast(dict[str, Any], event).get("Actor") or {}).get("Attributes") or {}
                return str(attrs.get("signal") or "?")
        finally:
            events.close()
        return None

    def _disk_paths(self, spec: SandboxSpec) -> list[Path]:
        """The host side of what a task can write: /work, /out and its cache volume."""
        paths = [spec.workspace, spec.state / "out"]
        if spec.cache_volume:
            volume = _call(self.client.volumes.get, spec.cache_volume)
            paths.append(Path(volume.attrs["Mountpoint"]))
        return paths

    def _create(self, spec: SandboxSpec) -> Container:
        opts = container_options(spec)
        with translated(f"creating sandbox {opts['name']}", self.timeout):
            return _call(self.client.containers.create, **opts)

    def _prepare_state(self, spec: SandboxSpec) -> None:
        control = spec.state / "control"
        for sub in ("control", "out", "bundle"):
            (spec.state / sub).mkdir(parents=True, exist_ok=True)
        (control / "task.sh").write_text(spec.script)
        for name in ("wrap.sh", "collect.sh"):
            (control / name).write_text(script_text(name))
        uid, gid = (int(x) for x in spec.policy.user.split(":"))
        for sub in ("out", "bundle"):
            _chown(spec.state / sub, uid, gid)

    def _ensure_cache(self, spec: SandboxSpec) -> None:
        if not spec.cache_volume:
            return
        try:
            _call(self.client.volumes.get, spec.cache_volume)
        except docker.errors.NotFound:
            _call(self.client.volumes.create, name=spec.cache_volume, labels=spec.cache_labels)

    @staticmethod
    def _sample_stats(container: Container) -> tuple[float | None, int | None, str] | None:
        try:
            s: dict[str, Any] = container.stats(stream=False)  # type: ignore[assignment]
            cpu = s["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
            mem = s["memory_stats"].get("max_usage") or s["memory_stats"].get("usage")
            return round(cpu, 3), mem, "docker_stats"
        except (*_DOCKER_FAULTS, KeyError, TypeError):
            return None  # only a fallback for the metrics: the kill that follows matters

    # -- collect ---------------------------------------------------------------------------
    @_docker_op(lambda self, spec, moved=None: f"collecting task {spec.task_id}")
    def collect(self, spec: SandboxSpec, moved: Sequence[bytes] | None = None) -> Collected:
        cspec = _as_collector(spec, self.collector_image)
        self._prepare_state(cspec)
        hint = spec.state / "control" / MOVED
        if moved is None:
            hint.unlink(missing_ok=True)
        else:
            hint.write_bytes(b"".join(path + b"\0" for path in moved))
        container = self._create(cspec)
        notes: list[str] = []
        try:
            _call(container.start)
            try:
                code = int(container.wait(timeout=cspec.timeout)["StatusCode"])
            except requests.exceptions.RequestException as exc:
                if not _timed_out(exc):
                    raise
                raise SandboxError(
                    f"collecting task {spec.task_id}: the collector did not finish within "
                    f"{cspec.timeout:g} s; the workspace is kept at {spec.workspace}"
                ) from None
            # Bounded: the collector's output quotes the task's file names.
            raw = cast(bytes, _call(container.logs, tail=200))
            logs = raw.decode("utf-8", "replace")[-64 * 1024 :]
            (spec.state / "collect.log").write_text(logs)
            out_dir: Path | None = spec.state / "report"
            copying, report = time.time(), spec.state / "report"
            try:
                if is_empty(spec.state / "out"):  # the task's alone: read-only in the collector
                    (report / "out").mkdir(parents=True, exist_ok=True)
                else:
                    _extract(container, OUT, report, spec.policy.max_out, "RUNNER_OUT")
            except _TooLarge as exc:  # the extras are refused, never the work with them
                out_dir, notes = None, [f"{exc}; not copied home"]
            if code != 0:
                return Collected(None, None, out_dir, f"collection failed: {_last_line(logs)}")
            dest = spec.state / "collected"
            try:
                _extract(container, f"{BUNDLE}/out", dest, spec.policy.max_bundle, "bundle")
            except _TooLarge as exc:
                return Collected(None, None, out_dir, str(exc), notes)
            copied = (copying, time.time())
        finally:
            # Best effort: destroy() and the run's cleanup remove it too.
            with contextlib.suppress(*_DOCKER_FAULTS):
                _call(container.remove, force=True)
        head = _read_small(dest / "out" / "head")
        ignored = _read_small(dest / "out" / "ignored")
        if ignored.isdigit() and int(ignored):
            notes.append(f"{ignored} path(s) matched by .gitignore were not collected")
        bundle = dest / "out" / "task.bundle"
        return Collected(
            head or None,
            bundle if bundle.is_file() else None,
            out_dir / "out" if out_dir else None,
            None if head else "collection wrote no head commit",
            notes,
            copied,
        )

    @_docker_op(lambda self, spec: f"starting a shell in the sandbox of task {spec.task_id}")
    def interactive(self, spec: SandboxSpec) -> int:
        cli = shutil.which("docker")
        if cli is None:
            raise SandboxError(
                "an interactive shell needs the `docker` command-line client on this host",
                hint="give the command to run after --",
            )
        self._prepare_state(spec)
        self._ensure_cache(spec)
        opts = container_options(spec)
        # The same sandbox with a terminal: a shell instead of the task's wrapped script.
        opts |= {"command": ["/bin/sh", "-c", _SHELL], "tty": True, "stdin_open": True}
        with translated(f"creating sandbox {opts['name']}", self.timeout):
            container = _call(self.client.containers.create, **opts)
        # The terminal is the docker CLI's craft (raw mode, resizes, detach keys): hand over.
        return subprocess.call([cli, "start", "--attach", "--interactive", str(container.id)])

    # -- teardown --------------------------------------------------------------------------
    @_docker_op(lambda self, spec: f"removing the sandboxes of task {spec.task_id}")
    def destroy(self, spec: SandboxSpec) -> None:
        # A verify sandbox and a task may share a name (a task called `wave-1`): the role
        # tells them apart. A task's sandbox goes with its collector.
        roles = {"task", "collect"} if spec.role in ("task", "collect") else {str(spec.role)}
        self._remove_containers([f"{L.RUN}={spec.run_id}", f"{L.TASK}={spec.task_id}"], roles)

    @_docker_op(lambda self, run_id: f"stopping the sandboxes of run {run_id}")
    def kill(self, run_id: str) -> int:
        self._killed_runs.add(run_id)  # before the kills: their ends are the runner's doing
        running = self._list([f"{L.RUN}={run_id}"], all=False)
        for c in running:
            _kill(c)
        return len(running)

    def _list(self, labels: list[str], *, all: bool = True) -> list[Container]:
        # Sparse: no inspect per container, so a container another run removes meanwhile
        # is not a 404 here (seen with runs started next to each other).
        return _call(self.client.containers.list, all=all, sparse=True, filters={"label": labels})

    @_docker_op(lambda self, run_id: f"creating the network of run {run_id}")
    def create_network(self, run_id: str) -> str:
        name = f"runner-{run_id}"
        _call(
            self.client.networks.create,
            name,
            driver="bridge",
            labels=L.labels_for(run_id, "-", "network"),
        )
        return name

    @_docker_op(lambda self, run_id, *_: f"starting the egress proxy of run {run_id}")
    def gateway(self, run_id: str, allow: Sequence[AllowRule]) -> Gateway:
        return self.egress.gateway(run_id, allow)

    @_docker_op(lambda self, gateway, *_: f"reading the log of egress proxy {gateway.container}")
    def denials(self, gateway: Gateway, address: str, since: float, until: float) -> list[Denial]:
        return self.egress.denials(gateway, address, since, until)

    @_docker_op(
        lambda self, run_id=None: (
            f"removing the containers and networks of run {run_id}"
            if run_id
            else "looking for what dead runs left"
        )
    )
    def cleanup(self, run_id: str | None = None) -> int:
        if run_id is not None:
            n = self._remove_containers([f"{L.RUN}={run_id}"])
            return n + self._remove_networks([f"{L.RUN}={run_id}"])
        dead = {
            c.attrs["Labels"][L.RUN]
            for c in self._list([L.RUN])
            if not L.owner_alive(c.attrs["Labels"])
        } | {
            n.attrs["Labels"][L.RUN]
            for n in self._networks(L.RUN)
            if not L.owner_alive(n.attrs["Labels"])
        }
        return sum(self.cleanup(r) for r in sorted(dead))

    @_docker_op("listing the runs' containers and networks")
    def runs(self) -> set[str]:
        """Ids of every run that has containers or networks, alive or not."""
        found = {c.attrs["Labels"][L.RUN] for c in self._list([L.RUN])}
        return found | {n.attrs["Labels"][L.RUN] for n in self._networks(L.RUN)}

    def _networks(self, label: str | list[str]) -> list[Any]:
        return _call(self.client.networks.list, filters={"label": label})

    def _remove_containers(self, filters: list[str], roles: set[str] | None = None) -> int:
        found = self._list(filters)
        if roles is not None:
            found = [c for c in found if c.attrs["Labels"].get(L.ROLE) in roles]
        for c in found:
            try:
                _call(c.remove, force=True)
            except docker.errors.APIError as exc:
                # Gone already, or "removal already in progress" (409) by a concurrent cleanup.
                if exc.status_code not in (404, 409):
                    raise
        return len(found)

    def _remove_networks(self, filters: list[str]) -> int:
        removed = 0
        for n in self._networks(filters):
            try:
                _call(n.remove)
                removed += 1
            except docker.errors.NotFound:
                removed += 1  # gone already
            except docker.errors.APIError as exc:
                if exc.status_code not in (400, 403, 409):
                    raise
                # Still in use (a sandbox of a live run, a service of another backend): it is
                # that run's to remove; the rest of the cleanup goes on.
                log.warning("network in use: kept", network=n.name, why=exc.explanation)
        return removed

    @_docker_op("removing cache volumes")
    def remove_caches(self, repo_key: str | None = None) -> int:
        """Remove cache volumes: of one repo (by its key), or all of them."""
        label = f"{L.CACHE}={repo_key}" if repo_key else L.CACHE
        found = _call(self.client.volumes.list, filters={"label": label})
        removed = 0
        for v in found:
            try:
                _call(v.remove, force=True)
                removed += 1
            except docker.errors.APIError as exc:
                # 409: in use by a running sandbox, kept; 404: removed meanwhile.
                if exc.status_code not in (404, 409):
                    raise
        return removed

    @_docker_op("listing cache volumes")
    def cache_volumes(
        self, repo_key: str | None = None, *, sizes: bool = False
    ) -> list[CacheVolume]:
        """The runner's cache volumes (by label): of one repo (by its key), or every repo's.
        sizes: with their disk usage and use (`docker system df -v`)."""
        if sizes:
            found = _call(self.client.df).get("Volumes") or []
        else:
            found = [v.attrs for v in _call(self.client.volumes.list, filters={"label": L.CACHE})]
        volumes = [from_attrs(attrs) for attrs in found]
        return [v for v in volumes if v and (repo_key is None or v.repo_key == repo_key)]

    @_docker_op(lambda self, name, *_: f"removing cache volume {name}")
    def remove_cache(self, name: str, repo_key: str) -> bool:
        """Remove one cache volume of repo_key; False when a sandbox uses it or it is gone.
        A volume without the runner's label for that repo is never removed."""
        try:
            volume = _call(self.client.volumes.get, name)
            if (volume.attrs.get("Labels") or {}).get(L.CACHE) != repo_key:
                return False
            _call(volume.remove)
        except docker.errors.APIError as exc:
            if exc.status_code in (404, 409):  # gone already; in use by a running sandbox
                return False
            raise SandboxError(f"cannot remove cache volume {name}: {exc.explanation}") from None
        return True


_SHELL = 'mkdir -p "$HOME" 2>/dev/null; cd /work && exec /bin/sh -i'
"""What `runner shell` runs in a sandbox without a command: a shell at the task's clone."""


def _kill(container: Container) -> None:
    # Already gone or stopped (it ended as we looked): nothing to stop.
    with contextlib.suppress(docker.errors.APIError):
        _call(container.kill)


def _being_removed(container: Container) -> bool:
    """A SIGKILL we did not send: is the container going away (`docker rm -f` from outside)?
    The kill comes first, the removal a moment later; a task that killed itself stays."""
    for _ in range(20):  # bounded: 2 s
        if container.attrs["State"].get("Status") in ("removing", "dead"):
            return True
        time.sleep(0.1)
        try:
            container.reload()
        except docker.errors.NotFound:
            return True
    return False


def _drain(pump: LogPump, stream: Any) -> None:
    try:
        pump.run(stream)
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        pass  # the container went away (killed, removed): the log ends here
    finally:
        # The response first: docker-py's close() alone leaves a socket object unclosed.
        with contextlib.suppress(Exception):
            stream._response.close()
        with contextlib.suppress(Exception):
            stream.close()


def _read_small(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            return fh.read(256).decode("ascii", "replace").strip()
    except OSError:
        return ""


def _address(container: Container, network: str) -> str | None:
    _call(container.reload)
    nets = container.attrs["NetworkSettings"]["Networks"] or {}
    return str(nets.get(network, {}).get("IPAddress") or "") or None


def _as_collector(spec: SandboxSpec, image: str) -> SandboxSpec:
    from dataclasses import replace

    return replace(spec, role="collect", image=image, env={}, network=None, proxy=None, timeout=300)


def _chown(path: Path, uid: int, gid: int) -> None:
    if os.geteuid() == 0:
        os.chown(path, uid, gid)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def _parse_metrics(line: bytes) -> tuple[float | None, int | None, str | None]:
    text = line.decode("utf-8", "replace")
    mark = METRICS_MARK.decode()
    if not text.startswith(mark):
        return None, None, None
    fields = dict(kv.split("=", 1) for kv in text[len(mark) :].split() if "=" in kv)
    cpu = int(fields["cpu_ns"]) / 1e9 if fields.get("cpu_ns", "").isdigit() else None
    mem = int(fields["mem_bytes"]) if fields.get("mem_bytes", "").isdigit() else None
    if cpu is None and mem is None:
        return None, None, None
    # cgroup, or times under gVisor (no cgroup files inside: CPU only, no peak memory).
    source = fields.get("src") if fields.get("src") in ("cgroup", "times") else "cgroup"
    return (round(cpu, 3) if cpu is not None else None), mem, source


def _extract(container: Container, path: str, dest: Path, cap: int, what: str) -> None:
    """Copy a directory out through the Docker API (works with networking off), size-capped.

    Only regular files and directories are kept: a task's symlinks or devices never reach
    the host file system.
    """
    stream, _stat = _call(container.get_archive, path)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as tmp:
        size = 0
        for chunk in _chunks(stream):
            size += len(chunk)
            if size > cap + 1024 * 1024:  # tar headers on top of the payload
                raise _TooLarge(f"{what} is larger than the policy's cap ({cap} bytes)")
            tmp.write(chunk)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as tar:
            members = [m for m in tar.getmembers() if m.isreg() or m.isdir()]
            tar.extractall(dest, members=members, filter="data")


class _TooLarge(Exception):
    pass


def _chunks(stream: Iterator[bytes] | io.BufferedIOBase) -> Iterator[bytes]:
    yield from stream
