"""What a task reports besides commits (RUNNER_OUT, its log, its processes, its secrets) is
bounded data on the host: never a link, never unbounded, never a leak, never left running."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.security.attacks import attack
from tests.security.conftest import Attempt, Launch

FILES = {"README.md": "hello\n", "src/app.txt": "app\n"}
SECRET = "attack-secret-" + secrets.token_hex(8)
MARK = "runner-attack-bg-" + secrets.token_hex(4)
MAX_LOG = 64 * 1024

PLAN = r"""
tasks:
  - id: honest
    scope: ["src/**"]
    run: echo "honest change" >> src/app.txt
  - id: outlinks
    scope: ["outlinks/**"]
    run: |
      mkdir outlinks && echo work > outlinks/work.txt
      echo plain > "$RUNNER_OUT/plain.txt"
      ln -s /etc/passwd "$RUNNER_OUT/passwd"
      ln -s @OUTSIDE@ "$RUNNER_OUT/outside"
      ln -s @OUTSIDE@/planted "$RUNNER_OUT/planted"
      mkdir "$RUNNER_OUT/d" && ln -s .. "$RUNNER_OUT/d/up"
      mkfifo "$RUNNER_OUT/fifo"
  - id: outmany
    scope: ["outmany/**"]
    run: |
      mkdir outmany && echo work > outmany/work.txt
      mkdir "$RUNNER_OUT/many"
      i=0; while [ $i -lt 10000 ]; do i=$((i + 1)); : > "$RUNNER_OUT/many/$i"; done
  - id: outhuge
    scope: ["outhuge/**"]
    policy: out.yaml
    run: |
      mkdir outhuge && echo "committed work" > outhuge/work.txt
      git add outhuge && git commit -q -m "the work"
      head -c 8388608 /dev/urandom > "$RUNNER_OUT/huge.bin"
  - id: background
    scope: ["bg/**"]
    run: |
      mkdir bg
      setsid sh -c 'while :; do echo tick >> /work/bg/ticks; sleep 0.1; done' @MARK@ \
        </dev/null >/dev/null 2>&1 &
      nohup sh -c 'trap "" TERM HUP; while :; do sleep 0.1; done' @MARK@ >/dev/null 2>&1 &
      sleep 1
      echo done > bg/done.txt
  - id: logflood
    scope: ["flood/**"]
    policy: flood.yaml
    run: |
      mkdir flood && echo work > flood/work.txt
      # The daemon copies stdout and stderr apart (no order between them): the first line
      # goes to the stream the first flood follows on, the tail that must be kept is stdout's.
      echo first line >&2
      head -c 4000000 /dev/zero | tr '\0' y >&2
      head -c 40000000 /dev/zero | tr '\0' x
      echo
      echo last line
      sleep 3
  - id: secret
    scope: ["secret/**"]
    env: [ATTACK_SECRET_KEY]
    run: |
      echo "the key is $ATTACK_SECRET_KEY"
      echo "$ATTACK_SECRET_KEY" >&2
"""
POLICIES = {"out.yaml": "max_out: 1m\n", "flood.yaml": f"max_log: {MAX_LOG}\n"}


@pytest.fixture(scope="module")
def log_configs(docker_client: docker.DockerClient) -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="module")
def run(
    hostile: Launch, docker_client: docker.DockerClient, log_configs: list[dict[str, Any]]
) -> Attempt:
    def watch() -> None:  # the daemon's own copy of a live flooding sandbox's output
        flt: dict[str, Any] = {"label": ["runner.task=logflood", "runner.role=task"]}
        for c in docker_client.containers.list(filters=flt):
            log_configs.append(c.attrs["HostConfig"]["LogConfig"])

    return hostile(
        PLAN,
        FILES,
        extra=POLICIES,
        env={"ATTACK_SECRET_KEY": SECRET},
        setup=lambda _repo: {"MARK": MARK},
        watch=watch,
    )


def test_the_run_goes_on(run: Attempt) -> None:
    assert run.stdout.startswith("{"), run.stderr[-3000:]
    assert run.task("honest")["status"] == "merged"
    assert run.result["isolation"]["unchanged"] is True


def walk(root: Path) -> list[Path]:
    return [Path(d) / n for d, dirs, files in os.walk(root) for n in dirs + files]


@attack(
    "RUNNER_OUT holding symlinks (to /etc/passwd, to a host directory, up the tree) and a FIFO",
    "only regular files and directories come home; the host directory stays empty",
)
def test_out_links_and_fifos_stay_in_the_sandbox(run: Attempt) -> None:
    task = run.task("outlinks")
    assert task["status"] == "merged", task
    out = Path(task["out_path"])
    assert (out / "plain.txt").read_text() == "plain\n"
    for path in walk(out):
        mode = path.lstat().st_mode
        assert stat.S_ISREG(mode) or stat.S_ISDIR(mode), path
    assert list(run.outside.iterdir()) == []


@attack("RUNNER_OUT with 10,000 files", "copied home; the task merges")
def test_out_many_files(run: Attempt) -> None:
    task = run.task("outmany")
    assert task["status"] == "merged", task
    assert len(os.listdir(Path(task["out_path"]) / "many")) == 10000


@attack(
    "RUNNER_OUT of 8 MiB under `max_out: 1m`, after committing its work",
    "the copy is refused with a note; the committed work is still under its ref and merged",
)
def test_out_over_its_cap_never_loses_the_work(run: Attempt) -> None:
    task = run.task("outhuge")
    assert task["ref"], task
    assert run.show(task["ref"], "outhuge/work.txt") == "committed work"
    assert any("RUNNER_OUT" in note for note in task["notes"]), task
    assert task["status"] == "merged", task
    out = Path(task["out_path"]) if task["out_path"] else None
    copied = sum(p.stat().st_size for p in walk(out) if p.is_file()) if out else 0
    assert copied <= 1024**2


@attack(
    "a log flood (44 MB on stdout and stderr under `max_log: 64k`)",
    "the kept log is capped (its start and last 4 KiB); the daemon's copy is size-bounded",
)
def test_log_flood_is_bounded(run: Attempt, log_configs: list[dict[str, Any]]) -> None:
    task = run.task("logflood")
    assert task["status"] == "merged", task
    log = Path(task["log_path"])
    assert log.stat().st_size <= MAX_LOG + 4096 + 256
    assert log.read_bytes().startswith(b"first line\n")
    assert b"last line" in log.read_bytes()[-4096:]
    collect_log = log.parent / "collect.log"
    if collect_log.exists():
        assert collect_log.stat().st_size <= MAX_LOG + 4096 + 256
    assert log_configs, "the flooding sandbox was never seen live"
    for config in log_configs:
        bounded = config["Type"] == "none" or "max-size" in config.get("Config", {})
        assert bounded, config


@attack(
    "leaving background processes behind (setsid, nohup, ignoring SIGTERM)",
    "gone with the sandbox: none runs on the host after the run; collection undisturbed",
)
def test_background_processes_are_gone(run: Attempt) -> None:
    task = run.task("background")
    assert task["status"] == "merged", task
    assert run.show(task["ref"], "bg/done.txt") == "done"
    assert "bg/ticks" in run.files(task["ref"])
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if MARK.encode() in cmdline:
            left.append(pid)
    assert left == []


@attack(
    "printing a secret passed with `env:`",
    "masked (`***`) in the log; its value in no file the runner wrote (state dir, result, "
    "usage.jsonl) nor in the CLI's output",
)
def test_secret_is_masked_and_never_written(run: Attempt) -> None:
    task = run.task("secret")
    assert task["status"] == "no_changes", task
    log = Path(task["log_path"]).read_text()
    assert "the key is ***" in log
    assert SECRET not in run.stdout and SECRET not in run.stderr
    files = run.state_files()
    assert any(f.name == "usage.jsonl" for f in files)
    leaked = [str(f) for f in files if SECRET.encode() in f.read_bytes()]
    assert leaked == []
