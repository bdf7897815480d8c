"""A run's outcomes per task: merged, scope_violation, conflict, failed, timeout; nothing lost."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import RunPlan, git

FILES = {"README.md": "hello\n", "src/app.txt": "line one\nline two\n", "contracts/c.md": "v1\n"}


def test_wave_two_task_sees_the_files_its_dependency_created(run_plan: RunPlan) -> None:
    run = run_plan(
        """
        tasks:
          - id: maker
            scope: ["data/**"]
            run: mkdir -p data && echo "made by maker" > data/made.txt
          - id: reader
            depends_on: [maker]
            scope: ["seen/**"]
            run: mkdir -p seen && cp data/made.txt seen/copy.txt
        """,
        FILES,
    )
    assert run.code == 0, run.stderr
    assert [t["status"] for t in run.result["tasks"]] == ["merged", "merged"]
    assert run.task("reader")["start_commit"] != run.result["base_commit"]
    head = run.result["integration_commit"]
    assert run.show(head, "seen/copy.txt") == "made by maker"
    assert run.result["isolation"]["unchanged"] is True


def test_scope_violation_is_kept_not_merged(run_plan: RunPlan) -> None:
    run = run_plan(
        """
        tasks:
          - id: good
            scope: ["docs/**"]
            run: mkdir -p docs && echo ok > docs/a.md
          - id: sneaky
            scope: ["src/**"]
            deny: ["src/app.txt"]
            run: |
              echo edited >> src/app.txt
              echo "new" > README.md
              echo "changed contract" > contracts/c.md
        shared: contracts
        """,
        FILES,
    )
    assert run.code == 1
    sneaky = run.task("sneaky")
    assert sneaky["status"] == "scope_violation"
    assert sneaky["violations"] == ["README.md", "contracts/c.md", "src/app.txt"]
    # Kept under its ref, with the work in it; not on the integration branch.
    assert run.show(sneaky["ref"], "README.md") == "new"
    head = run.result["integration_commit"]
    assert run.show(head, "README.md") == "hello"
    assert run.task("good")["status"] == "merged"
    assert run.show(head, "docs/a.md") == "ok"


def test_conflict_between_tasks_of_a_wave(run_plan: RunPlan) -> None:
    run = run_plan(
        """
        on_overlap: allow
        on_conflict: skip
        tasks:
          - id: first
            scope: ["src/**"]
            run: sed -i 's/line one/ONE by first/' src/app.txt
          - id: second
            scope: ["src/**"]
            run: sed -i 's/line one/ONE by second/' src/app.txt
          - id: other
            scope: ["docs/**"]
            run: mkdir docs && echo x > docs/x.md
        """,
        FILES,
    )
    assert run.code == 1
    assert run.task("first")["status"] == "merged"
    second = run.task("second")
    assert second["status"] == "conflict"
    assert second["conflicts"] == [{"with_task": "first", "files": ["src/app.txt"]}]
    assert "src/app.txt" in second["reason"]
    assert run.show(second["ref"], "src/app.txt").startswith("ONE by second")
    assert run.task("other")["status"] == "merged"  # skip: the rest of the wave goes on
    assert run.show(run.result["integration_commit"], "src/app.txt").startswith("ONE by first")


def test_conflict_stops_the_run_and_keeps_everything(run_plan: RunPlan) -> None:
    run = run_plan(
        """
        on_overlap: allow
        tasks:
          - id: first
            run: echo a > same.txt
          - id: second
            run: echo b > same.txt
          - id: later
            depends_on: [first]
            run: echo c > later.txt
        """,
        FILES,
    )
    assert run.code == 1
    statuses = {t["id"]: t["status"] for t in run.result["tasks"]}
    assert statuses == {"first": "merged", "second": "conflict", "later": "skipped"}
    assert "stopped" in run.task("later")["reason"]
    assert run.show(run.task("second")["ref"], "same.txt") == "b"


def test_failing_task_keeps_partial_work_and_skips_dependents(run_plan: RunPlan) -> None:
    run = run_plan(
        """
        tasks:
          - id: broken
            scope: ["a/**"]
            run: |
              mkdir a && echo partial > a/p.txt
              echo "about to fail" >&2
              exit 3
          - id: fine
            scope: ["b/**"]
            run: mkdir b && echo fine > b/f.txt
          - id: after
            depends_on: [broken]
            scope: ["a/**"]
            run: echo never > never.txt
        """,
        FILES,
    )
    assert run.code == 1
    broken = run.task("broken")
    assert (broken["status"], broken["exit_code"]) == ("failed", 3)
    assert run.show(broken["ref"], "a/p.txt") == "partial"
    assert "about to fail" in Path(broken["log_path"]).read_text()
    assert run.task("fine")["status"] == "merged"
    after = run.task("after")
    assert after["status"] == "skipped" and "broken is failed" in after["reason"]


def test_timeout_kills_the_task_and_keeps_partial_work(run_plan: RunPlan) -> None:
    run = run_plan(
        """
        tasks:
          - id: sleeper
            scope: ["started.txt"]
            timeout: 2
            run: |
              echo started > started.txt
              sleep 120
          - id: quick
            scope: ["q/**"]
            run: mkdir q && echo q > q/q.txt
        """,
        FILES,
    )
    assert run.code == 1
    sleeper = run.task("sleeper")
    assert sleeper["status"] == "timeout"
    assert sleeper["duration_s"] < 30
    assert run.show(sleeper["ref"], "started.txt") == "started"
    assert run.task("quick")["status"] == "merged"


def test_red_verify_keeps_integration_at_last_green(run_plan: RunPlan) -> None:
    run = run_plan(
        """
        verify: test ! -e broken.txt
        tasks:
          - id: ok
            run: echo fine > fine.txt
          - id: breaker
            depends_on: [ok]
            run: echo bad > broken.txt
        """,
        FILES,
    )
    assert run.code == 1
    waves = run.result["waves"]
    assert [w["verify"] for w in waves] == ["green", "red"]
    assert run.task("ok")["status"] == "merged"
    assert run.task("breaker")["status"] == "verify_failed"
    head = run.result["integration_commit"]
    assert head == waves[0]["merged_commit"]
    assert git(run.repo, "rev-parse", run.result["integration_ref"]) == head
    kept = git(run.repo, "for-each-ref", "--format=%(refname)", "refs/runner/")
    assert f"refs/runner/{run.result['run_id']}/verify-failed/wave-2" in kept.split()


def test_no_changes_and_usage_log(run_plan: RunPlan) -> None:
    run = run_plan(
        """
        tasks:
          - id: idle
            run: |
              echo looking
              echo '{"input_tokens": 10, "output_tokens": 5}' > "$RUNNER_OUT/usage.json"
        """,
        FILES,
    )
    assert run.code == 0, run.stderr
    idle = run.task("idle")
    assert idle["status"] == "no_changes" and idle["ref"] is None
    assert idle["cpu_s"] is not None and idle["peak_memory_bytes"] > 0
    usage = (run.repo / ".git" / "runner" / "usage.jsonl").read_text().splitlines()
    assert '"tokens": 15' in usage[-1] and '"task": "idle"' in usage[-1]


def test_serialize_runs_overlapping_tasks_one_after_the_other(run_plan: RunPlan) -> None:
    run = run_plan(
        """
        on_overlap: serialize
        tasks:
          - id: first
            scope: ["src/**"]
            run: echo first >> src/app.txt
          - id: second
            scope: ["src/app.txt"]
            run: grep -q first src/app.txt && echo second >> src/app.txt
        """,
        FILES,
    )
    assert run.code == 0, run.stderr
    assert [w["tasks"] for w in run.result["waves"]] == [["first"], ["second"]]
    final = run.show(run.result["integration_commit"], "src/app.txt")
    assert final.splitlines()[-2:] == ["first", "second"]


def test_log_is_capped_by_policy_and_keeps_its_end(run_plan: RunPlan) -> None:
    run = run_plan(
        """
        tasks:
          - id: chatty
            policy: quiet.yaml
            run: |
              echo first line
              seq 1 20000
              echo last line
        """,
        FILES,
        extra={"quiet.yaml": "max_log: 1k\n"},
    )
    assert run.code == 0, run.stderr
    chatty = run.task("chatty")
    log = Path(chatty["log_path"]).read_text()
    assert log.startswith("first line\n")
    assert "bytes over max_log dropped" in log and "last line" in log
    assert len(log) < 1024 + 4096 + 200
    assert chatty["cpu_s"] is not None  # the metrics line at the end survived the cap


def test_a_dirty_checkout_is_left_exactly_as_it_was(run_plan: RunPlan) -> None:
    run = run_plan(
        """
        tasks:
          - id: editor
            run: echo "task edit" > README.md && echo new > untracked.txt
        """,
        FILES,
        uncommitted={"README.md": "my unsaved edit\n", "untracked.txt": "mine\n"},
    )
    assert run.code == 0, run.stderr
    assert "uncommitted changes" in run.stderr
    assert (run.repo / "README.md").read_text() == "my unsaved edit\n"
    assert (run.repo / "untracked.txt").read_text() == "mine\n"
    assert run.result["isolation"]["unchanged"] is True
    assert run.show(run.result["integration_commit"], "README.md") == "task edit"
    assert git(run.repo, "status", "--porcelain") == "M README.md\n?? untracked.txt"


def test_red_verify_with_skip_goes_on_with_independent_work(run_plan: RunPlan) -> None:
    run = run_plan(
        """
        on_conflict: skip
        verify: test ! -e broken.txt
        tasks:
          - id: breaker
            scope: ["broken.txt"]
            run: echo bad > broken.txt
          - id: needs-breaker
            depends_on: [breaker]
            scope: ["x.txt"]
            run: echo x > x.txt
          - id: base-work
            scope: ["base.txt"]
            run: echo base > base.txt
          - id: later
            depends_on: [base-work]
            scope: ["later.txt"]
            run: echo later > later.txt
        on_overlap: allow
        """,
        FILES,
    )
    assert run.code == 1
    statuses = {t["id"]: t["status"] for t in run.result["tasks"]}
    # The wave went red; verified one by one, only breaker's work is red: the rest goes on.
    assert statuses == {
        "breaker": "verify_failed",
        "base-work": "merged",
        "needs-breaker": "skipped",
        "later": "merged",
    }
    assert run.result["waves"][0]["isolated"] == ["breaker", "base-work"]
    assert [w["verify"] for w in run.result["waves"]] == ["green", "green"]
    head = run.result["integration_commit"]
    assert run.show(head, "later.txt") == "later"
    kept = run.task("breaker")["reason"].rsplit(" ", 1)[-1]
    assert run.show(kept, "broken.txt") == "bad"  # the red merge is kept, not lost
