"""The attack suite: real tasks in real sandboxes through the real CLI, judged on the host.

Every item here is also `integration` (a daemon and git are needed; no daemon: fail, never
skip). Cases that do not interfere share one plan, run once per module (`hostile`), so the
suite stays fast; each test then asserts one attack's outcome on the host side.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.conftest import (  # noqa: F401  (fixtures shared with integration)
    Run,
    docker_client,
    git,
    images,
    leftovers,
    make_repo,
    remove_caches,
)

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        # The table's own test is pure: it needs no daemon.
        if HERE in path.parents and path.name != "test_table.py":
            item.add_marker(pytest.mark.integration)


class Attempt(Run):
    """A finished hostile run, with what the host side needs to judge it."""

    outside: Path
    """A directory outside the repo and the sandboxes that hostile tasks aim at."""

    def refs(self) -> set[str]:
        return set(git(self.repo, "for-each-ref", "--format=%(refname)").split())

    def has_object(self, sha: str) -> bool:
        proc = subprocess.run(
            ["git", "-C", str(self.repo), "cat-file", "-e", sha], capture_output=True, check=False
        )
        return proc.returncode == 0

    def files(self, rev: str) -> set[str]:
        return set(git(self.repo, "ls-tree", "-r", "--name-only", rev).splitlines())

    def integration(self) -> str:
        return str(self.result["integration_commit"])

    def ref_of(self, task_id: str) -> str:
        return f"refs/runner/{self.result['run_id']}/task/{task_id}"

    def state_files(self) -> list[Path]:
        """Every file the runner wrote for the repo: run dirs, usage log, results."""
        root = self.repo / ".git" / "runner"
        return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


Launch = Callable[..., Attempt]


def hash_blob(text: str) -> str:
    proc = subprocess.run(["git", "hash-object", "--stdin"], input=text, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def hostile(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    images: None,  # noqa: F811
    docker_client: docker.DockerClient,  # noqa: F811
) -> Iterator[Launch]:
    """Run a plan of hostile tasks once: `launch(plan, files, ...)` -> Attempt.

    In the plan text, @OUTSIDE@ becomes a host directory outside the repo (a target for
    escapes) and @KEY@ any value `setup(repo)` returns. `watch()` is called while the run is
    going on (to look at live sandboxes). After the module: nothing labelled with its runs may
    be left in Docker.
    """
    made: list[tuple[Path, str]] = []

    def launch(
        plan: str,
        files: dict[str, str],
        *,
        extra: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        setup: Callable[[Path], dict[str, str]] | None = None,
        watch: Callable[[], None] | None = None,
        timeout: float = 600,
    ) -> Attempt:
        root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
        repo = make_repo(root, files)
        outside = root / "outside"
        outside.mkdir()
        subs = {"OUTSIDE": str(outside)} | (setup(repo) if setup else {})
        text = textwrap.dedent(plan)
        for key, value in subs.items():
            text = text.replace(f"@{key}@", value)
        for rel, body in (extra or {}).items():
            (root / rel).write_text(textwrap.dedent(body))
        (root / "plan.yaml").write_text(text)
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "run", str(root / "plan.yaml"),
             "--repo", str(repo), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=os.environ | (env or {}),
        )  # fmt: skip
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.extend(proc.communicate()))
        reader.start()
        deadline = time.monotonic() + timeout
        while reader.is_alive():
            if watch is not None:
                watch()
            reader.join(timeout=0.3)
            if time.monotonic() > deadline:  # a hung run fails the module, never hangs CI
                proc.kill()
                reader.join()
                pytest.fail(f"runner run did not finish in {timeout:g}s: {out[1:2]}")
        attempt = Attempt(proc.returncode, out[0], out[1], repo)
        attempt.outside = outside
        if attempt.stdout.strip().startswith("{"):
            made.append((repo, attempt.result["run_id"]))
        return attempt

    yield launch
    for repo, run_id in made:
        remove_caches(docker_client, repo)
        assert leftovers(docker_client, run_id) == [], f"run {run_id} left objects in Docker"


def wait_for(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.2)):  # bounded
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"gave up waiting: {what}")


@pytest.fixture(scope="module")
def outside_server(images: None) -> Iterator[Server]:  # noqa: F811
    """An HTTP server of the test's own on a Docker network the test creates: "the outside"."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    with (
        Network() as net,
        (
            DockerContainer("runner/sandbox:1")
            .with_command("python3 -u -m http.server 8080 --bind 0.0.0.0")
            .with_network(net)
            .with_kwargs(user="10001:10001")
        ) as server,
    ):
        wrapped = server.get_wrapped_container()
        found = Server("", 8080, wrapped)

        def up() -> bool:
            wrapped.reload()
            found.addr = wrapped.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
            return bool(found.addr) and found.reachable()

        wait_for(up, "the test's own server to come up")
        yield found


@dataclass
class Server:
    addr: str
    port: int
    container: Any

    def reachable(self) -> bool:
        try:
            socket.create_connection((self.addr, self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def requests_seen(self) -> list[str]:
        """Request lines the server logged (http.server logs each one to stderr)."""
        logs = self.container.logs().decode("utf-8", "replace")
        return [ln for ln in logs.splitlines() if '"GET ' in ln or '"CONNECT ' in ln]
