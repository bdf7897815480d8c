"""Where a task's time went (`phases` in the result), and collection skipped only for a task
that provably changed nothing: every subtler change still comes home (issue 8)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from runner.core.results import PHASES
from tests.integration.conftest import RunPlan

FILES = {f"{name}.txt": "hello\n" for name in "abcdefgh"} | {"base.txt": "base\n"}


def _collector_ran(task: dict[str, object]) -> bool:
    # The collector writes collect.log next to the task's own log in its state dir.
    return (Path(str(task["log_path"])).parent / "collect.log").exists()


def test_phases_of_merged_and_conflicting_tasks(run_plan: RunPlan) -> None:
    run = run_plan(
        """
        on_overlap: allow
        tasks:
          - id: first
            scope: ["a.txt"]
            run: echo first > a.txt
          - id: second
            scope: ["a.txt"]
            run: echo second > a.txt
        """,
        FILES,
    )
    first, second = run.task("first"), run.task("second")
    assert (first["status"], second["status"]) == ("merged", "conflict"), run.stderr
    for task in (first, second):
        assert list(task["phases"]) == list(PHASES), task["id"]
        starts = [datetime.fromisoformat(p["start"]) for p in task["phases"].values()]
        assert starts == sorted(starts), task["phases"]
        assert all(p["duration_s"] >= 0 for p in task["phases"].values())
        # The script's own run is inside the `task` phase.
        assert task["phases"]["task"]["duration_s"] >= task["duration_s"] - 0.01
    assert _collector_ran(first)


def test_unchanged_workspace_skips_the_collector_and_every_change_still_comes_home(
    run_plan: RunPlan,
) -> None:
    run = run_plan(
        """
        concurrency: 4
        tasks:
          - id: noop
            scope: ["a.txt"]
            run: cat a.txt >/dev/null && ls -la >/dev/null && git status >/dev/null
          - id: same-size-old-mtime
            scope: ["b.txt"]
            run: |
              was=$(stat -c %y b.txt)
              printf 'hellO\\n' > b.txt
              touch -d "$was" b.txt
          - id: staged-then-edited
            scope: ["h.txt"]
            run: |
              printf 'hellO\\n' > h.txt && git add h.txt
              was=$(stat -c %y h.txt)
              printf 'HellO\\n' > h.txt
              touch -d "$was" h.txt
          - id: exec-bit
            scope: ["c.txt"]
            run: chmod +x c.txt
          - id: commit-only
            scope: ["d.txt"]
            run: |
              git -c user.name=t -c user.email=t@example.test commit -q --allow-empty -m empty
          - id: out-only
            scope: ["e.txt"]
            run: echo report > "$RUNNER_OUT/report.txt"
          - id: renamed-back
            scope: ["f.txt"]
            run: mv f.txt f.tmp && mv f.tmp f.txt
          - id: new-file
            scope: ["g/**"]
            run: "mkdir g && touch g/empty"
        """,
        FILES,
    )
    tasks = {t["id"]: t for t in run.result["tasks"]}
    assert tasks["noop"]["status"] == "no_changes", run.stderr
    assert not _collector_ran(tasks["noop"])
    assert "collect" in tasks["noop"]["phases"]
    for task_id in ("same-size-old-mtime", "exec-bit", "commit-only", "out-only", "renamed-back",
                    "new-file", "staged-then-edited"):  # fmt: skip
        assert _collector_ran(tasks[task_id]), task_id
    head = run.result["integration_commit"]
    assert tasks["same-size-old-mtime"]["status"] == "merged"
    assert run.show(head, "b.txt") == "hellO"
    # Staged, then edited within the same second to the same size with the mtime set back: git
    # alone (one-second times) would take the staged blob and lose the last edit.
    assert run.show(head, "h.txt") == "HellO"
    assert tasks["exec-bit"]["status"] == "merged"
    assert tasks["exec-bit"]["files_changed"] == ["c.txt"]
    assert tasks["new-file"]["files_changed"] == ["g/empty"]
    report = Path(tasks["out-only"]["out_path"]) / "report.txt"
    assert report.read_text() == "report\n"
    assert tasks["renamed-back"]["status"] == "no_changes"
