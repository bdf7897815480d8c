"""What a task can read of the user's repo: every branch with `objects: all`, only its start
commit's history with `objects: reachable`, and its work comes home and merges either way."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.integration.conftest import git, leftovers, make_repo, remove_caches, runner_cli


def probe(out: str, other: str, blob: str) -> str:
    """A task script writing one line per object it probes: "NAME visible" or "NAME hidden"."""
    return textwrap.dedent(f"""\
        seen() {{
          if git cat-file -e "$2" 2>/dev/null; then echo "$1 visible"; else echo "$1 hidden"; fi
        }}
        mkdir -p {out}
        {{ seen other {other}; seen other-blob {blob}; seen parent HEAD~1; }} > {out}/seen.txt
        """)


@pytest.fixture
def repo(tmp_path: Path, images: None, docker_client: docker.DockerClient) -> Iterator[Path]:
    """main: 2 commits; `other`, forked from the first: a commit and a blob main never had."""
    repo = make_repo(tmp_path, {"README.md": "hello\n"})
    git(repo, "checkout", "-qb", "other")
    (repo / "secret.txt").write_text("only on the other branch\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "other")
    git(repo, "checkout", "-q", "main")
    (repo / "README.md").write_text("hello again\n")
    git(repo, "commit", "-qam", "second")
    yield repo
    remove_caches(docker_client, repo)


@pytest.mark.parametrize("mode", ["all", "reachable"])
def test_a_task_reads_other_branches_only_with_objects_all(
    repo: Path, tmp_path: Path, docker_client: docker.DockerClient, mode: str
) -> None:
    other = git(repo, "rev-parse", "other")
    blob = git(repo, "rev-parse", "other:secret.txt")
    hidden = mode == "reachable"
    # verify runs under the plan's policy: it sees the same, and fails if it sees too much.
    verify = f"git cat-file -e {other}" + (" && exit 1 || true" if hidden else "")
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        textwrap.dedent(f"""\
        policy: mode.yaml
        verify: {json.dumps(verify)}
        tasks:
          - id: first
            scope: ["one/**"]
            run: {json.dumps(probe("one", other, blob))}
          - id: second
            depends_on: [first]
            scope: ["two/**"]
            run: {json.dumps(probe("two", other, blob))}
        """)
    )
    (tmp_path / "mode.yaml").write_text(f"objects: {mode}\n")
    proc = runner_cli("run", str(plan), "--repo", str(repo), "--json")
    assert proc.stdout.startswith("{"), proc.stderr
    result = json.loads(proc.stdout)
    try:
        assert proc.returncode == 0, proc.stderr
        assert [t["status"] for t in result["tasks"]] == ["merged", "merged"]
        assert [w["verify"] for w in result["waves"]] == ["green", "green"]
        head = result["integration_commit"]
        seen = "hidden" if hidden else "visible"
        for wave in ("one", "two"):  # two starts from the integration head holding one's work
            shown = git(repo, "show", f"{head}:{wave}/seen.txt").splitlines()
            assert shown == [f"other {seen}", f"other-blob {seen}", "parent visible"]
        stores = Path(result["state_dir"]) / "objects"
        assert not stores.exists()  # the per-commit stores go with the run
    finally:
        assert leftovers(docker_client, result["run_id"]) == []
