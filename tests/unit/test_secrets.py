"""Masking the values of a task's variables in its output: whole, and chunk by chunk."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.core.secrets import MIN_LENGTH, Masker
from runner.sandbox.logpump import LogPump


def streamed(masker: Masker, data: bytes, cuts: list[int]) -> bytes:
    """data fed in pieces cut at the given offsets, then flushed."""
    out, prev = b"", 0
    for cut in [*sorted(set(cuts)), len(data)]:
        out += masker.feed(data[prev:cut])
        prev = cut
    return out + masker.flush()


def reference(values: list[str], text: str) -> str:
    """The specification, by brute force: every occurrence of every value is an interval;
    overlapping intervals merge; each merged interval is one ***."""
    spans = sorted(
        (i, i + len(v))
        for v in values
        for i in range(len(text) - len(v) + 1)
        if text.startswith(v, i)
    )
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, cur = "", 0
    for start, end in merged:
        out, cur = out + text[cur:start] + "***", end
    return out + text[cur:]


@pytest.mark.parametrize(
    ("values", "text", "masked"),
    [
        (["s3cr3t-token"], "key=s3cr3t-token; done", "key=***; done"),
        (["s3cr3t-token"], "s3cr3t-token", "***"),
        (["abcd"], "abcdabcd and abcd", "****** and ***"),  # touching: one *** each
        (["abcd", "cdef"], "xabcdefy", "x***y"),  # overlapping: nothing of either shows
        (["secret", "cret"], "a secret, a cretin", "a ***, a ***in"),  # one inside another
        (["aaaa"], "aaaaaaa!", "***!"),  # overlapping occurrences of one value
        (["pässwörd"], "the pässwörd is here", "the *** is here"),
        (["tok3n\n"], "printf: tok3n.", "printf: ***."),  # without a file's trailing newline
        (["line-one\nline-two\n"], "got line-two only", "got *** only"),  # one line of a key
        ([], "nothing to hide", "nothing to hide"),
    ],
)
def test_mask_text(values: list[str], text: str, masked: str) -> None:
    assert Masker(values).mask_text(text) == masked


def test_a_value_straddling_chunk_boundaries_is_masked() -> None:
    masker = Masker(["hunter2-long"])
    pieces = [b"pass=hun", b"ter", b"2-lo", b"ng\nnext line\n"]
    out = b"".join(masker.feed(p) for p in pieces) + masker.flush()
    assert out == b"pass=***\nnext line\n"


def test_output_is_held_back_only_while_it_may_start_a_value() -> None:
    masker = Masker(["abcdef"])
    assert masker.feed(b"hello abc") == b"hello "  # "abc" might become the value
    assert masker.feed(b"xyz ") == b"abcxyz "  # it did not: nothing is held back
    assert masker.feed(b"ab") == b""
    assert masker.feed(b"abcdef!") == b"ab***!"
    assert masker.flush() == b""


def test_a_masker_without_values_passes_chunks_through_untouched() -> None:
    masker = Masker([])
    chunk = b"anything \x00\xff"
    assert masker.feed(chunk) is chunk
    assert masker.flush() == b""


def test_short_values_are_not_masked_and_named() -> None:
    env = {"DEBUG": "1", "REGION": "eu", "TOKEN": "t0k3n-abc", "EMPTY": ""}
    masker = Masker.from_env(env)
    assert masker.too_short == ("DEBUG", "EMPTY", "REGION")
    assert masker.mask_text("DEBUG=1 REGION=eu TOKEN=t0k3n-abc") == "DEBUG=1 REGION=eu TOKEN=***"
    assert len("abc") < MIN_LENGTH <= len("abcd")
    assert Masker(["abc", "abcd"]).mask_text("abc abcd") == "abc ***"
    assert Masker(["ab"], min_length=1).mask_text("xaby") == "x***y"


def test_mask_text_leaves_the_stream_alone() -> None:
    masker = Masker(["abcdef"])
    assert masker.feed(b"x abc") == b"x "
    assert masker.mask_text("abcdef") == "***"
    assert masker.feed(b"def") + masker.flush() == b"***"


def test_min_length_must_be_positive() -> None:
    with pytest.raises(ValueError, match="min_length"):
        Masker(["x"], min_length=0)


# Small alphabets make overlaps, containment and near misses common.
ALPHABET = "ab*c"
values_st = st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=6), max_size=4)
text_st = st.text(alphabet=ALPHABET, max_size=80)


@settings(max_examples=300, deadline=None)
@given(values=values_st, text=text_st, data=st.data())
def test_any_chunking_gives_the_whole_texts_output(
    values: list[str], text: str, data: st.DataObject
) -> None:
    raw = text.encode()
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=12))
    masker = Masker(values, min_length=1)
    whole = masker.mask_text(text).encode()
    assert streamed(masker, raw, cuts) == whole
    # Byte by byte, the worst chunking: the same again (and the masker was fresh after flush).
    assert streamed(masker, raw, list(range(len(raw)))) == whole


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.text(alphabet="abc", min_size=1, max_size=6), max_size=4), text=text_st)
def test_masking_matches_the_brute_force_specification(values: list[str], text: str) -> None:
    # Values without newlines or surrounding blanks: each value is its only pattern.
    assert Masker(values, min_length=1).mask_text(text) == reference(values, text)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.text(alphabet="abc", min_size=1, max_size=6), max_size=4), text=text_st)
def test_no_value_survives_masking(values: list[str], text: str) -> None:
    masked = Masker(values, min_length=1).mask_text(text)
    assert not any(v in masked for v in values)


def test_the_log_pump_writes_masked_output(tmp_path: Path) -> None:
    masker = Masker.from_env({"API_KEY": "sk-live-123456", "DEBUG": "1"})
    chunks = [b"key is sk-li", b"ve-1234", b"56\n##runner-metrics rc=0 cpu_ns=5 mem_bytes=7\n"]
    chunks += [b"DEBUG=1 and sk-live-12"]  # ends in a prefix of the value: flushed as it is
    pump = LogPump(tmp_path / "t.log", 1024, masker=masker)
    pump.run(chunks)
    assert (tmp_path / "t.log").read_bytes() == b"key is ***\nDEBUG=1 and sk-live-12"
    assert pump.metrics == [b"##runner-metrics rc=0 cpu_ns=5 mem_bytes=7"]
