"""runner.runs without a daemon: a run read from its journal or result, logs as data, and the
next commands to type."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from runner.core.results import RunResult, RunStatus, TaskResult, TaskStatus
from runner.errors import InputError
from runner.gc import write_owner
from runner.journal import Journal
from runner.runs import (
    follow,
    for_terminal,
    list_runs,
    load_run,
    next_steps,
    tail,
    without_metrics,
)

RUN = "20260101-090000-aaaaaa"
B, C = "b" * 40, "c" * 40


def test_metrics_lines_are_left_out_of_a_log() -> None:
    log = b"one\n##runner-metrics rc=0 cpu_ns=1\ntwo\n##runner-metrics rc=0"
    assert without_metrics(log) == b"one\ntwo\n"
    assert without_metrics(b"plain ##runner-metrics inside\n") == b"plain ##runner-metrics inside\n"


@pytest.mark.parametrize(
    ("n", "expected"), [(2, b"b\nc"), (0, b""), (9, b"a\nb\nc"), (1, b"c")]
)  # fmt: skip
def test_tail_counts_a_last_line_without_newline(n: int, expected: bytes) -> None:
    assert tail(b"a\nb\nc", n) == expected


def test_for_terminal_shows_control_characters_escaped() -> None:
    shown = for_terminal(b"ok\r\n\x1b]0;pwned\x07\x1b[2Jtab\there\rX\n")
    assert shown == b"ok\n\\x1b]0;pwned\\x07\\x1b[2Jtab\there\\x0dX\n"


def test_follow_gives_whole_lines_as_they_come_until_the_task_ended(tmp_path: Path) -> None:
    log = tmp_path / "task.log"  # not there yet: the task is queued
    done = threading.Event()

    def task() -> None:
        time.sleep(0.1)
        with log.open("ab") as fh:
            for part in (b"first\nsec", b"ond\n##runner-metrics rc=0\n", b"no newline"):
                fh.write(part)
                fh.flush()
                time.sleep(0.1)
        done.set()

    writer = threading.Thread(target=task)
    writer.start()
    got = list(follow(log, done.is_set, poll=0.02))
    writer.join()
    assert b"".join(got) == b"first\nsecond\nno newline"
    assert got[0] == b"first\n"  # given before the task went on


def test_follow_from_an_offset(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_bytes(b"old\nnew\n")
    assert list(follow(log, lambda: True, start=4)) == [b"new\n"]


def _planned() -> dict[str, object]:
    return {
        "run_id": RUN, "repo": "/r", "plan": "/p.yaml", "base": "main", "base_commit": B,
        "integration_ref": f"refs/heads/runner/{RUN}/integration", "state_dir": "/s",
        "waves": [["a", "b"]],
        "tasks": [{"id": t, "wave": 1, "depends_on": [], "env": []} for t in ("a", "b")],
    }  # fmt: skip


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs" / RUN
    path.mkdir(parents=True)
    with Journal.open(path / "journal.jsonl") as journal:
        journal.append("planned", **_planned())
        journal.append("task_started", task="a", start=B, workspace="/ws/a", container="x")
        journal.append("verify_ended", wave=1, task=None, result="red", log="/v/1.log")
        journal.append("verify_ended", wave=1, task="a", result="green", log="/v/1a.log")
    return path


def test_a_live_run_is_read_from_its_journal(run_dir: Path) -> None:
    write_owner(run_dir)  # this process runs it
    view = load_run(run_dir)
    assert (view.status, view.live, view.result) == ("running", True, None)
    a, b = view.tasks
    assert (a.status, a.ended, a.kept) == ("running", False, "/ws/a")
    assert a.log_path == str(run_dir / "tasks" / "a" / "task.log")  # not journaled until it ends
    assert (b.status, b.log_path) == ("pending", None)
    assert [(v.task, v.result) for v in view.verify_logs] == [(None, "red"), ("a", "green")]
    assert view.document()["duration_s"] is not None  # so far


def test_a_run_whose_process_is_gone_died(run_dir: Path) -> None:
    view = load_run(run_dir)  # no owner.json
    assert (view.status, view.live) == ("died", False)


def test_a_finished_run_is_read_from_its_result_with_accepted_tasks(run_dir: Path) -> None:
    result = RunResult(
        run_id=RUN, repo="/r", plan="/p.yaml", base="main", base_commit=B,
        integration_ref=f"refs/heads/runner/{RUN}/integration", integration_commit=C,
        started_at="2026-01-01T09:00:00+00:00", state_dir=str(run_dir),
        status=RunStatus.PARTIAL, duration_s=3.0,
        tasks=[
            TaskResult(id="a", wave=1, status=TaskStatus.MERGED, ref="r/a", commit=C),
            TaskResult(id="b", wave=1, status=TaskStatus.SCOPE_VIOLATION, violations=["x"]),
        ],
    )  # fmt: skip
    (run_dir / "result.json").write_text(result.model_dump_json())
    (run_dir / "accepted.json").write_text('{"accepted": [{"task": "b"}]}')
    view = load_run(run_dir)
    assert (view.status, view.merged, view.result) == ("partial", 1, result)
    assert view.task("b").accepted and view.task("b").violations == ["x"]
    assert view.task("a").kept == "r/a"
    with pytest.raises(InputError, match="has no task 'z'") as exc:
        view.task("z")
    assert exc.value.hint == "its tasks: a, b"


def test_a_run_dir_with_nothing_in_it_or_a_bad_result_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="neither a result nor a journal"):
        load_run(tmp_path)
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(InputError, match=r"result.json: not a result document: Field required"):
        load_run(tmp_path)


def test_runs_are_listed_oldest_first(tmp_path: Path) -> None:
    for name in ("20260102-000000-aaaaaa", "20260101-000000-bbbbbb"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    assert [p.name for p in list_runs(tmp_path)] == [
        "20260101-000000-bbbbbb",
        "20260102-000000-aaaaaa",
    ]
    assert list_runs(tmp_path / "none") == []


def _result(*tasks: tuple[str, TaskStatus, str | None]) -> RunResult:
    return RunResult(
        run_id=RUN, repo="/repo", plan="/p.yaml", base="main", base_commit=B,
        integration_ref=f"refs/heads/runner/{RUN}/integration", integration_commit=C,
        started_at="2026-01-01T09:00:00+00:00", state_dir="/s", status=RunStatus.PARTIAL,
        tasks=[TaskResult(id=i, wave=1, status=s, ref=ref) for i, s, ref in tasks],
    )  # fmt: skip


def test_next_steps_name_the_commands_for_each_outcome() -> None:
    result = _result(
        ("ok", TaskStatus.MERGED, "r/ok"),
        ("wide", TaskStatus.SCOPE_VIOLATION, "r/wide"),
        ("crash", TaskStatus.FAILED, "r/crash"),
        ("slow", TaskStatus.TIMEOUT, None),
        ("red", TaskStatus.VERIFY_FAILED, "r/red"),
        ("same", TaskStatus.NO_CHANGES, None),
    )
    assert next_steps(result, Path("/repo")) == [
        f"runner apply {RUN}   # take the merged work into your branch",
        f"runner retry {RUN} crash slow   # run them again here",
        f"runner diff {RUN} wide   # review wide's work outside its scope",
        f"runner accept {RUN} wide   # then, if you want it after all",
        f"runner logs {RUN} crash   # crash ended failed",
        f"runner diff {RUN} crash   # its partial work",
        f"runner logs {RUN} slow   # slow ended timeout",
        f"runner logs {RUN} red --verify   # why verify went red",
    ]


def test_next_steps_name_the_repo_elsewhere_and_stay_short() -> None:
    many = [(f"t{i}", TaskStatus.FAILED, f"r/{i}") for i in range(6)]
    steps = next_steps(_result(*many), Path("/elsewhere"))
    assert len(steps) == 8
    retry = " ".join(f"t{i}" for i in range(6))
    assert steps[0] == f"runner retry {RUN} {retry} --repo /repo   # run them again here"
    assert steps[1] == f"runner logs {RUN} t0 --repo /repo   # t0 ended failed"
    assert steps[-1] == f"runner ps {RUN} --repo /repo   # and 6 more: every task"
    nothing = _result(("same", TaskStatus.NO_CHANGES, None))
    assert next_steps(nothing, Path("/repo")) == []


def test_ps_shows_a_cost_as_known_estimated_or_unknown_never_a_made_up_zero() -> None:
    from runner.cli_runs import _cost

    assert _cost(None, None) == "-"  # the task said nothing about usage
    assert _cost(None, "unknown") == "?"
    assert _cost(0.25, "reported") == "$0.2500"
    assert _cost(0.25, "estimated") == "~$0.2500"
