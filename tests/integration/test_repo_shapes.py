"""Repositories of other shapes than the default: each runs a plan end to end, for real."""

from __future__ import annotations

import json
from pathlib import Path

import docker

from tests.integration.conftest import git, leftovers, make_repo, remove_caches, runner_cli

PLAN = """\
verify: test -f src/a.txt && test -f docs/b.txt
tasks:
  - {id: code, scope: ['src/**'], run: 'echo more >> src/a.txt && git commit -qam code'}
  - {id: docs, scope: ['docs/**'], run: 'mkdir -p docs && echo b > docs/b.txt'}
"""


def test_a_sha256_repository_runs_and_merges(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main", "--object-format=sha256")
    (repo / "src").mkdir()
    (repo / "src" / "a.txt").write_text("a\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial")
    (tmp_path / "plan.yaml").write_text(PLAN)
    proc = runner_cli("run", str(tmp_path / "plan.yaml"), "--repo", str(repo), "--json")
    remove_caches(docker_client, repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert [t["status"] for t in result["tasks"]] == ["merged", "merged"]
    assert len(result["integration_commit"]) == 64
    head = result["integration_commit"]
    assert git(repo, "show", f"{head}:src/a.txt") == "a\nmore"
    assert git(repo, "show", f"{head}:docs/b.txt") == "b"
    assert leftovers(docker_client, result["run_id"]) == []


def test_a_repository_whose_path_has_a_colon_runs_and_merges(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    # Docker's `SRC:DST:MODE` volume strings split such a path; mounts keep it whole.
    repo = make_repo(tmp_path / "team:project", {"src/a.txt": "a\n"})
    (tmp_path / "plan.yaml").write_text(PLAN)
    proc = runner_cli("run", str(tmp_path / "plan.yaml"), "--repo", str(repo), "--json")
    remove_caches(docker_client, repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert [t["status"] for t in result["tasks"]] == ["merged", "merged"]
    assert git(repo, "show", f"{result['integration_commit']}:docs/b.txt") == "b"
    assert leftovers(docker_client, result["run_id"]) == []
