"""The run journal on real runs: it agrees with result.json, and `runner status` reads it live."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from runner import names
from runner.core.runstate import project
from runner.journal import read_journal
from runner.sandbox import labels
from tests.integration.conftest import (
    RunPlan,
    leftovers,
    make_repo,
    remove_caches,
    runner_cli,
    start_run,
)

SECRET = "s3cret-value-never-journaled"

MIXED = """
    on_conflict: skip
    verify: "test ! -e bad/red.txt"
    tasks:
      - id: good
        scope: ["good/**"]
        env: [JOURNAL_TEST_SECRET]
        run: mkdir good && echo "$JOURNAL_TEST_SECRET" > good/a.txt
      - id: fails
        scope: ["f/**"]
        run: mkdir f && echo partial > f/x.txt && exit 3
      - id: sneaky
        scope: ["s/**"]
        run: echo changed > README.md
      - id: idle
        scope: ["i/**"]
        run: "true"
      - id: bad
        scope: ["bad/**"]
        run: mkdir bad && echo red > bad/red.txt
      - id: after_fails
        depends_on: [fails]
        scope: ["a/**"]
        run: mkdir a && echo x > a/x.txt
      - id: after_good
        depends_on: [good]
        scope: ["n/**"]
        run: mkdir n && cp good/a.txt n/copy.txt
"""


def journal_of(repo: Path, run_id: str) -> Path:
    return names.journal_path(names.run_dir(repo / ".git" / "runner", run_id))


def test_the_journal_projects_to_the_result_document(
    run_plan: RunPlan, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_TEST_SECRET", SECRET)
    run = run_plan(MIXED, {"README.md": "hello\n"})
    assert run.code == 1, run.stderr
    result = run.result
    path = journal_of(run.repo, result["run_id"])
    read = read_journal(path)
    assert read.torn is None
    state = project(read.events)

    statuses = {t["id"]: t["status"] for t in result["tasks"]}
    assert statuses == {
        "good": "merged",
        "fails": "failed",
        "sneaky": "scope_violation",
        "idle": "no_changes",
        "bad": "verify_failed",
        "after_fails": "skipped",
        "after_good": "merged",
    }
    for task in result["tasks"]:
        mine = state.task(task["id"])
        seen = (mine.state, mine.ref, mine.commit, mine.reason, mine.start_commit)
        want = (task["status"], task["ref"], task["commit"], task["reason"], task["start_commit"])
        assert seen == want, task["id"]
        assert mine.exit_code == task["exit_code"]
    for wave in result["waves"]:
        mine_w = state.wave(wave["index"])
        seen_w = (mine_w.start_commit, mine_w.merged_commit, mine_w.verify, mine_w.isolated)
        want_w = (wave["start_commit"], wave["merged_commit"], wave["verify"], wave["isolated"])
        assert seen_w == want_w, wave["index"]
    assert state.status.value == result["status"] == "partial"
    assert state.integration_commit == result["integration_commit"]
    assert state.checkout_unchanged is result["isolation"]["unchanged"] is True
    # Work not merged is named where it is kept: under its ref.
    assert state.task("fails").kept == result["tasks"][1]["ref"]
    # Names of variables only, never their values (the value did reach the task's work).
    text = path.read_text()
    assert SECRET not in text and "JOURNAL_TEST_SECRET" in text
    assert run.show(result["integration_commit"], "n/copy.txt") == SECRET
    kinds = [e["event"] for e in read.events]
    assert (kinds[0], kinds[-1]) == ("planned", "run_ended")


HOLD = """
tasks:
  - id: hold
    scope: ["h/**"]
    timeout: 120
    run: |
      while [ ! -e release ]; do sleep 0.1; done
      rm release && mkdir h && echo held > h/x.txt
  - id: after
    depends_on: [hold]
    scope: ["n/**"]
    run: mkdir n && echo next > n/x.txt
"""


def status(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return runner_cli("status", *args, "--repo", str(repo), timeout=60)


def wait_for_running(repo: Path, task: str) -> dict[str, Any]:
    """`runner status --json` (another process) until the task shows running; bounded."""
    for _ in range(120):
        proc = status(repo, "--json")
        if proc.returncode == 0:
            doc: dict[str, Any] = json.loads(proc.stdout)
            if next(t for t in doc["tasks"] if t["id"] == task)["state"] == "running":
                return doc
        time.sleep(0.25)
    pytest.fail(f"runner status never showed {task} running")


def test_status_reads_a_live_run_then_equals_its_result(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    proc = start_run(tmp_path, repo, HOLD)
    try:
        live = wait_for_running(repo, "hold")
        assert live["status"] == "running" and live["owner_alive"] is True
        assert live["died"] is False
        tasks = {t["id"]: t for t in live["tasks"]}
        assert tasks["after"]["state"] == "pending"
        human = status(repo, live["run_id"][:17])
        assert human.returncode == 0, human.stderr
        assert "running" in human.stdout and "hold" in human.stdout
        # The task waits for this file in its workspace, which status names as where it is.
        (Path(tasks["hold"]["kept"]) / "release").write_text("")
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        remove_caches(docker_client, repo)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert leftovers(docker_client, result["run_id"]) == []

    ended = status(repo, result["run_id"][:-2], "--json")
    assert ended.returncode == 0, ended.stderr
    doc = json.loads(ended.stdout)
    assert doc["status"] == result["status"] == "success"
    assert doc["integration_commit"] == result["integration_commit"]
    for task in result["tasks"]:
        mine = next(t for t in doc["tasks"] if t["id"] == task["id"])
        assert (mine["state"], mine["ref"]) == (task["status"], task["ref"])


def test_status_says_a_killed_run_died_and_where_its_work_is(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    proc = start_run(tmp_path, repo, HOLD)
    run_id = ""
    try:
        live = wait_for_running(repo, "hold")
        run_id = live["run_id"]
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        doc = json.loads(status(repo, "--json").stdout)
        assert (doc["status"], doc["owner_alive"], doc["died"]) == ("running", False, True)
        hold = next(t for t in doc["tasks"] if t["id"] == "hold")
        assert hold["state"] == "running" and Path(hold["kept"]).is_dir()
        human = status(repo)
        assert human.returncode == 0 and "it died" in human.stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        # The killed run's sandbox is still there (nothing of the run removed it): ours to go.
        if run_id:
            flt: dict[str, str | list[str] | bool] = {"label": f"{labels.RUN}={run_id}"}
            for container in docker_client.containers.list(all=True, filters=flt):
                container.remove(force=True)
        remove_caches(docker_client, repo)
    assert leftovers(docker_client, run_id) == []


def test_status_of_no_run_and_of_an_unknown_run_are_clear_errors(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    none = status(repo)
    assert none.returncode == 2 and "no runs in" in none.stderr and "Traceback" not in none.stderr
    (repo / ".git" / "runner" / "runs" / "20260101-000000-aaaaaa").mkdir(parents=True)
    (repo / ".git" / "runner" / "runs" / "20260101-000000-aaaaab").mkdir(parents=True)
    ambiguous = status(repo, "20260101")
    assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr
    unknown = status(repo, "1999")
    assert unknown.returncode == 2 and "no run '1999'" in unknown.stderr
    old = status(repo, "20260101-000000-aaaaab")
    assert old.returncode == 2 and "has no journal" in old.stderr


def test_an_interrupted_run_journals_the_signal_and_its_end(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    proc = start_run(tmp_path, repo, HOLD)
    try:
        wait_for_running(repo, "hold")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        remove_caches(docker_client, repo)
    assert proc.returncode == 143, err
    result = json.loads(out)
    read = read_journal(journal_of(repo, result["run_id"]))
    kinds = [e["event"] for e in read.events]
    # The signal is journaled before the sandboxes are killed, the end after everything.
    assert kinds.index("interrupted") < kinds.index("task_ended") and kinds[-1] == "run_ended"
    state = project(read.events)
    assert (state.status.value, state.interrupted) == (result["status"], "SIGTERM")
    for task in result["tasks"]:
        mine = state.task(task["id"])
        assert (mine.state, mine.ref, mine.reason) == (task["status"], task["ref"], task["reason"])
    assert leftovers(docker_client, result["run_id"]) == []
