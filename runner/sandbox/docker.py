"""DockerBackend: the only module that imports docker. Sandboxes are hardened containers."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
import structlog
from docker.models.containers import Container
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from runner.errors import SandboxError
from runner.sandbox import labels as L
from runner.sandbox.base import Collected, Execution, SandboxBackend, SandboxSpec
from runner.sandbox.options import BUNDLE, OUT, container_options

log = structlog.get_logger()
T = TypeVar("T")
METRICS_MARK = "##runner-metrics "


def _transient(exc: BaseException) -> bool:
    # Observed on busy hosts: the daemon answers 5xx or drops the connection under load.
    # 404 (missing) and 409 (conflict) are answers, not faults: never retried.
    if isinstance(exc, requests.exceptions.ConnectionError):
        return True
    if isinstance(exc, docker.errors.APIError) and exc.status_code is not None:
        return exc.status_code >= 500 and "no such" not in str(exc).lower()
    return False


_retry = retry(
    retry=retry_if_exception(_transient),
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=0.5, max=4),
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
    """A client with a timeout on every call. Raises SandboxError if the daemon is unreachable."""
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except docker.errors.DockerException as exc:
        raise SandboxError(
            f"cannot reach the Docker daemon: {exc}",
            hint="start Docker (is /var/run/docker.sock there?) or set DOCKER_HOST",
        ) from None
    return client


def script_text(name: str) -> str:
    return (resources.files("runner.sandbox") / "scripts" / name).read_text(encoding="utf-8")


class DockerBackend(SandboxBackend):
    def __init__(self, client: docker.DockerClient, collector_image: str) -> None:
        self.client = client
        # The collector uses the runner's own image: it has git even when a task's image has not.
        self.collector_image = collector_image

    # -- execute ---------------------------------------------------------------------------
    def execute(self, spec: SandboxSpec) -> Execution:
        self._prepare_state(spec)
        self._ensure_cache(spec)
        log_path = spec.state / f"{spec.role}.log"
        container = self._create(spec)
        started = time.monotonic()
        timed_out, stats = False, None
        try:
            _call(container.start)
            metrics: list[bytes] = []
            pump = threading.Thread(
                target=_pump_logs,
                args=(container, log_path, spec.policy.max_log, metrics),
                daemon=True,
            )
            pump.start()
            try:
                code: int | None = int(container.wait(timeout=spec.timeout)["StatusCode"])
            except requests.exceptions.RequestException:  # the read timed out: the task did
                timed_out = True
                stats = self._sample_stats(container)
                with contextlib.suppress(docker.errors.APIError):
                    container.kill()
                code = int(container.wait(timeout=60)["StatusCode"])
            duration = time.monotonic() - started
            pump.join(timeout=30)
            _call(container.reload)
            oom = bool(container.attrs["State"].get("OOMKilled"))
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise SandboxError(f"sandbox {container.name} failed: {exc}") from None
        cpu, mem, source = _parse_metrics(metrics[-1] if metrics else b"")
        if source is None and stats is not None:
            cpu, mem, source = stats
        return Execution(code, timed_out, oom, round(duration, 3), log_path, cpu, mem, source)

    def _create(self, spec: SandboxSpec) -> Container:
        opts = container_options(spec)
        try:
            return _call(self.client.containers.create, **opts)
        except docker.errors.ImageNotFound:
            raise SandboxError(
                f"image {opts['image']!r} not found",
                hint="build the runner's images with `runner images build`, or build yours",
            ) from None
        except docker.errors.APIError as exc:
            raise SandboxError(f"cannot create sandbox {opts['name']}: {exc.explanation}") from None

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
            self.client.volumes.get(spec.cache_volume)
        except docker.errors.NotFound:
            _call(self.client.volumes.create, name=spec.cache_volume, labels=spec.cache_labels)

    @staticmethod
    def _sample_stats(container: Container) -> tuple[float | None, int | None, str] | None:
        try:
            s: dict[str, Any] = container.stats(stream=False)  # type: ignore[assignment]
            cpu = s["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
            mem = s["memory_stats"].get("max_usage") or s["memory_stats"].get("usage")
            return round(cpu, 3), mem, "docker_stats"
        except (docker.errors.DockerException, KeyError, TypeError):
            return None

    # -- collect ---------------------------------------------------------------------------
    def collect(self, spec: SandboxSpec) -> Collected:
        cspec = _as_collector(spec, self.collector_image)
        self._prepare_state(cspec)
        container = self._create(cspec)
        try:
            _call(container.start)
            code = int(container.wait(timeout=300)["StatusCode"])
            logs = container.logs().decode("utf-8", "replace")
            (spec.state / "collect.log").write_text(logs)
            if code != 0:
                raise SandboxError(
                    f"collecting task {spec.task_id} failed (exit {code}): {_last_line(logs)}"
                )
            dest = spec.state / "collected"
            dest.mkdir(exist_ok=True)
            _extract(container, BUNDLE, dest, spec.policy.max_bundle, "bundle")
            out_dir = spec.state / "report"
            out_dir.mkdir(exist_ok=True)
            _extract(container, OUT, out_dir, spec.policy.max_out, "RUNNER_OUT")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise SandboxError(f"collecting task {spec.task_id} failed: {exc}") from None
        finally:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
        head = (dest / "bundle" / "head").read_text().strip()
        bundle = dest / "bundle" / "task.bundle"
        return Collected(head, bundle if bundle.exists() else None, out_dir / "out")

    # -- teardown --------------------------------------------------------------------------
    def destroy(self, spec: SandboxSpec) -> None:
        self._remove_containers([f"{L.RUN}={spec.run_id}", f"{L.TASK}={spec.task_id}"])

    def kill(self, run_id: str) -> int:
        running = self.client.containers.list(filters={"label": f"{L.RUN}={run_id}"})
        for c in running:
            with contextlib.suppress(docker.errors.APIError):
                c.kill()
        return len(running)

    def create_network(self, run_id: str) -> str:
        name = f"runner-{run_id}"
        _call(
            self.client.networks.create,
            name,
            driver="bridge",
            labels=L.labels_for(run_id, "-", "network"),
        )
        return name

    def cleanup(self, run_id: str | None = None) -> int:
        if run_id is not None:
            n = self._remove_containers([f"{L.RUN}={run_id}"])
            return n + self._remove_networks([f"{L.RUN}={run_id}"])
        dead = {
            c.labels[L.RUN]
            for c in self.client.containers.list(all=True, filters={"label": L.RUN})
            if not L.owner_alive(c.labels)
        } | {
            n.attrs["Labels"][L.RUN]
            for n in self.client.networks.list(filters={"label": L.RUN})
            if not L.owner_alive(n.attrs["Labels"])
        }
        return sum(self.cleanup(r) for r in sorted(dead))

    def _remove_containers(self, filters: list[str]) -> int:
        found = self.client.containers.list(all=True, filters={"label": filters})
        for c in found:
            try:
                _call(c.remove, force=True)
            except docker.errors.APIError as exc:
                # Gone already, or "removal already in progress" (409) by a concurrent cleanup.
                if exc.status_code not in (404, 409):
                    raise
        return len(found)

    def _remove_networks(self, filters: list[str]) -> int:
        found = self.client.networks.list(filters={"label": filters})
        for n in found:
            with contextlib.suppress(docker.errors.NotFound):
                _call(n.remove)
        return len(found)

    def remove_caches(self, repo_key: str | None = None) -> int:
        """Remove cache volumes: of one repo (by its key), or all of them."""
        label = f"{L.CACHE}={repo_key}" if repo_key else L.CACHE
        found = self.client.volumes.list(filters={"label": label})
        for v in found:
            with contextlib.suppress(docker.errors.NotFound):
                v.remove(force=True)
        return len(found)


def _pump_logs(container: Container, path: Path, cap: int, metrics: list[bytes]) -> None:
    """Stream the task's output to its log as it comes, up to cap bytes, then keep only the
    last 4 KiB. The wrapper's metrics line is appended to `metrics` wherever it falls: the
    daemon copies stdout and stderr separately, so it need not come last."""
    kept, dropped, tail = 0, 0, b""
    mark = METRICS_MARK.encode()
    with path.open("wb") as fh:
        try:
            for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                if mark in chunk:
                    metrics += [ln for ln in chunk.splitlines() if ln.startswith(mark)]
                head, chunk = chunk[: max(0, cap - kept)], chunk[max(0, cap - kept) :]
                if head:
                    fh.write(head)
                    fh.flush()
                    kept += len(head)
                if chunk:
                    dropped += len(chunk)
                    tail = (tail + chunk)[-4096:]
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            pass  # the container went away (killed, removed): the log ends here
        if dropped:
            fh.write(f"\n[runner: {dropped} bytes over max_log dropped; the last ones:]\n".encode())
            fh.write(tail)


def _as_collector(spec: SandboxSpec, image: str) -> SandboxSpec:
    from dataclasses import replace

    return replace(spec, role="collect", image=image, env={}, network=None, timeout=300)


def _chown(path: Path, uid: int, gid: int) -> None:
    if os.geteuid() == 0:
        os.chown(path, uid, gid)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def _parse_metrics(line: bytes) -> tuple[float | None, int | None, str | None]:
    text = line.decode("utf-8", "replace")
    if not text.startswith(METRICS_MARK):
        return None, None, None
    fields = dict(kv.split("=", 1) for kv in text[len(METRICS_MARK) :].split() if "=" in kv)
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
    stream, _stat = container.get_archive(path)
    with tempfile.TemporaryFile() as tmp:
        size = 0
        for chunk in _chunks(stream):
            size += len(chunk)
            if size > cap + 1024 * 1024:  # tar headers on top of the payload
                raise SandboxError(f"{what} of task is larger than the policy's cap ({cap} bytes)")
            tmp.write(chunk)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as tar:
            members = [m for m in tar.getmembers() if m.isreg() or m.isdir()]
            tar.extractall(dest, members=members, filter="data")


def _chunks(stream: Iterator[bytes] | io.BufferedIOBase) -> Iterator[bytes]:
    yield from stream
