"""The sandbox backend contract, run against every backend (one today: Docker)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import docker
import pytest

from runner import git as rgit
from runner.core.policy import Policy
from runner.sandbox.base import SandboxBackend, SandboxSpec
from runner.sandbox.docker import DockerBackend
from runner.workspace import make_clone
from tests.integration.conftest import leftovers, make_repo

BACKENDS: dict[str, Callable[[docker.DockerClient], SandboxBackend]] = {
    "docker": lambda client: DockerBackend(client, "runner/sandbox:1"),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(
    request: pytest.FixtureRequest, images: None, docker_client: docker.DockerClient
) -> SandboxBackend:
    return BACKENDS[request.param](docker_client)


@pytest.fixture
def spec(
    tmp_path: Path, backend: SandboxBackend, docker_client: docker.DockerClient
) -> Iterator[SandboxSpec]:
    repo = make_repo(tmp_path, {"a.txt": "a\n"})
    start = rgit.out(repo, "rev-parse", "HEAD")
    policy = Policy()
    state = tmp_path / "state"
    made = SandboxSpec(
        run_id="contract-" + secrets.token_hex(3), task_id="t", role="task",
        image="runner/sandbox:1", policy=policy, script="true", timeout=60,
        workspace=state / "work", objects=rgit.common_dir(repo) / "objects", state=state,
        start_commit=start,
    )  # fmt: skip
    make_clone(repo, start, made.workspace, "task/t", policy.user)
    yield made
    backend.cleanup(made.run_id)
    assert leftovers(docker_client, made.run_id) == []


def test_exit_code_and_log_are_a_result(backend: SandboxBackend, spec: SandboxSpec) -> None:
    ex = backend.execute(replace(spec, script="echo to-the-log; exit 7"))
    assert (ex.exit_code, ex.timed_out, ex.oom_killed) == (7, False, False)
    assert "to-the-log" in ex.log_path.read_text()


def test_log_is_the_tasks_output_alone(backend: SandboxBackend, spec: SandboxSpec) -> None:
    # The task's last output has no newline: the runner's metrics line must not join it.
    ex = backend.execute(replace(spec, script="echo first; printf done"))
    assert ex.log_path.read_bytes() == b"first\ndone"
    assert ex.cpu_s is not None and ex.metrics_source in ("cgroup", "times")


def test_timeout_is_a_result(backend: SandboxBackend, spec: SandboxSpec) -> None:
    ex = backend.execute(replace(spec, script="sleep 60", timeout=1))
    assert ex.timed_out and ex.duration_s < 20


def test_collect_without_changes_brings_no_bundle(
    backend: SandboxBackend, spec: SandboxSpec
) -> None:
    backend.execute(spec)
    collected = backend.collect(spec)
    assert collected.bundle is None and collected.head == spec.start_commit


def test_collect_commits_leftovers_into_a_verifiable_bundle(
    backend: SandboxBackend, spec: SandboxSpec
) -> None:
    script = "echo c > c.txt && git add c.txt && git commit -qm c && echo d > d.txt"
    assert backend.execute(replace(spec, script=script)).exit_code == 0
    collected = backend.collect(spec)
    assert collected.bundle is not None and collected.head != spec.start_commit
    repo = spec.objects.parent.parent
    rgit.bundle_verify(repo, collected.bundle)
    commit = rgit.fetch_bundle(repo, collected.bundle, "refs/runner-result", "refs/test/t")
    assert rgit.changed_paths(repo, spec.start_commit, commit) == ["c.txt", "d.txt"]


# Staged, then rewritten within the same second to the same size with the mtime set back:
# git's one-second stat view of the index calls that clean. Both ways the collector is told
# what moved (the host's list, or nothing: no entry trusted) bring the last content home, and
# a skip-worktree entry the task committed stays as committed.
RACY = """
blob=$(echo hidden | git hash-object -w --stdin)
git update-index --add --cacheinfo "100644,$blob,h.txt" && git update-index --skip-worktree h.txt
git commit -qm hidden
printf 'hellO\\n' > a.txt && git add a.txt
was=$(stat -c %y a.txt)
printf 'HellO\\n' > a.txt && touch -d "$was" a.txt
"""


@pytest.mark.parametrize("moved", [[b"a.txt"], None], ids=["host-list", "no-list"])
def test_collect_takes_the_last_content_of_a_racily_clean_edit(
    backend: SandboxBackend, spec: SandboxSpec, moved: list[bytes] | None
) -> None:
    assert backend.execute(replace(spec, script=RACY)).exit_code == 0
    collected = backend.collect(spec, moved)
    assert collected.bundle is not None, collected
    repo = spec.objects.parent.parent
    commit = rgit.fetch_bundle(repo, collected.bundle, "refs/runner-result", "refs/test/t")
    assert rgit.out(repo, "show", f"{commit}:a.txt") == "HellO"
    assert rgit.out(repo, "show", f"{commit}:h.txt") == "hidden"


def test_runner_out_comes_home_without_links(backend: SandboxBackend, spec: SandboxSpec) -> None:
    script = 'echo report > "$RUNNER_OUT/r.txt" && ln -s /etc/shadow "$RUNNER_OUT/secret"'
    assert backend.execute(replace(spec, script=script)).exit_code == 0
    collected = backend.collect(spec)
    assert collected.out_dir is not None
    assert sorted(p.name for p in collected.out_dir.iterdir()) == ["r.txt"]


def test_oversized_bundle_is_refused(backend: SandboxBackend, spec: SandboxSpec) -> None:
    small = replace(spec, policy=Policy(max_bundle=64 * 1024))
    script = "head -c 2000000 /dev/urandom > big.bin"
    assert backend.execute(replace(small, script=script)).exit_code == 0
    collected = backend.collect(small)
    assert collected.bundle is None and collected.problem is not None
    assert "larger than the policy's cap" in collected.problem


def test_destroy_removes_the_sandbox_and_is_idempotent(
    backend: SandboxBackend, spec: SandboxSpec, docker_client: docker.DockerClient
) -> None:
    backend.execute(spec)
    assert leftovers(docker_client, spec.run_id) != []  # kept until destroyed (for collection)
    backend.destroy(spec)
    assert leftovers(docker_client, spec.run_id) == []
    backend.destroy(spec)


def test_missing_images_and_runtimes_come_from_the_engine(backend: SandboxBackend) -> None:
    assert backend.missing_images(["runner/sandbox:1", "runner/no-such-image:0"]) == [
        "runner/no-such-image:0"
    ]
    assert "runc" in backend.runtimes()
    assert "runner/sandbox:1" in backend.required_images(egress=False)
