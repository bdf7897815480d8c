"""`runner ps/logs/diff/show/apply/accept` on real runs: real Docker, real git.

One run (a merged task, a scope violation, a failed task with partial work) is made once;
each test that changes a repo works on its own copy of it (refs, run state and all).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.conftest import (
    RunPlan,
    git,
    leftovers,
    make_repo,
    remove_caches,
    runner_cli,
    start_run,
)

PLAN = """\
verify: "test -f src/new.txt && echo verified"
tasks:
  - id: good
    scope: ["src/**"]
    run: |
      echo hello from good
      echo new > src/new.txt
      git add -A && git commit -qm "good work"
  - id: bad
    scope: ["docs/**"]
    run: |
      echo outside > outside.txt
      echo inside > docs/c.txt
  - id: broken
    scope: ["lib/**"]
    run: |
      mkdir -p lib && echo partial > lib/x.txt
      echo failing >&2
      exit 3
"""
FILES = {"src/a.txt": "a\n", "docs/b.txt": "b\n"}


@pytest.fixture(scope="module")
def made(
    tmp_path_factory: pytest.TempPathFactory, images: None, docker_client: docker.DockerClient
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The repo of one finished run and its result document."""
    root = tmp_path_factory.mktemp("runs")
    repo = make_repo(root, FILES)
    (root / "plan.yaml").write_text(PLAN)
    proc = runner_cli("run", "plan.yaml", "--repo", str(repo), "--json", cwd=root)
    assert proc.returncode == 1, proc.stderr  # partial: by design
    result = json.loads(proc.stdout)
    yield repo, result
    remove_caches(docker_client, repo)
    assert leftovers(docker_client, result["run_id"]) == []


@pytest.fixture
def repo(made: tuple[Path, dict[str, Any]], tmp_path: Path) -> Path:
    """A copy of the run's repo for a test to change."""
    copy = tmp_path / "repo"
    shutil.copytree(made[0], copy, symlinks=True)
    return copy


def raw_git(repo: Path, *args: str) -> str:
    """git's own output, byte for byte (conftest's git() strips it)."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return proc.stdout


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return runner_cli(*args, "--repo", str(repo))


@pytest.mark.parametrize("command", ["ps", "logs", "diff", "show", "apply", "accept"])
def test_every_command_has_help(command: str) -> None:
    proc = runner_cli(command, "--help")
    assert proc.returncode == 0 and "Usage" in proc.stdout, proc.stderr


def test_ps_lists_runs_and_a_runs_tasks(made: tuple[Path, dict[str, Any]]) -> None:
    repo, result = made
    run_id = result["run_id"]
    runs = cli(repo, "ps")
    assert runs.returncode == 0, runs.stderr
    header, row = runs.stdout.splitlines()
    assert header.split()[:3] == ["RUN", "ID", "STATUS"]
    assert row.split()[:2] == [run_id, "partial"] and "1/3" in row.split()
    assert cli(repo, "ps", "-q").stdout.split() == [run_id]
    listed = json.loads(cli(repo, "ps", "--format", "json").stdout)
    assert listed[0] | {"duration_s": 0} == {
        "run_id": run_id,
        "status": "partial",
        "live": False,
        "started_at": result["started_at"],
        "finished_at": result["finished_at"],
        "duration_s": 0,
        "tasks_merged": 1,
        "tasks_total": 3,
        "integration_ref": result["integration_ref"],
        "integration_commit": result["integration_commit"],
    }
    tasks = json.loads(cli(repo, "ps", run_id, "--format", "json").stdout)["tasks"]
    by_id = {t["id"]: t for t in tasks}
    assert {t: by_id[t]["status"] for t in by_id} == {
        "good": "merged",
        "bad": "scope_violation",
        "broken": "failed",
    }
    assert by_id["broken"]["exit_code"] == 3
    assert by_id["broken"]["ref"] == f"refs/runner/{run_id}/task/broken"
    table = cli(repo, "ps", "latest").stdout.splitlines()
    columns = ["WAVE", "TASK", "STATUS", "EXIT", "TIME", "TRIES", "TOKENS", "COST", "WORK"]
    assert table[0].split() == columns
    # One attempt each; these tasks report no usage: "-", never a made-up 0.
    broken = table[3].split()
    assert broken[:4] == ["1", "broken", "failed", "3"] and broken[5:8] == ["1", "-", "-"]


def test_a_run_is_named_by_unique_prefix_or_latest_else_candidates_are_listed(
    repo: Path, made: tuple[Path, dict[str, Any]]
) -> None:
    run_id = made[1]["run_id"]
    for which in (run_id, run_id[:17], "latest"):
        assert cli(repo, "ps", which, "-q").stdout.split() == ["good", "bad", "broken"], which
    twin = run_id[:17] + "ffffff"  # same second, another id: the prefix is now ambiguous
    (repo / ".git" / "runner" / "runs" / twin).mkdir()
    ambiguous = cli(repo, "ps", run_id[:17])
    assert ambiguous.returncode == 2
    assert f"ambiguous: it begins 2 runs ({run_id}, {twin})" in ambiguous.stderr
    unknown = cli(repo, "show", "1999")
    assert unknown.returncode == 2 and f"the latest runs: {run_id}" in unknown.stderr
    listing = cli(repo, "ps", "-q")  # the empty twin is said, the real run still listed
    assert listing.stdout.split() == [run_id] and f"run {twin}:" in listing.stderr


def test_diff_equals_git_diff_of_start_and_ref(made: tuple[Path, dict[str, Any]]) -> None:
    repo, result = made
    for task in result["tasks"]:
        start, ref = task["start_commit"], task["ref"]
        for stat in ([], ["--stat"]):
            got = cli(repo, "diff", "latest", task["id"], *stat)
            assert got.returncode == 0, got.stderr
            assert got.stdout == raw_git(repo, "diff", *stat, f"{start}..{ref}")
    broken = cli(repo, "diff", "latest", "broken").stdout
    assert "+++ b/lib/x.txt" in broken and "+partial" in broken


def test_logs_and_show(made: tuple[Path, dict[str, Any]]) -> None:
    repo, result = made
    assert cli(repo, "logs", "latest", "good").stdout == "hello from good\n"
    assert cli(repo, "logs", "latest", "broken", "--tail", "1").stdout == "failing\n"
    assert "##runner-metrics" not in cli(repo, "logs", "latest", "broken").stdout
    missing = cli(repo, "logs", "latest", "nope")
    assert missing.returncode == 2 and "its tasks: good, bad, broken" in missing.stderr
    assert cli(repo, "logs", "latest", "good", "--verify").stdout == "verified\n"
    assert cli(repo, "logs", "latest", "--verify", "--wave", "1").stdout == "verified\n"
    no_verify = cli(repo, "logs", "latest", "--verify", "--wave", "2")
    assert no_verify.returncode == 2 and "no verify log of wave 2" in no_verify.stderr
    assert json.loads(cli(repo, "show", "latest").stdout) == result
    assert json.loads(cli(repo, "show", "latest", "bad").stdout) == result["tasks"][1]


def test_apply_fast_forwards_the_users_branch_and_checkout(
    repo: Path, made: tuple[Path, dict[str, Any]]
) -> None:
    result = made[1]
    before = git(repo, "rev-parse", "HEAD")
    proc = cli(repo, "apply", "latest")
    assert proc.returncode == 0, proc.stderr
    assert "fast-forward" in proc.stdout
    assert git(repo, "rev-parse", "main") == result["integration_commit"]
    assert (repo / "src" / "new.txt").read_text() == "new\n"  # the checkout moved with it
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "ORIG_HEAD") == before
    again = cli(repo, "apply", "latest")
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_apply_merges_when_the_branch_moved_on(
    repo: Path, made: tuple[Path, dict[str, Any]]
) -> None:
    (repo / "mine.txt").write_text("mine\n")
    git(repo, "add", "mine.txt")
    git(repo, "commit", "-qm", "mine")
    mine = git(repo, "rev-parse", "HEAD")
    proc = cli(repo, "apply", "latest")
    assert proc.returncode == 0, proc.stderr
    assert "merge" in proc.stdout
    parents = git(repo, "rev-list", "--parents", "-n1", "HEAD").split()[1:]
    assert parents == [mine, made[1]["integration_commit"]]
    assert (repo / "src" / "new.txt").exists() and (repo / "mine.txt").exists()
    assert git(repo, "status", "--porcelain") == ""


def test_apply_refuses_a_dirty_checkout_and_changes_nothing(repo: Path) -> None:
    (repo / "src" / "a.txt").write_text("edited\n")
    head = git(repo, "rev-parse", "HEAD")
    proc = cli(repo, "apply", "latest")
    assert proc.returncode == 2
    assert "uncommitted changes on main: src/a.txt" in proc.stderr
    assert git(repo, "rev-parse", "HEAD") == head
    assert (repo / "src" / "a.txt").read_text() == "edited\n"


def test_apply_on_a_conflict_leaves_branch_and_checkout_untouched(repo: Path) -> None:
    (repo / "src" / "new.txt").write_text("my own new\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "mine")
    (repo / "notes.txt").write_text("untracked, mine\n")
    head = git(repo, "rev-parse", "HEAD")
    proc = cli(repo, "apply", "latest")
    assert proc.returncode == 1
    assert "conflicts with your branch in: src/new.txt; nothing was changed" in proc.stderr
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == "?? notes.txt"
    assert (repo / "src" / "new.txt").read_text() == "my own new\n"


def test_apply_refuses_to_overwrite_an_untracked_file(repo: Path) -> None:
    (repo / "src" / "new.txt").write_text("untracked, mine\n")
    head = git(repo, "rev-parse", "HEAD")
    proc = cli(repo, "apply", "latest")
    assert proc.returncode == 1
    assert "untracked files in your checkout would be overwritten: src/new.txt" in proc.stderr
    assert git(repo, "rev-parse", "HEAD") == head
    assert (repo / "src" / "new.txt").read_text() == "untracked, mine\n"


def test_apply_chosen_tasks_onto_a_new_branch_leaves_the_checkout_alone(
    repo: Path, made: tuple[Path, dict[str, Any]]
) -> None:
    run_id = made[1]["run_id"]
    head = git(repo, "rev-parse", "HEAD")
    proc = cli(repo, "apply", run_id, "broken", "good", "--onto", "take", "--squash")
    assert proc.returncode == 0, proc.stderr
    assert "task broken ended failed" in proc.stderr
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "take^") == head  # one commit on the run's base
    assert git(repo, "diff", "--name-only", head, "take").split() == ["lib/x.txt", "src/new.txt"]
    git(repo, "checkout", "-q", "--detach")
    detached = cli(repo, "apply", run_id)
    assert detached.returncode == 2 and "HEAD is detached" in detached.stderr


def test_accept_merges_a_reviewed_scope_violation_onto_the_integration_branch(
    repo: Path, made: tuple[Path, dict[str, Any]]
) -> None:
    result = made[1]
    run_id, ref = result["run_id"], result["integration_ref"]
    refused = cli(repo, "accept", "latest", "broken")
    assert refused.returncode == 2 and "not scope_violation" in refused.stderr
    proc = cli(repo, "accept", "latest", "bad")
    assert proc.returncode == 0, proc.stderr
    assert f"runner apply {run_id}" in proc.stdout
    head = git(repo, "rev-parse", ref)
    assert git(repo, "rev-parse", f"{head}^1") == result["integration_commit"]
    assert git(repo, "show", f"{ref}:outside.txt") == "outside"
    record = json.loads((repo / ".git/runner/runs" / run_id / "accepted.json").read_text())
    assert [(a["task"], a["head"], a["violations"]) for a in record["accepted"]] == [
        ("bad", head, ["outside.txt"])
    ]
    assert "scope_violation (accepted)" in cli(repo, "ps", "latest").stdout
    assert cli(repo, "accept", "latest", "bad").returncode == 2  # once
    assert cli(repo, "apply", "latest").returncode == 0
    assert (repo / "outside.txt").read_text() == "outside\n"


DEPENDENT = """\
tasks:
  - {id: db, scope: ["db/**"], run: "mkdir db && echo db > db/x.txt"}
  - {id: api, depends_on: [db], scope: ["api/**"], run: "mkdir api && cat db/x.txt > api/y.txt"}
"""


def test_apply_of_a_dependent_task_alone_takes_only_its_change_and_loses_none_later(
    run_plan: RunPlan,
) -> None:
    run = run_plan(DEPENDENT, {"a.txt": "a\n"})
    assert run.code == 0, run.stderr
    repo, base = run.repo, run.result["base_commit"]
    proc = cli(repo, "apply", "latest", "api")
    assert proc.returncode == 0, proc.stderr
    assert git(repo, "ls-files").split() == ["a.txt", "api/y.txt"]  # not db's work
    # db's commit must not pass for merged: the whole run applied later brings db's file.
    assert git(repo, "rev-list", "--parents", "-n1", "HEAD").split()[1:] == [base]
    assert cli(repo, "apply", "latest", "api").stdout.endswith("nothing to do\n")
    assert cli(repo, "apply", "latest").returncode == 0
    assert git(repo, "ls-files").split() == ["a.txt", "api/y.txt", "db/x.txt"]


SLOW = """\
tasks:
  - id: slow
    run: |
      echo first line
      sleep 6
      echo last line
      echo done > done.txt
"""


def test_logs_follow_shows_first_lines_before_the_task_ends(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, {"a.txt": "a\n"})
    run = start_run(tmp_path, repo, textwrap.dedent(SLOW))
    follower = None
    try:
        follower = _follow_when_started(repo)
        assert follower.stdout is not None
        first = follower.stdout.readline()
        assert first == "first line\n"
        assert run.poll() is None  # the run, and so the task, is still going
        live = json.loads(cli(repo, "ps", "latest", "--format", "json").stdout)
        assert live["live"] and live["tasks"][0]["status"] in ("running", "collecting")
        shown = cli(repo, "show", "latest")
        assert json.loads(shown.stdout)["status"] == "running"
        assert "its state from the journal" in shown.stderr
        rest, _ = follower.communicate(timeout=60)
        assert rest == "last line\n" and follower.returncode == 0
        out, _ = run.communicate(timeout=60)
        assert run.returncode == 0
        assert leftovers(docker_client, json.loads(out)["run_id"]) == []
    finally:
        for proc in (run, follower):
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.communicate()  # closes its pipes
        remove_caches(docker_client, repo)


def _follow_when_started(repo: Path) -> subprocess.Popen[str]:
    """`runner logs latest slow -f`, once the run has a journal to name it by."""
    runs = repo / ".git" / "runner" / "runs"
    deadline = time.monotonic() + 60
    while not list(runs.glob("*/journal.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.1)
    return subprocess.Popen(
        [sys.executable, "-m", "runner", "logs", "latest", "slow", "-f", "--repo", str(repo)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
