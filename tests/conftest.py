"""Shared by every test folder: no test may leave os.environ changed (as tox's own tests)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _environ_unchanged() -> Iterator[None]:
    # Autouse, so set up before `monkeypatch` and torn down after it has restored its changes:
    # monkeypatch.setenv passes, a bare os.environ[...] = ... fails.
    before = os.environ.copy()
    yield
    after = os.environ.copy()
    ignored = ("PYTEST_",)  # PYTEST_CURRENT_TEST moves with every phase
    changed = sorted(
        key
        for key in before.keys() | after.keys()
        if before.get(key) != after.get(key) and not key.startswith(ignored)
    )
    if changed:
        for key in changed:  # put it back, so the tests after this one start clean
            if key in before:
                os.environ[key] = before[key]
            else:
                del os.environ[key]
        pytest.fail(f"the test changed os.environ: {', '.join(changed)}", pytrace=False)
