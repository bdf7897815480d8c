"""`runner rm`, `runner prune`, cache retention and the object store after a run: real runs,
real git, the real daemon."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

import docker
import docker.errors

from runner import names
from runner.coordinator import repo_key
from runner.gc import write_owner
from runner.retention import after_run, store, tidy_objects
from tests.integration.conftest import RunPlan, git, make_repo, runner_cli

PLAN = """
    verify: "true"
    tasks:
      - id: one
        scope: ["one/**"]
        run: mkdir one && echo 1 > one/a.txt
      - id: two
        scope: ["two/**"]
        run: mkdir two && echo 2 > two/b.txt
"""


def _runner_refs(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname)", *names.RUN_REF_ROOTS).split()


def test_rm_leaves_no_ref_branch_or_state_of_the_run(run_plan: RunPlan) -> None:
    first = run_plan(PLAN, {"README.md": "hi\n"})
    assert first.code == 0, first.stderr
    repo, run_id = first.repo, first.result["run_id"]
    state = Path(first.result["state_dir"])
    assert state.is_dir() and any(r.startswith(names.run_refs(run_id)) for r in _runner_refs(repo))
    tidied = after_run(repo, state.parent.parent, state)  # what a run's end calls
    assert tidied.ran, tidied.note

    asked = runner_cli("rm", run_id[:10], "--repo", str(repo))  # stdin is not a terminal
    assert asked.returncode != 0 and "--yes" in asked.stderr
    assert state.is_dir()

    git(repo, "checkout", "-q", f"runner/{run_id}/integration")
    busy = runner_cli("rm", "latest", "--repo", str(repo), "--yes")
    assert busy.returncode != 0 and "checked out" in busy.stderr, busy.stderr
    git(repo, "checkout", "-q", "main")

    gone = runner_cli("rm", "latest", "--repo", str(repo), "--yes")
    assert gone.returncode == 0, gone.stderr
    assert _runner_refs(repo) == []
    assert not state.exists()
    assert (repo / "README.md").read_text() == "hi\n"  # the user's own things stay
    # Its caches' last use outlives it: a later `gc --caches --older-than` still knows it.
    record = json.loads(names.cache_record(state.parent.parent).read_text())["last_used"]
    assert names.cache_volume(repo_key(repo), "task", "one") in record
    assert names.cache_volume(repo_key(repo), "verify") in record


def test_prune_removes_finished_runs_and_keeps_live_ones(run_plan: RunPlan) -> None:
    done = run_plan(PLAN, {"README.md": "hi\n"})
    assert done.code == 0, done.stderr
    repo, run_id = done.repo, done.result["run_id"]
    root = Path(done.result["state_dir"]).parent.parent
    # A run whose coordinator is alive (this very process owns it): never touched.
    live = names.run_dir(root, "29990101-000000-live00")
    live.mkdir(parents=True)
    write_owner(live)
    git(repo, "update-ref", names.task_ref(live.name, "t"), "HEAD")

    young = runner_cli("prune", "--older-than", "1h", "--repo", str(repo), "--yes")
    assert young.returncode == 0, young.stderr
    assert "no finished run older than 1h" in young.stdout
    time.sleep(1.1)  # ended at a whole second; now it is older than 0s
    dry = runner_cli("prune", "--older-than", "0s", "--repo", str(repo), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would remove run {run_id}" in dry.stdout and "live00" not in dry.stdout
    assert Path(done.result["state_dir"]).is_dir()

    pruned = runner_cli("prune", "--older-than", "0s", "--repo", str(repo), "--yes")
    assert pruned.returncode == 0, pruned.stderr
    assert not Path(done.result["state_dir"]).exists()
    assert _runner_refs(repo) == [names.task_ref(live.name, "t")]
    assert live.is_dir()
    refused = runner_cli("rm", "29990101", "--repo", str(repo), "--yes")
    assert refused.returncode != 0 and "in progress" in refused.stderr


def _volume(client: docker.DockerClient, name: str, labels: dict[str, str]) -> None:
    client.volumes.create(name=name, labels=labels)


def test_gc_caches_of_one_repo_keep_every_other_repos(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    from runner.sandbox import labels as L

    a = make_repo(tmp_path / "a", {"f": "a\n"})
    b = make_repo(tmp_path / "b", {"f": "b\n"})
    ka, kb = repo_key(a), repo_key(b)
    mine = [names.cache_volume(ka, "task", "t1"), names.cache_volume(ka, "verify")]
    others = [names.cache_volume(kb, "task", "t1")]
    unlabelled = f"runner-cache-{ka}-task-nolabel"
    client = docker_client
    try:
        _volume(client, mine[0], L.cache_labels(ka, "task", "t1"))
        _volume(client, mine[1], L.cache_labels(ka, "verify", ""))
        _volume(client, others[0], L.cache_labels(kb, "task", "t1"))
        _volume(client, unlabelled, {})

        report = runner_cli("gc", "--caches", "--repo", str(a), "--dry-run")
        assert report.returncode == 0, report.stderr
        assert all(n in report.stdout for n in mine) and others[0] not in report.stdout
        assert unlabelled not in report.stdout and "MiB" in report.stdout

        fresh = runner_cli("gc", "--caches", "--repo", str(a), "--older-than", "1h")
        assert fresh.returncode == 0, fresh.stderr
        assert "removed 0 cache volume(s)" in fresh.stdout
        time.sleep(1.1)
        old = runner_cli("gc", "--caches", "--repo", str(a), "--older-than", "0s")
        assert old.returncode == 0, old.stderr
        left = {v.name for v in client.volumes.list()}
        assert not set(mine) & left
        assert {others[0], unlabelled} <= left

        _volume(client, mine[0], L.cache_labels(ka, "task", "t1"))
        every = runner_cli("gc", "--caches", "--repo", str(a))
        assert every.returncode == 0, every.stderr
        left = {v.name for v in client.volumes.list()}
        assert mine[0] not in left and {others[0], unlabelled} <= left
        bad = runner_cli("gc", "--caches", "--all", "--older-than", "14d")
        assert bad.returncode != 0 and "--older-than needs --repo" in bad.stderr
    finally:
        for name in [*mine, *others, unlabelled]:
            with contextlib.suppress(docker.errors.NotFound):  # removed by the test already
                client.volumes.get(name).remove(force=True)


# -- the object store after a run (git only) --------------------------------------------------


RUN = "20260101-000000-aaaaaa"


def _loose(repo: Path, count: int, task: str) -> None:
    """`count` loose objects reachable from a task ref (as a run's work and merges are)."""
    blobs = repo.parent / f"blobs-{task}"
    blobs.mkdir()
    for i in range(count):
        (blobs / str(i)).write_text(f"{task} object {i}\n")
    paths = "\n".join(str(blobs / str(i)) for i in range(count))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    oids = subprocess.run(
        ["git", "-C", str(repo), "hash-object", "-w", "--stdin-paths"],
        input=paths, capture_output=True, text=True, env=env, check=True,
    ).stdout.split()  # fmt: skip
    listing = "".join(f"100644 blob {oid}\tf{i}\n" for i, oid in enumerate(oids))
    tree = subprocess.run(
        ["git", "-C", str(repo), "mktree"], input=listing, capture_output=True, text=True,
        env=env, check=True,
    ).stdout.strip()  # fmt: skip
    commit = git(repo, "commit-tree", tree, "-m", task)
    git(repo, "update-ref", names.task_ref(RUN, task), commit)


def test_tidy_objects_rolls_what_a_run_added_into_one_pack(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"f": "x\n"})
    git(repo, "repack", "-a", "-d", "-q")  # the user's store: one pack
    for k in range(6):  # a pack per task, as intake leaves them
        _loose(repo, 20, f"p{k}")
        git(repo, "repack", "-d", "-q")
    _loose(repo, 300, "merges")  # and loose objects, as merges leave them
    tidied = tidy_objects(repo)
    assert tidied.ran, tidied.note
    assert tidied.before.packs == 7 and tidied.before.loose >= 300
    assert tidied.after.loose == 0 and tidied.after.packs <= 2
    for k in range(6):
        assert git(repo, "cat-file", "-t", f"{names.task_ref(RUN, f'p{k}')}:f7") == "blob"


def test_tidy_objects_leaves_a_store_a_fetch_would_leave(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"f": "x\n"})
    git(repo, "repack", "-a", "-d", "-q")
    _loose(repo, 20, "t")  # under fetch.unpackLimit: git leaves these loose after a fetch
    tidied = tidy_objects(repo)
    assert tidied.ran and tidied.after == tidied.before


def test_tidy_objects_does_nothing_when_the_user_turned_it_off(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"f": "x\n"})
    _loose(repo, 300, "t")
    for key, value in (("maintenance.auto", "false"), ("gc.auto", "0")):
        git(repo, "config", key, value)
        off = tidy_objects(repo)
        assert not off.ran and key in off.note
        assert store(repo) == off.before
        git(repo, "config", "--unset", key)
    assert tidy_objects(repo).after.loose == 0


def test_rm_and_prune_have_help() -> None:
    for command in (["rm"], ["prune"]):
        proc = runner_cli(*command, "--help")
        assert proc.returncode == 0 and "Usage" in proc.stdout, proc.stderr


def test_a_state_dir_shared_by_repos_lists_only_this_repos_runs(tmp_path: Path) -> None:
    a = make_repo(tmp_path / "a", {"f": "a\n"})
    b = make_repo(tmp_path / "b", {"f": "b\n"})
    shared = tmp_path / "state"  # RUNNER_STATE_DIR, the same for both repos
    for repo, run_id in ((a, "20260101-000000-aaaaaa"), (b, "20260101-000000-bbbbbb")):
        run_dir = names.run_dir(shared, run_id)
        run_dir.mkdir(parents=True)
        first = {"seq": 1, "time": "2026-01-01T00:00:00+00:00", "event": "planned"}
        names.journal_path(run_dir).write_text(json.dumps(first | {"repo": str(repo)}) + "\n")
    env = {"RUNNER_STATE_DIR": str(shared)}
    proc = runner_cli("prune", "--older-than", "0s", "--repo", str(a), "--dry-run", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "aaaaaa" in proc.stdout and "bbbbbb" not in proc.stdout
    assert "ambiguous" not in runner_cli("rm", "2026", "--repo", str(a), env=env).stderr
