"""`runner resume` after a SIGKILL and a Ctrl-C, and task retries: real processes, real daemon.

A task tells its first attempt from a later one by a marker in its own cache volume (which
outlives its sandbox), so a test can make it hang or fail once and then succeed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from runner import names
from runner.journal import read_journal
from tests.integration.conftest import (
    RunPlan,
    git,
    leftovers,
    make_repo,
    remove_caches,
    runner_cli,
    start_run,
)

# fast1/fast2 finish at once; slow1/slow2 hang on their first attempt only.
PLAN = """\
concurrency: 4
tasks:
  - id: fast1
    scope: ["f1/**"]
    run: mkdir f1 && echo one > f1/x.txt
  - id: fast2
    scope: ["f2/**"]
    run: mkdir f2 && echo two > f2/x.txt
  - id: slow1
    scope: ["s1/**"]
    run: |
      if [ ! -e /cache/begun ]; then touch /cache/begun; mkdir s1; echo part > s1/p; sleep 300; fi
      mkdir -p s1 && echo done > s1/x.txt
  - id: slow2
    scope: ["s2/**"]
    run: |
      if [ ! -e /cache/begun ]; then touch /cache/begun; sleep 300; fi
      mkdir s2 && echo done > s2/x.txt
  - id: after
    depends_on: [fast1, slow1]
    scope: ["a/**"]
    run: mkdir a && cat f1/x.txt s1/x.txt > a/both.txt
"""


def _events(repo: Path, run_id: str) -> list[dict[str, Any]]:
    path = names.journal_path(names.run_dir(repo / ".git" / "runner", run_id))
    return read_journal(path).events if path.exists() else []


def _run_id(repo: Path) -> str:
    for _ in range(300):  # bounded: 30 s
        runs = repo / ".git" / "runner" / "runs"
        found = sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError("the run did not start")


def _wait(repo: Path, run_id: str, ready: set[str], started: set[str]) -> None:
    """Until `ready` are judged ready and `started` are running (bounded: 120 s)."""
    for _ in range(1200):
        evs = _events(repo, run_id)
        judged = {e["task"] for e in evs if e["event"] == "judged" and e["status"] == "ready"}
        going = {e["task"] for e in evs if e["event"] == "task_started"}
        if ready <= judged and started <= going:
            return
        time.sleep(0.1)
    raise AssertionError(f"not reached: ready {ready}, started {started}")


def _midway(tmp_path: Path, repo: Path, sig: signal.Signals) -> tuple[subprocess.Popen[str], str]:
    """Start PLAN; signal the runner once fast1/fast2 are fetched and slow1/slow2 are inside
    their first attempt's sleep."""
    proc = start_run(tmp_path, repo, PLAN)
    run_id = _run_id(repo)
    _wait(repo, run_id, ready={"fast1", "fast2"}, started={"slow1", "slow2"})
    time.sleep(1)  # the slow tasks are inside their sleep
    proc.send_signal(sig)
    return proc, run_id


def _tree(repo: Path, rev: str) -> str:
    return git(repo, "rev-parse", f"{rev}^{{tree}}")


def test_resume_after_sigkill_finishes_the_run_as_an_uninterrupted_one_would(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    try:
        proc, run_id = _midway(tmp_path, repo, signal.SIGKILL)
        proc.communicate(timeout=30)

        done = runner_cli("resume", run_id[:12], "--repo", str(repo), "--json")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["run_id"] == run_id and result["status"] == "success"
        tasks = {t["id"]: t for t in result["tasks"]}
        assert {t["status"] for t in tasks.values()} == {"merged"}
        assert tasks["fast1"]["attempts"] == 1 and tasks["fast2"]["attempts"] == 1
        assert tasks["slow1"]["attempts"] == 2 and tasks["slow2"]["attempts"] == 2
        assert any("cut short" in n for n in tasks["slow1"]["notes"])
        # The fetched tasks were not run again: one task_started each in the whole journal.
        evs = _events(repo, run_id)
        starts = [e["task"] for e in evs if e["event"] == "task_started"]
        assert starts.count("fast1") == 1 and starts.count("fast2") == 1
        assert [e["event"] for e in evs].count("resumed") == 1
        # Nothing of the cut attempt is lost: its partial file is kept under the attempt ref.
        kept = names.attempt_ref(run_id, "slow1", 1)
        ws = repo / ".git/runner/runs" / run_id / "tasks/slow1/work.attempt-1/s1/p"
        assert ws.exists() or git(repo, "show", f"{kept}:s1/p") == "part"
        assert leftovers(docker_client, run_id) == []
        on_disk = json.loads((repo / ".git/runner/runs" / run_id / "result.json").read_text())
        assert on_disk == result

        # The same plan uninterrupted (the markers are set: no task hangs) gives the same tree.
        again = runner_cli("run", str(tmp_path / "plan.yaml"), "--repo", str(repo), "--json")
        assert again.returncode == 0, again.stderr
        other = json.loads(again.stdout)
        assert _tree(repo, other["integration_ref"]) == _tree(repo, result["integration_ref"])
        assert git(repo, "show", f"{result['integration_ref']}:a/both.txt") == "one\ndone"
    finally:
        remove_caches(docker_client, repo)


def test_resume_after_ctrl_c_runs_the_cut_tasks_again_and_merges_the_ready_ones(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    try:
        proc, run_id = _midway(tmp_path, repo, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        cut = json.loads(out)
        assert cut["status"] == "interrupted"

        done = runner_cli("resume", "latest", "--repo", str(repo), "--json")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        tasks = {t["id"]: t for t in result["tasks"]}
        assert {t["status"] for t in tasks.values()} == {"merged"}, tasks
        assert tasks["fast1"]["attempts"] == 1 and tasks["slow2"]["attempts"] == 2
        # The interrupted attempt's partial work moved to its attempt ref, not lost.
        assert git(repo, "show", f"{names.attempt_ref(run_id, 'slow1', 1)}:s1/p") == "part"
        assert leftovers(docker_client, run_id) == []
    finally:
        remove_caches(docker_client, repo)


def test_resume_refuses_a_finished_run_and_an_unknown_one(run_plan: RunPlan) -> None:
    run = run_plan("tasks:\n  - id: one\n    run: echo x > x.txt\n", {"README.md": "x\n"})
    assert run.code == 0, run.stderr
    again = runner_cli("resume", run.result["run_id"], "--repo", str(run.repo))
    assert again.returncode == 2 and "nothing to resume" in again.stderr
    assert "Traceback" not in again.stderr
    unknown = runner_cli("resume", "nope", "--repo", str(run.repo))
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr


RETRY = """\
tasks:
  - id: flaky
    retries: 2
    scope: ["f/**"]
    run: |
      mkdir f
      if [ ! -e /cache/tried ]; then touch /cache/tried; echo first > f/first.txt; exit 1; fi
      echo ok > f/x.txt
  - id: broken
    retries: 1
    scope: ["b/**"]
    run: mkdir b && echo x > b/x.txt && exit 4
  - id: once
    scope: ["o/**"]
    run: exit 5
"""


def test_a_task_that_fails_once_is_retried_and_merged(
    run_plan: RunPlan, docker_client: docker.DockerClient
) -> None:
    run = run_plan(RETRY, {"README.md": "x\n"})
    assert run.code == 1, run.stderr
    flaky, broken, once = run.task("flaky"), run.task("broken"), run.task("once")
    assert flaky["status"] == "merged" and flaky["attempts"] == 2
    assert run.show(run.result["integration_ref"], "f/x.txt") == "ok"
    # Merged work is not duplicated: the failed attempt's file is not on the branch...
    with pytest.raises(Exception):  # noqa: B017 - git show fails: the path is not there
        run.show(run.result["integration_ref"], "f/first.txt")
    # ...and it is not lost either: it is under the attempt's own ref.
    first = names.attempt_ref(run.result["run_id"], "flaky", 1)
    assert run.show(first, "f/first.txt") == "first"
    assert any(first in n for n in flaky["notes"])
    assert broken["status"] == "failed" and broken["attempts"] == 2
    assert once["status"] == "failed" and once["attempts"] == 1  # retries: 0 by default


def test_plan_retries_are_checked(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("tasks:\n  - id: a\n    run: 'true'\n    retries: 99\n    retry_on: [merged]\n")
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    done = runner_cli("plan", str(plan), "--repo", str(repo))
    assert done.returncode == 2, done.stderr
    assert "retries" in done.stderr and "retry_on" in done.stderr
    assert f"{plan}:4" in done.stderr
    assert "Traceback" not in done.stderr
    assert os.path.exists(plan)


TWO = """\
tasks:
  - id: writer
    scope: ["w/**"]
    run: mkdir w && echo begun > w/begun.txt && sleep 300
  - id: other
    scope: ["o/**"]
    run: mkdir o && echo begun > o/begun.txt && sleep 300
"""


def test_a_second_ctrl_c_abandons_collection_but_removes_everything_and_says_where(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    try:
        proc = start_run(tmp_path, repo, TWO)
        run_id = _run_id(repo)
        _wait(repo, run_id, ready=set(), started={"writer", "other"})
        runs = repo / ".git/runner/runs" / run_id
        for task in ("writer", "other"):
            for _ in range(300):
                if (runs / "tasks" / task / "work" / task[0] / "begun.txt").exists():
                    break
                time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)  # inside the kill or the collection
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert leftovers(docker_client, run_id) == []
        result = json.loads((runs / "result.json").read_text())
        assert result["status"] == "interrupted"
        for task in result["tasks"]:
            # Either collected (its work under its ref) or abandoned with its workspace named;
            # never "not reached", never lost.
            reason = task["reason"] or ""
            if task["ref"]:
                assert git(repo, "show", f"{task['ref']}:{task['id'][0]}/begun.txt") == "begun"
            else:
                assert "abandoned" in reason or "workspace" in reason, task
                work = Path(reason.split("workspace ")[1].split()[0].rstrip(";"))
                assert (work / task["id"][0] / "begun.txt").read_text() == "begun\n"
    finally:
        remove_caches(docker_client, repo)


RETRY_LATER = """\
tasks:
  - id: ok
    scope: ["k/**"]
    run: mkdir k && echo k > k/x.txt
  - id: flaky
    scope: ["f/**"]
    run: |
      if [ ! -e /cache/tried ]; then touch /cache/tried; exit 1; fi
      mkdir f && echo ok > f/x.txt
  - id: dep
    depends_on: [flaky]
    scope: ["d/**"]
    run: mkdir d && cp f/x.txt d/x.txt
"""


def test_runner_retry_runs_only_the_named_task_and_its_dependents(run_plan: RunPlan) -> None:
    run = run_plan(RETRY_LATER, {"README.md": "x\n"})
    assert run.code == 1, run.stderr
    assert run.task("flaky")["status"] == "failed" and run.task("dep")["status"] == "skipped"
    run_id = run.result["run_id"]

    merged = runner_cli("retry", run_id, "ok", "--repo", str(run.repo))
    assert merged.returncode == 2 and "nothing to retry" in merged.stderr

    done = runner_cli("retry", run_id, "flaky", "--repo", str(run.repo), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    tasks = {t["id"]: t for t in result["tasks"]}
    assert result["run_id"] == run_id and result["status"] == "success"
    assert {t["status"] for t in tasks.values()} == {"merged"}
    assert tasks["ok"]["attempts"] == 1  # not run again
    assert tasks["flaky"]["attempts"] == 2 and tasks["dep"]["attempts"] == 1
    assert any("runner retry" in n for n in tasks["flaky"]["notes"])
    assert run.show(result["integration_ref"], "d/x.txt") == "ok"
    assert run.show(result["integration_ref"], "k/x.txt") == "k"
