"""Integration tests: the real Docker daemon and real git. No daemon: they fail, never skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from runner.coordinator import repo_key
from runner.images import build_images
from runner.sandbox import labels
from runner.settings import Settings

HERE = Path(__file__).parent
# The runtime the sandboxes of this test session run under: CI runs the sandbox tests a second
# time with RUNNER_RUNTIME=runsc (gVisor). Tests say what differs there, and why.
RUNTIME = Settings().runtime
GVISOR = RUNTIME == "runsc"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.test",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"integration tests need a running Docker daemon: {exc}", pytrace=False)
    return client


@pytest.fixture(scope="session")
def images(docker_client: docker.DockerClient) -> None:
    """The runner's images, built once (a no-op when they are up to date)."""
    build_images(docker_client, Settings().images_dir, progress=lambda _m: None)


def git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | GIT_ENV
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env=env, check=True)  # fmt: skip
    return proc.stdout.strip()


def make_repo(root: Path, files: dict[str, str]) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    repo: Path

    @property
    def result(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data

    def task(self, task_id: str) -> dict[str, Any]:
        return next(t for t in self.result["tasks"] if t["id"] == task_id)

    def show(self, rev: str, path: str) -> str:
        return git(self.repo, "show", f"{rev}:{path}")


RunPlan = Callable[..., Run]


def runner_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "runner", *args], capture_output=True, text=True, cwd=cwd,
        env=os.environ | (env or {}), timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture
def run_plan(tmp_path: Path, images: None, docker_client: docker.DockerClient) -> Iterator[RunPlan]:
    """Write plan text next to a repo made from files, run `runner run --json`, return it.

    After the test: nothing labelled with the test's runs may be left in Docker.
    """
    run_ids: list[str] = []

    def run(
        plan: str,
        files: dict[str, str],
        *,
        extra: dict[str, str] | None = None,
        uncommitted: dict[str, str] | None = None,
    ) -> Run:
        repo = make_repo(tmp_path, files)
        for rel, text in (uncommitted or {}).items():
            (repo / rel).write_text(text)
        for rel, text in (extra or {}).items():
            (tmp_path / rel).write_text(textwrap.dedent(text))
        plan_path = tmp_path / "plan.yaml"
        plan_path.write_text(textwrap.dedent(plan))
        proc = runner_cli("run", str(plan_path), "--repo", str(repo), "--json")
        out = Run(proc.returncode, proc.stdout, proc.stderr, repo)
        if proc.stdout.strip().startswith("{"):
            run_ids.append(out.result["run_id"])
        return out

    yield run
    remove_caches(docker_client, tmp_path / "repo")
    for run_id in run_ids:
        assert leftovers(docker_client, run_id) == [], f"run {run_id} left objects in Docker"


def remove_caches(client: docker.DockerClient, repo: Path) -> None:
    """Cache volumes outlive runs by design; a test's repo is gone after it, so are they."""
    if not (repo / ".git").exists():
        return
    flt: dict[str, str | list[str] | bool] = {"label": f"{labels.CACHE}={repo_key(repo)}"}
    for volume in client.volumes.list(filters=flt):
        volume.remove(force=True)


def leftovers(client: docker.DockerClient, run_id: str) -> list[str]:
    flt: dict[str, str | list[str] | bool] = {"label": f"{labels.RUN}={run_id}"}
    names = [str(c.name) for c in client.containers.list(all=True, filters=flt)]
    return names + [str(n.name) for n in client.networks.list(filters=flt)]


def start_run(tmp_path: Path, repo: Path, plan: str) -> subprocess.Popen[str]:
    """`runner run plan.yaml --json` in the background (to signal, kill or watch it)."""
    (tmp_path / "plan.yaml").write_text(plan)
    return subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "plan.yaml", "--repo", str(repo), "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_file(path: Path, seconds: float = 15) -> None:
    """Bounded wait for a file a task writes (its partial work) before the test acts."""
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
