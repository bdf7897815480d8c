"""The journal file: ordered, fsync'd appends; a torn last line read around and cut off."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from runner.journal import Journal, JournalError, read_journal


def test_events_are_numbered_lines_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal.open(path) as journal:
        first = journal.append("task_queued", task="a", wave=1, start="c0")
        journal.append("judged", task="a", status="failed", reason="exit code 1")
    lines = path.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2]
    read = read_journal(path)
    assert read.torn is None and read.size == path.stat().st_size
    assert read.events[0] == first
    assert read.events[1]["event"] == "judged" and read.events[1]["reason"] == "exit code 1"
    assert set(first) == {"seq", "time", "event", "task", "wave", "start"}


def test_a_torn_last_line_is_read_around_and_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal.open(path) as journal:
        journal.append("task_queued", task="a", wave=1, start="c0")
    whole = path.stat().st_size
    with path.open("ab") as fh:  # a crash in the middle of the second line
        fh.write(b'{"seq": 2, "time": "2026-01-01", "event": "jud')
    read = read_journal(path)
    assert [e["seq"] for e in read.events] == [1]
    assert read.torn is not None and "line 2" in read.torn and f"byte {whole}" in read.torn
    with Journal.open(path) as journal:
        journal.append("judged", task="a", status="failed", reason="x")
    again = read_journal(path)
    assert again.torn is None and [e["seq"] for e in again.events] == [1, 2]


@pytest.mark.parametrize(
    "tail",
    [b"\x00\x00\x00\x00\n", b"not json at all\n", b'{"seq": 2}\n', b"[1, 2]\n"],
    ids=["zeros", "text", "no-event", "not-an-object"],
)
def test_an_unreadable_last_line_is_where_reading_stops(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal.open(path) as journal:
        journal.append("interrupted", signal="SIGINT")
    path.write_bytes(path.read_bytes() + tail)
    read = read_journal(path)
    assert len(read.events) == 1 and read.torn is not None and "line 2" in read.torn


def test_damage_before_the_end_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal.open(path) as journal:
        for _ in range(3):
            journal.append("interrupted", signal="SIGINT")
    lines = path.read_bytes().split(b"\n")
    lines[1] = b"garbage"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalError, match=rf"{path}:2: not a journal event"):
        read_journal(path)


def test_a_gap_in_seq_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(
        '{"seq": 1, "time": "t", "event": "interrupted"}\n'
        '{"seq": 3, "time": "t", "event": "interrupted"}\n'
    )
    with pytest.raises(JournalError, match=r":2: event seq 3, expected 2"):
        read_journal(path)


def test_an_empty_journal_has_no_events(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"")
    assert read_journal(path).events == []


def test_appends_continue_an_existing_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal.open(path) as journal:
        journal.append("interrupted", signal="SIGINT")
    with Journal.open(path) as journal:
        assert journal.append("interrupted", signal="SIGTERM")["seq"] == 2


def test_appends_from_threads_stay_whole_and_in_seq_order(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal.open(path) as journal:

        def worker(name: str) -> None:
            for i in range(50):
                journal.append("task_queued", task=name, wave=i, start="c")

        threads = [threading.Thread(target=worker, args=(f"t{n}",)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    events = read_journal(path).events
    assert [e["seq"] for e in events] == list(range(1, 301))
    for n in range(6):  # each writer's own events keep their order
        assert [e["wave"] for e in events if e["task"] == f"t{n}"] == list(range(50))


def test_a_failed_write_leaves_no_torn_line_and_every_later_append_fails(tmp_path: Path) -> None:
    # /dev/full: every write fails with "no space left", as on a full disk.
    journal = Journal(tmp_path / "journal.jsonl", os.open("/dev/full", os.O_WRONLY), 0, 0)
    with pytest.raises(JournalError, match=r"cannot write the run journal.*No space left"):
        journal.append("interrupted", signal="SIGINT")
    with pytest.raises(JournalError):
        journal.append("interrupted", signal="SIGINT")
    journal.close()


def test_a_journal_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(JournalError, match=r"cannot write the run journal .*file/journal\.jsonl"):
        Journal.open(tmp_path / "file" / "journal.jsonl")


def test_unknown_event_names_are_refused(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "journal.jsonl") as journal, pytest.raises(ValueError):
        journal.append("taks_started", task="a")


def test_text_that_is_not_utf8_still_makes_a_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    odd = b"caf\xe9/\x1b[31m".decode("utf-8", "surrogateescape")  # a path's raw bytes
    with Journal.open(path) as journal:
        journal.append("judged", task="a", status="failed", reason=odd)
    assert read_journal(path).events[0]["reason"] == odd
