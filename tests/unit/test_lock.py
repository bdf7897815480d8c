"""One run per repo: the lock refuses a second holder and frees itself with its process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.errors import InputError
from runner.lock import repo_lock


def test_a_second_run_is_refused_naming_the_first(tmp_path: Path) -> None:
    refused = pytest.raises(InputError, match=r"another run is in progress .*run run-one, pid \d+")
    with repo_lock(tmp_path, "run-one"), refused, repo_lock(tmp_path, "run-two"):
        pass
    with repo_lock(tmp_path, "run-three"):  # free again once the first ended
        assert "run-three" in (tmp_path / "lock").read_text()


def test_a_killed_holders_lock_is_free_at_once(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from runner.lock import repo_lock\n"
         "with repo_lock(Path(sys.argv[1]), 'dead-run'):\n"
         "    print('held', flush=True); time.sleep(60)\n", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(InputError), repo_lock(tmp_path, "mine"):
        pass
    holder.kill()  # SIGKILL: no cleanup code runs
    holder.wait(timeout=10)
    holder.stdout.close()
    deadline = time.monotonic() + 10
    while True:  # bounded; the kernel drops the lock with the process
        try:
            with repo_lock(tmp_path, "mine"):
                break
        except InputError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
