"""The README's table of attacks comes from the suite: one row per declared case (no daemon)."""

from __future__ import annotations

import importlib
from pathlib import Path

from tests.security.attacks import CASES
from tests.security.table import markdown


def test_every_case_is_a_row_with_its_attack_and_outcome() -> None:
    table = markdown().splitlines()
    assert table[:2] == ["| attack | outcome |", "|---|---|"]
    assert len(table) == 2 + len(CASES) and len(CASES) >= 20
    for case in CASES:
        assert case.attack.strip() and case.outcome.strip(), case
        module, name = case.test.split("::")
        assert callable(getattr(importlib.import_module(module), name)), case.test
    assert len({c.attack for c in CASES}) == len(CASES)  # no case declared twice


def test_readme_shows_the_suites_table() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- attacks:begin -->\n", "\n<!-- attacks:end -->"
    assert begin in readme and end in readme
    shown = readme.split(begin, 1)[1].split(end, 1)[0]
    assert shown == markdown(), "README's attack table is stale: python -m tests.security.table"
