"""The log pump as data: cap, tail, metrics line kept out, masking hook."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from runner.sandbox.logpump import LogPump

METRICS = b"##runner-metrics rc=0 cpu_ns=5 mem_bytes=7"


def pump(tmp_path: Path, chunks: list[bytes], cap: int = 1024) -> tuple[bytes, LogPump]:
    p = LogPump(tmp_path / "t.log", cap)
    p.run(chunks)
    return (tmp_path / "t.log").read_bytes(), p


def test_metrics_line_is_taken_out_wherever_it_falls(tmp_path: Path) -> None:
    log, p = pump(tmp_path, [b"one\n##runner-met", b"rics rc=0 cpu_ns=5 mem_bytes=7\ntwo\n"])
    assert log == b"one\ntwo\n"
    assert p.metrics == [METRICS]


def test_metrics_line_after_output_without_a_newline_is_taken_out(tmp_path: Path) -> None:
    # `printf done` as the task's last output: wrap.sh's line lands on the same line.
    log, p = pump(tmp_path, [b"done", b"##runner-metrics rc=0 cpu_ns=5 mem_bytes=7\n"])
    assert log == b"done"
    assert p.metrics == [METRICS]


def test_cap_keeps_the_head_and_the_last_bytes(tmp_path: Path) -> None:
    log, p = pump(tmp_path, [b"first\n", b"x" * 10_000 + b"\n", b"last line\n"], cap=100)
    assert log.startswith(b"first\n")
    assert b"bytes over max_log dropped" in log and log.endswith(b"last line\n")
    assert p.kept == 100 and p.dropped == 6 + 10_001 + 10 - 100


def test_output_without_a_final_newline_is_kept(tmp_path: Path) -> None:
    log, _ = pump(tmp_path, [b"no newline"])
    assert log == b"no newline"


class Upper:
    def feed(self, chunk: bytes) -> bytes:
        return chunk.upper()

    def flush(self) -> bytes:
        return b"<end>"


def test_masker_sees_every_byte(tmp_path: Path) -> None:
    p = LogPump(tmp_path / "t.log", 1024, masker=Upper())
    p.run([b"secret\n", b"tail"])
    assert (tmp_path / "t.log").read_bytes() == b"SECRET\nTAIL<end>"


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_any_chunking_keeps_all_bytes_under_the_cap(chunks: list[bytes]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        log, p = pump(Path(d), chunks, cap=10_000)
    *complete, partial = b"".join(chunks).split(b"\n")
    mark = b"##runner-metrics "
    expected = b"".join(ln.split(mark)[0] if mark in ln else ln + b"\n" for ln in complete)
    expected += partial.split(mark)[0]
    assert p.dropped == 0
    assert log == expected


def test_a_secret_of_digits_does_not_eat_the_metrics_line(tmp_path: Path) -> None:
    from runner.core.secrets import Masker

    p = LogPump(tmp_path / "t.log", 1024, masker=Masker(["5555"]))
    p.run([b"key 5555 here\n##runner-metrics rc=0 cpu_ns=5555 mem_bytes=7\n"])
    assert (tmp_path / "t.log").read_bytes() == b"key *** here\n"
    assert p.metrics == [b"##runner-metrics rc=0 cpu_ns=5555 mem_bytes=7"]
