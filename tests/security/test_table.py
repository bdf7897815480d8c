"""The README's table of attacks comes from the suite: one row per declared case (no daemon)."""

from __future__ import annotations

import importlib

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
