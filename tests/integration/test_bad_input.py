"""Bad input: exit 2, one clear message naming file and field, nothing started or changed."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from tests.integration.conftest import git, make_repo, runner_cli

FILES = {"README.md": "hi\n", "src/a.txt": "a\n", "contracts/c.md": "c\n"}

CASES = {
    "cycle": ("tasks:\n  - id: a\n    depends_on: [b]\n    run: 'true'\n"
              "  - id: b\n    depends_on: [a]\n    run: 'true'\n",
              "plan.yaml:3: tasks[0](a).depends_on: dependency cycle: a -> b -> a"),
    "unknown dependency": ("tasks:\n  - id: a\n    run: 'true'\n    depends_on: [ghost]\n",
                           "plan.yaml:4: tasks[0](a).depends_on[0]: unknown task 'ghost'"),
    "unknown policy": ("policy: nosuch\ntasks:\n  - id: a\n    run: 'true'\n",
                       "plan.yaml:1: policy: unknown policy 'nosuch'"),
    "missing shared dir": ("shared: nowhere\ntasks:\n  - id: a\n    run: 'true'\n",
                           "plan.yaml:1: shared: 'nowhere' is not a directory at HEAD"),
    "base does not resolve": ("base: no-such-branch\ntasks:\n  - id: a\n    run: 'true'\n",
                              "plan.yaml:1: base: 'no-such-branch' is not a commit in"),
    "overlap refused": ("tasks:\n  - id: a\n    scope: ['src/**']\n    run: 'true'\n"
                        "  - id: b\n    scope: ['src/a.txt']\n    run: 'true'\n",
                        "plan.yaml:6: tasks[1](b).scope: a and b overlap: 'src/**' ~ 'src/a.txt'"),
    "unknown field": ("tasks:\n  - id: a\n    run: 'true'\n    scpoe: [x]\n",
                      "plan.yaml:4: tasks[0](a).scpoe: unknown field"),
    "bad yaml": ("tasks: [\n", "plan.yaml:2: not valid YAML"),
    "missing env": ("tasks:\n  - id: a\n    run: 'true'\n    env: [SANDBOX_TEST_UNSET]\n",
                    "plan.yaml:4: tasks[0](a).env: SANDBOX_TEST_UNSET is not set on the host"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_plan_starts_nothing(
    case: str, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    plan_text, expected = CASES[case]
    repo = make_repo(tmp_path, FILES)
    before = git(repo, "for-each-ref"), git(repo, "status", "--porcelain")
    (tmp_path / "plan.yaml").write_text(plan_text)
    for command in ("plan", "run"):
        proc = runner_cli(command, "plan.yaml", "--repo", str(repo), cwd=tmp_path)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert expected in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert (git(repo, "for-each-ref"), git(repo, "status", "--porcelain")) == before
    # A run makes its state dir before its first container; counting the daemon's
    # containers instead would count other runs on a shared daemon.
    assert not (repo / ".git" / "runner").exists()


def test_not_a_git_repo(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text("tasks:\n  - id: a\n    run: 'true'\n")
    (tmp_path / "plain").mkdir()
    proc = runner_cli("run", "plan.yaml", "--repo", "plain", cwd=tmp_path)
    assert proc.returncode == 2
    assert "plain: not a git repository" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_plan_file(tmp_path: Path) -> None:
    proc = runner_cli("plan", "nope.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "nope.yaml: no such plan file" in proc.stderr


def test_branch_named_runner_is_reported(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, FILES)
    git(repo, "branch", "runner")
    (tmp_path / "plan.yaml").write_text("tasks:\n  - id: a\n    run: 'true'\n")
    proc = runner_cli("run", "plan.yaml", "--repo", str(repo), cwd=tmp_path)
    assert proc.returncode == 2 and "a branch named 'runner' exists" in proc.stderr


def test_missing_image_is_named_before_anything_starts(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, FILES)
    (tmp_path / "plan.yaml").write_text(
        "tasks:\n  - id: a\n    image: runner-test/nosuch:1\n    run: 'true'\n"
    )
    proc = runner_cli("run", "plan.yaml", "--repo", str(repo), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "image(s) not found: runner-test/nosuch:1" in proc.stderr
    assert "runner images build" in proc.stderr
    assert not (repo / ".git" / "runner").exists()


def test_unreachable_docker_daemon_is_a_clear_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, FILES)
    (tmp_path / "plan.yaml").write_text("tasks:\n  - id: a\n    run: 'true'\n")
    no_daemon = {"DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    proc = runner_cli("run", "plan.yaml", "--repo", str(repo), cwd=tmp_path, env=no_daemon)
    assert proc.returncode == 3, proc.stderr
    assert "cannot reach the Docker daemon" in proc.stderr and "Traceback" not in proc.stderr
    assert not (repo / ".git" / "runner").exists()
