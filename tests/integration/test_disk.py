"""The disk limit: a task that writes past `disk` in /work, /out or /cache ends disk_limit, with
its earlier work kept under its ref and the host's usage within the documented bound; a task
under the limit merges, and what a warm cache held before the task does not count."""

from __future__ import annotations

import json
import os
from pathlib import Path

import docker

from runner import names
from runner.coordinator import repo_key
from tests.integration.conftest import RunPlan, git, runner_cli

MiB = 1024**2
LIMIT = 64 * MiB
# The documented bound (README, bench/disk.py): a writer gets at most about what it writes in
# one look of the guard plus one kill past the limit; measured here up to ~300 MiB for `dd` at
# full speed on a loaded host. The writers below would write 2 GiB unchecked.
BOUND = LIMIT + 512 * MiB
POLICY = """\
disk: 64m
max_out: 1g        # the RUNNER_OUT copy must not be what stops the /out writer
max_bundle: 1g
"""
FILES = {"README.md": "hello\n"}
# Three writers past the limit, each after committing a file, and one under it (Swarm too).
PLAN = """\
policy: disk.yaml
concurrency: 2
tasks:
  - id: work
    scope: ["early-work", "big"]
    run: |
      echo early > "early-$RUNNER_TASK" && git add -A && git commit -qm early
      dd if=/dev/zero of=big bs=1M count=2048 2>/dev/null
  - id: out
    scope: ["early-out"]
    run: |
      echo early > "early-$RUNNER_TASK" && git add -A && git commit -qm early
      dd if=/dev/zero of="$RUNNER_OUT/big" bs=1M count=2048 2>/dev/null
  - id: cache
    scope: ["early-cache"]
    run: |
      echo early > "early-$RUNNER_TASK" && git add -A && git commit -qm early
      dd if=/dev/zero of=/cache/big bs=1M count=2048 2>/dev/null
  - id: small
    scope: ["small.txt"]
    run: |
      dd if=/dev/zero of=/cache/some bs=1M count=16 2>/dev/null
      echo fine > small.txt
"""


def test_writers_past_the_limit_end_disk_limit_and_keep_their_work(
    run_plan: RunPlan, docker_client: docker.DockerClient
) -> None:
    run = run_plan(
        PLAN,
        FILES,
        extra={"disk.yaml": POLICY},
    )
    assert run.code == 1, run.stderr
    for task_id in ("work", "out", "cache"):
        task = run.task(task_id)
        assert task["status"] == "disk_limit", task
        assert "stopped for writing more than 64 MiB" in task["reason"]
        assert task["ref"] == names.task_ref(run.result["run_id"], task_id)
        assert task["ref"] in task["reason"]
        # The work it committed before it filled the disk is kept under its ref.
        assert run.show(task["ref"], f"early-{task_id}") == "early"
    # How far each writer got on the host, from what it left: the file the collector committed
    # (/work), the copied-out RUNNER_OUT, the cache volume.
    work_big = int(git(run.repo, "cat-file", "-s", f"{run.task('work')['ref']}:big"))
    out_big = (Path(run.task("out")["out_path"]) / "big").stat().st_size
    volume = names.cache_volume(repo_key(run.repo), "task", "cache")
    mountpoint = docker_client.volumes.get(volume).attrs["Mountpoint"]
    cache_big = os.stat(Path(mountpoint) / "big").st_blocks * 512
    for got in (work_big, out_big, cache_big):
        assert LIMIT < got <= BOUND, f"{got / MiB:.0f} MiB written, bound {BOUND / MiB:.0f} MiB"
    small = run.task("small")
    assert small["status"] == "merged", small
    assert run.show(run.result["integration_commit"], "small.txt") == "fine"


def test_what_a_warm_cache_held_before_the_task_does_not_count(
    run_plan: RunPlan, tmp_path: Path
) -> None:
    # 40 MiB a run into the same cache volume: the second run ends with 80 MiB there, over
    # the 64 MiB limit, but it added only 40.
    plan = """
        policy: disk.yaml
        tasks:
          - id: warm
            scope: ["f.txt"]
            run: |
              dd if=/dev/zero of=/cache/w-$RUNNER_RUN bs=1M count=40 2>/dev/null
              echo "$RUNNER_RUN" > f.txt
        """
    first = run_plan(plan, FILES, extra={"disk.yaml": POLICY})
    assert first.task("warm")["status"] == "merged", first.task("warm")
    second = runner_cli("run", str(tmp_path / "plan.yaml"), "--repo", str(first.repo), "--json")
    assert second.returncode == 0, second.stderr
    task = json.loads(second.stdout)["tasks"][0]
    assert task["status"] == "merged", task
