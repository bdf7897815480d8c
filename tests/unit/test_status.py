"""`runner status` without a daemon: which run a name means, and a journal read as it stands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from runner.errors import InputError
from runner.journal import Journal, JournalError
from runner.status import find_run, load_status, print_status

RUNS = ["20260101-090000-aaaaaa", "20260101-090000-aaaabb", "20260102-100000-cccccc"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for run in RUNS:
        (tmp_path / "runs" / run).mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize(
    ("which", "found"),
    [
        ("latest", RUNS[2]),
        (RUNS[0], RUNS[0]),
        ("20260102", RUNS[2]),
        ("20260101-090000-aaaab", RUNS[1]),
    ],
)
def test_a_run_is_named_by_id_unique_prefix_or_latest(root: Path, which: str, found: str) -> None:
    assert find_run(root, which).name == found


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("20260101", "ambiguous: it begins 2 runs"),
        ("1999", "no run '1999'"),
        ("../runs", "no run"),
        ("\x1b[2J", r"no run '\\\\x1b\[2J'"),  # a control character is shown, not sent
    ],
)
def test_a_name_that_is_not_one_run_is_a_clear_error(root: Path, which: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        find_run(root, which)


def test_no_runs_at_all(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no runs in"):
        find_run(tmp_path, "latest")


def _planned(run: str) -> dict[str, object]:
    return {
        "run_id": run, "repo": "/r", "plan": "/p.yaml", "base": "main", "base_commit": "b" * 40,
        "integration_ref": f"refs/heads/runner/{run}/integration", "state_dir": "/s",
        "waves": [["a"]], "tasks": [{"id": "a", "wave": 1, "depends_on": [], "env": []}],
    }  # fmt: skip


def test_a_journal_torn_mid_write_shows_its_state_and_where_it_stopped(root: Path) -> None:
    path = root / "runs" / RUNS[2] / "journal.jsonl"
    with Journal.open(path) as journal:
        journal.append("planned", **_planned(RUNS[2]))
        journal.append("task_started", task="a", start="b" * 40, workspace="/ws", container="c")
    with path.open("ab") as fh:
        fh.write(b'{"seq": 3, "ev')
    status = load_status(root, "latest")
    assert status.state.task("a").state == "running" and status.torn is not None
    assert status.died  # no owner.json: nobody runs it
    doc = status.document()
    assert doc["tasks"][0]["state"] == "running" and json.dumps(doc)
    console = Console(record=True, width=200)
    print_status(status, console)
    shown = console.export_text()
    assert "running" in shown and "it died" in shown and "partial last line" in shown


def test_a_damaged_journal_is_an_error_naming_it(root: Path) -> None:
    path = root / "runs" / RUNS[0] / "journal.jsonl"
    path.write_text('{"seq": 1, "time": "t", "event": "judged", "task": "a"}\n')
    with pytest.raises(JournalError, match=rf"{path}: event 1: `judged` before `planned`"):
        load_status(root, RUNS[0])
