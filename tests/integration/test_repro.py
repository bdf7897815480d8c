"""Reproducible runs (issue 13): pinned inputs, `runner rerun`, `runner run --reuse`, cost saved.

Real Docker and git. A task's input key is its definition, start tree, shared tree, image id
and policy: the plans here are deterministic, so a task's work is the same each time it runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from runner import names
from runner.journal import read_journal
from tests.integration.conftest import RunPlan, git, leftovers, runner_cli

# a and b start from base (wave 1); c starts from their merge (wave 2), after b.
PLAN = """\
shared: contract
verify: test -f a/out.txt
tasks:
  - id: a
    scope: ["a/**"]
    run: |
      mkdir -p a && cat contract/api.txt > a/out.txt
      echo '{"tokens": 1200, "cost_usd": 0.25}' > "$RUNNER_OUT/usage.json"
  - id: b
    scope: ["b/**"]
    run: mkdir -p b && echo {B} > b/out.txt
  - id: c
    depends_on: [b]
    scope: ["c/**"]
    run: mkdir -p c && cat b/out.txt a/out.txt > c/out.txt
"""
FILES = {"README.md": "hello\n", "contract/api.txt": "v1\n"}


def _events(repo: Path, run_id: str) -> list[dict[str, Any]]:
    return read_journal(names.journal_path(names.run_dir(repo / ".git" / "runner", run_id))).events


def _started(repo: Path, run_id: str) -> set[str]:
    return {e["task"] for e in _events(repo, run_id) if e["event"] == "task_started"}


def _tree(repo: Path, commit: str) -> str:
    return git(repo, "rev-parse", f"{commit}^{{tree}}")


def _run(repo: Path, plan: Path, *more: str) -> dict[str, Any]:
    proc = runner_cli("run", str(plan), "--repo", str(repo), "--json", *more)
    assert proc.stdout.strip().startswith("{"), proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _statuses(result: dict[str, Any]) -> dict[str, str]:
    return {t["id"]: t["status"] for t in result["tasks"]}


def test_rerun_replays_a_run_with_the_same_pinned_inputs(run_plan: RunPlan, tmp_path: Path) -> None:
    first = run_plan(PLAN.replace("{B}", "one"), FILES)
    assert first.code == 0, first.stderr
    r1 = first.result
    pins = r1["inputs"]
    assert pins["plan_hash"].startswith("sha256:") and pins["base_commit"] == r1["base_commit"]
    assert set(pins["tasks"]) == {"a", "b", "c"}
    assert pins["images"]["runner/sandbox:1"].startswith("sha256:")
    assert pins["image_digests"] == {}  # built here, never pulled: no repo digests
    assert pins["verify_image"] == "runner/sandbox:1" and pins["collector_image"]
    assert pins["policies"]["default"].startswith("sha256:")
    assert pins["backend"] == "docker" and pins["daemon_version"] and pins["runner_version"]
    assert pins["shared_tree"] == git(first.repo, "rev-parse", f"{r1['base_commit']}:contract")
    for t in r1["tasks"]:
        assert t["key"].startswith("sha256:") and t["key_parts"]["start_tree"]
        assert t["reused_from"] is None

    proc = runner_cli("rerun", r1["run_id"], "--repo", str(first.repo), "--json")
    assert proc.returncode == 0, proc.stderr
    r2 = json.loads(proc.stdout)
    assert r2["run_id"] != r1["run_id"] and r2["replays"] == r1["run_id"]
    assert _statuses(r2) == _statuses(r1) == {"a": "merged", "b": "merged", "c": "merged"}
    assert r2["inputs"] == r1["inputs"]
    assert _started(first.repo, r2["run_id"]) == {"a", "b", "c"}  # a replay runs every task
    repo = first.repo
    assert _tree(repo, r2["integration_commit"]) == _tree(repo, r1["integration_commit"])
    assert [t["key"] for t in r2["tasks"]] == [t["key"] for t in r1["tasks"]]
    assert leftovers(docker.from_env(), r2["run_id"]) == []

    shown = runner_cli("show", r2["run_id"], "--inputs", "--repo", str(repo))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"replays: {r1['run_id']}"
    assert f"base: {r1['base_commit']}" in lines
    assert f"image: runner/sandbox:1 {pins['images']['runner/sandbox:1']}" in lines
    assert any(
        ln.startswith(f"task: c definition {pins['tasks']['c']['definition']}") for ln in lines
    )
    one = runner_cli("show", r2["run_id"], "c", "--inputs", "--repo", str(repo))
    assert [ln.split()[:2] for ln in one.stdout.splitlines()] == [["task:", "c"], ["key:", "c"]]


def test_reuse_runs_only_the_changed_task_and_what_depends_on_it(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    first = run_plan(PLAN.replace("{B}", "one"), FILES)
    assert first.code == 0, first.stderr
    repo, plan = first.repo, tmp_path / "plan.yaml"
    r1 = first.result

    plan.write_text(PLAN.replace("{B}", "two"))  # b's run line changes
    r2 = _run(repo, plan, "--reuse")
    assert r2["status"] == "success", r2
    assert _statuses(r2) == {"a": "merged", "b": "merged", "c": "merged"}
    assert _started(repo, r2["run_id"]) == {"b", "c"}  # a is not run at all
    a = next(t for t in r2["tasks"] if t["id"] == "a")
    assert a["reused_from"]["run"] == r1["run_id"] and a["reused_from"]["task"] == "a"
    assert a["reused_from"]["commit"] == next(t for t in r1["tasks"] if t["id"] == "a")["commit"]
    assert a["commit"] != a["reused_from"]["commit"]  # re-applied as a fresh commit
    assert a["attempts"] == 0 and a["files_changed"] == ["a/out.txt"]
    assert git(repo, "show", f"{a['ref']}:a/out.txt") == "v1"
    # Why b and c ran again: b's definition changed; c's start tree did (b's work in it).
    keys1 = {t["id"]: t["key_parts"] for t in r1["tasks"]}
    keys2 = {t["id"]: t["key_parts"] for t in r2["tasks"]}
    assert keys1["a"] == keys2["a"]
    assert keys1["b"]["definition"] != keys2["b"]["definition"]
    assert keys1["c"]["definition"] == keys2["c"]["definition"]
    assert keys1["c"]["start_tree"] != keys2["c"]["start_tree"]
    # Cost saved: what a's original attempt used.
    assert r2["saved"]["tokens"] == 1200 and r2["saved"]["cost_usd"] == pytest.approx(0.25)
    assert next(t for t in r2["tasks"] if t["id"] == "a")["usage"] is None

    full = _run(repo, plan)  # the same plan run in full: the same integration tree
    assert full["status"] == "success" and _started(repo, full["run_id"]) == {"a", "b", "c"}
    assert _tree(repo, r2["integration_commit"]) == _tree(repo, full["integration_commit"])
    assert git(repo, "show", f"{r2['integration_commit']}:c/out.txt") == "two\nv1"

    # Nothing changed since: everything is reused (from the newest match), and the summary
    # says what was saved.
    proc = runner_cli("run", str(plan), "--repo", str(repo), "--reuse")
    assert proc.returncode == 0, proc.stderr
    r4 = json.loads(runner_cli("show", "latest", "--repo", str(repo)).stdout)
    assert _started(repo, r4["run_id"]) == set()
    assert {t["reused_from"]["run"] for t in r4["tasks"]} == {full["run_id"]}
    assert "reused 3 task(s) (a, b, c): saved 1200 tokens, cost $0.2500" in proc.stdout
    assert _tree(repo, r4["integration_commit"]) == _tree(repo, full["integration_commit"])


def test_the_plan_option_reuses_and_a_changed_shared_tree_runs_again(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    first = run_plan("reuse: true\n" + PLAN.replace("{B}", "one"), FILES)
    assert first.code == 0, first.stderr
    repo, plan = first.repo, tmp_path / "plan.yaml"
    again = _run(repo, plan)
    assert _started(repo, again["run_id"]) == set()
    (repo / "contract" / "api.txt").write_text("v2\n")
    git(repo, "commit", "-qam", "contract v2")
    changed = _run(repo, plan)
    # Every task's start tree changed (and the shared tree): all run again.
    assert _started(repo, changed["run_id"]) == {"a", "b", "c"}
    assert git(repo, "show", f"{changed['integration_commit']}:a/out.txt") == "v2"


@pytest.fixture
def user_image(docker_client: docker.DockerClient, images: None) -> Iterator[Any]:
    """build(label) -> a user image FROM runner/sandbox:1 under one tag; removed after."""
    tag = f"runner-test-repro-{uuid.uuid4().hex[:8]}:1"
    built: list[str] = []

    def build(label: str) -> str:
        dockerfile = f"FROM runner/sandbox:1\nLABEL test.repro={label}\n"
        image, _ = docker_client.images.build(
            fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, pull=False
        )
        built.append(str(image.id))
        return str(image.id)

    build.tag = tag  # type: ignore[attr-defined]
    yield build
    for image_id in reversed(built):
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(image_id, force=True)


def test_a_rebuilt_image_runs_its_tasks_again_and_rerun_refuses(
    run_plan: RunPlan, tmp_path: Path, user_image: Any
) -> None:
    old_id = user_image("one")
    plan_text = textwrap.dedent(f"""\
        tasks:
          - id: mine
            image: {user_image.tag}
            scope: ["m/**"]
            run: mkdir m && echo m > m/x.txt
          - id: plain
            scope: ["p/**"]
            run: mkdir p && echo p > p/x.txt
        """)
    first = run_plan(plan_text, {"README.md": "hi\n"})
    assert first.code == 0, first.stderr
    r1 = first.result
    assert r1["inputs"]["images"][user_image.tag] == old_id
    repo, plan = first.repo, tmp_path / "plan.yaml"

    new_id = user_image("two")
    assert new_id != old_id
    r2 = _run(repo, plan, "--reuse")
    assert r2["status"] == "success", r2
    assert _started(repo, r2["run_id"]) == {"mine"}
    mine = next(t for t in r2["tasks"] if t["id"] == "mine")
    assert mine["reused_from"] is None and mine["key_parts"]["image_id"] == new_id
    assert next(t for t in r2["tasks"] if t["id"] == "plain")["reused_from"]["run"] == r1["run_id"]

    proc = runner_cli("rerun", r1["run_id"], "--repo", str(repo), "--json")
    assert proc.returncode == 2, proc.stdout
    assert f"image {user_image.tag} changed" in proc.stderr, proc.stderr
    assert "--allow-drift image" in proc.stderr
    assert proc.stderr.count("\n") <= 2  # one message (and its hint), no traceback
    allowed = runner_cli(
        "rerun", r1["run_id"], "--repo", str(repo), "--json", "--allow-drift", "image"
    )
    assert allowed.returncode == 0, allowed.stderr
    r3 = json.loads(allowed.stdout)
    assert r3["replays"] == r1["run_id"] and r3["inputs"]["images"][user_image.tag] == new_id
    assert f"image {user_image.tag} changed" in allowed.stderr  # said, as a note
    bad = runner_cli("rerun", r1["run_id"], "--repo", str(repo), "--allow-drift", "imgae")
    assert bad.returncode == 2 and "imgae" in bad.stderr


def test_reapply_makes_a_fresh_commit_on_the_new_start_or_none_on_a_conflict(
    tmp_path: Path,
) -> None:
    from runner.reapply import reapply, tree_of
    from tests.integration.conftest import make_repo

    repo = make_repo(tmp_path, {"a.txt": "1\n", "b.txt": "1\n"})
    start = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "task")
    (repo / "a.txt").write_text("task\n")
    git(repo, "commit", "-qam", "task")
    work = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    (repo / "b.txt").write_text("2\n")
    git(repo, "commit", "-qam", "moved on")
    moved = git(repo, "rev-parse", "HEAD")

    fresh = reapply(repo, start, work, moved, "reused")
    assert fresh is not None and fresh != work
    assert git(repo, "rev-parse", f"{fresh}^@") == moved  # one parent: the new start
    assert (
        git(repo, "show", f"{fresh}:a.txt") == "task" and git(repo, "show", f"{fresh}:b.txt") == "2"
    )
    # On the old start it gives the old work's tree again (a new commit, the same tree).
    same = reapply(repo, start, work, start, "reused")
    assert same is not None and same != work and tree_of(repo, same) == tree_of(repo, work)

    (repo / "a.txt").write_text("other\n")
    git(repo, "commit", "-qam", "conflicting")
    assert reapply(repo, start, work, git(repo, "rev-parse", "HEAD"), "reused") is None
    assert tree_of(repo, start, "nope") is None and tree_of(repo, start, "a.txt") is None


def test_a_changed_policy_runs_its_tasks_again_and_rerun_refuses_naming_it(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    plan_text = """\
        policy: mine.yaml
        tasks:
          - id: t
            scope: ["t/**"]
            run: mkdir t && echo t > t/x.txt
        """
    first = run_plan(plan_text, {"README.md": "hi\n"}, extra={"mine.yaml": "memory: 512m\n"})
    assert first.code == 0, first.stderr
    repo, r1 = first.repo, first.result
    assert set(r1["inputs"]["policies"]) == {"mine.yaml"}
    (tmp_path / "mine.yaml").write_text("memory: 768m\n")

    proc = runner_cli("rerun", r1["run_id"], "--repo", str(repo))
    assert proc.returncode == 2 and "policy mine.yaml changed" in proc.stderr, proc.stderr
    assert "--allow-drift policy" in proc.stderr
    r2 = _run(repo, tmp_path / "plan.yaml", "--reuse")
    assert r2["status"] == "success" and _started(repo, r2["run_id"]) == {"t"}
    assert r2["tasks"][0]["key_parts"]["policy"] != r1["tasks"][0]["key_parts"]["policy"]
    (tmp_path / "mine.yaml").write_text("memory: 512m\n")  # back as pinned: it replays
    again = runner_cli("rerun", r1["run_id"], "--repo", str(repo), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["inputs"] == r1["inputs"]
