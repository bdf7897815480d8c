"""The FROM lines `runner images build --from` checks against the daemon before building."""

from __future__ import annotations

from runner.images import from_lines


def test_each_from_naming_an_image_with_its_line() -> None:
    text = "# syntax note\nFROM runner/sandbox:1\nRUN true\n"
    assert from_lines(text) == [(2, "runner/sandbox:1")]


def test_stages_scratch_flags_and_args_are_not_images_to_check() -> None:
    text = (
        "ARG BASE=runner/sandbox:1\n"
        "FROM --platform=linux/amd64 runner/sandbox:1 AS Build\n"
        "from build\n"
        "FROM scratch\n"
        "FROM $BASE\n"
        "FROM other/image:2 as final\n"
    )
    assert from_lines(text) == [(2, "runner/sandbox:1"), (6, "other/image:2")]


def test_no_from_at_all() -> None:
    assert from_lines("RUN echo FROM nothing\n") == []
