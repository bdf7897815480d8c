"""Print the attack suite's cases as a Markdown table: `python -m tests.security.table`."""

from __future__ import annotations

import importlib
import pkgutil

from tests import security
from tests.security.attacks import CASES

# Cases declared beside the tests that need their own set-up (the egress servers).
ELSEWHERE = ("tests.integration.test_egress",)


def load_cases() -> None:
    """Import every test module of the suite, which registers its cases."""
    for info in pkgutil.iter_modules(security.__path__):
        if info.name.startswith("test_"):
            importlib.import_module(f"{security.__name__}.{info.name}")
    for name in ELSEWHERE:
        importlib.import_module(name)


def markdown() -> str:
    load_cases()
    rows = ["| attack | outcome |", "|---|---|"]
    for case in sorted(CASES, key=lambda c: (c.test.split("::")[0], c.line)):
        cells = (c.replace("|", "\\|") for c in (case.attack, case.outcome))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown())
