"""Resource attacks end the task that makes them, with its partial work kept; the host and the
sibling tasks carry on."""

from __future__ import annotations

import pytest

from tests.integration.conftest import GVISOR, git
from tests.security.attacks import attack
from tests.security.conftest import Attempt, Launch

FILES = {"README.md": "hello\n", "src/app.txt": "app\n"}
MIB = 1024**2

PLAN = r"""
tasks:
  - id: honest
    scope: ["src/**"]
    run: echo "honest change" >> src/app.txt
  - id: forkbomb
    scope: ["fork/**"]
    timeout: 15
    run: |
      mkdir fork && echo started > fork/started.txt
      # A watcher started before the bomb (it needs no fork) records the pids cgroup's peak.
      python3 - <<'PY' &
      import glob, os, time
      paths = glob.glob("/sys/fs/cgroup/pids*/pids.current")
      paths += glob.glob("/sys/fs/cgroup/pids.current")
      peak = 0
      while True:
          for p in paths:
              peak = max(peak, int(open(p).read()))
          if not paths:  # no cgroup inside (gVisor): count the processes
              peak = max(peak, sum(1 for d in glob.glob("/proc/[0-9]*")))
          # Atomically: the timeout's kill may land mid-write, and the collector takes what is
          # there (a truncated file read as "").
          with open("fork/.peak", "w") as out: out.write(f"{peak}\n")
          os.replace("fork/.peak", "fork/peak.txt")
          time.sleep(0.1)
      PY
      sleep 1
      bomb() { bomb | bomb & }
      bomb
      sleep 60
  - id: membomb
    scope: ["mem/**"]
    policy: mem.yaml
    run: |
      mkdir mem && echo before > mem/before.txt
      python3 -c "blocks = [bytearray(16 * 1024 * 1024) for _ in range(64)]"
      echo survived > mem/after.txt
  - id: tmpfill
    scope: ["tmp/**"]
    policy: tmp.yaml
    run: |
      mkdir tmp
      if dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>/dev/null
      then echo written; else echo refused; fi > tmp/result.txt
      du -sk /tmp | cut -f1 > tmp/kib.txt
  - id: diskfill
    scope: ["disk/**"]
    policy: disk.yaml
    timeout: 120
    run: |
      mkdir disk && echo before > disk/before.txt
      git add disk && git commit -q -m before
      for i in $(seq 1 160); do head -c 1048576 /dev/urandom > disk/f$i.bin; done
      echo "wrote 160 MiB" > disk/done.txt
"""
POLICIES = {
    "mem.yaml": "memory: 128m\n",
    "tmp.yaml": "tmp_size: 16m\n",
    "disk.yaml": "disk: 64m\n",
}


@pytest.fixture(scope="module")
def run(hostile: Launch) -> Attempt:
    return hostile(PLAN, FILES, extra=POLICIES)


def test_the_run_goes_on(run: Attempt) -> None:
    assert run.stdout.startswith("{"), run.stderr[-3000:]
    assert run.task("honest")["status"] == "merged"
    assert run.show(run.integration(), "src/app.txt") == "app\nhonest change"
    assert run.result["isolation"]["unchanged"] is True


@attack(
    "fork bomb",
    "held by the pids limit (512); the task ends `timeout` or `failed` with its partial work "
    "under its ref; siblings merge",
)
def test_fork_bomb_is_contained(run: Attempt) -> None:
    bomb = run.task("forkbomb")
    assert bomb["status"] in ("timeout", "failed"), bomb
    assert run.show(bomb["ref"], "fork/started.txt") == "started"
    peak = int(run.show(bomb["ref"], "fork/peak.txt"))
    assert peak > 16  # the bomb ran
    if not GVISOR:  # and hit the policy's pids limit; under gVisor that limit bounds the
        assert peak <= 512  # sandbox kernel's own host threads, which then ends the sandbox


@attack(
    "memory bomb (1 GiB under a 128m policy)",
    "killed by the memory limit: `oom`, its partial work under its ref",
)
def test_memory_bomb_ends_oom(run: Attempt) -> None:
    bomb = run.task("membomb")
    assert bomb["status"] == "oom", bomb
    assert run.show(bomb["ref"], "mem/before.txt") == "before"
    assert "mem/after.txt" not in run.files(bomb["ref"])


@attack(
    "filling /tmp past its cap (64 MiB into a 16m tmpfs)",
    "the write fails with no space; /tmp holds at most its cap",
)
def test_tmp_is_capped(run: Attempt) -> None:
    fill = run.task("tmpfill")
    assert fill["status"] == "merged", fill
    assert run.show(fill["ref"], "tmp/result.txt") == "refused"
    assert int(run.show(fill["ref"], "tmp/kib.txt")) <= 16 * 1024


@attack(
    "writing 160 MiB to the workspace under `disk: 64m`",
    "stopped: `disk_limit`, its partial work under its ref; what comes home stays within a "
    "bound of the limit",
)
def test_disk_fill_is_stopped(run: Attempt) -> None:
    fill = run.task("diskfill")
    assert fill["status"] == "disk_limit", fill
    ref = fill["ref"]
    assert run.show(ref, "disk/before.txt") == "before"
    assert "disk/done.txt" not in run.files(ref)
    sizes = git(run.repo, "ls-tree", "-r", "-l", ref, "disk/").splitlines()
    taken = sum(int(line.split()[3]) for line in sizes)
    assert taken <= 2 * 64 * MIB, f"{taken / MIB:.0f} MiB came home past a 64m disk limit"
