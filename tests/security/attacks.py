"""Each case of the attack suite declares its attack and expected outcome here, in one place.

`@attack("what the task tries", "what the host must see")` marks a test `security` and records
the pair; `python -m tests.security.table` prints them as the README's table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., object])


@dataclass(frozen=True)
class Attack:
    attack: str
    outcome: str
    test: str
    """module::function of the case."""
    line: int = 0
    """Where it is defined: the table's order does not depend on which module pytest imports
    first."""


CASES: list[Attack] = []


def attack(what: str, outcome: str) -> Callable[[F], F]:
    """Declare a case: the attack a task makes and the outcome the host must show."""

    def mark(fn: F) -> F:
        line = getattr(getattr(fn, "__code__", None), "co_firstlineno", 0)
        CASES.append(Attack(what, outcome, f"{fn.__module__}::{fn.__name__}", line))
        marked: F = pytest.mark.security(fn)
        return marked

    return mark
