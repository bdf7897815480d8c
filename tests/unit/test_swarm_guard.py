"""The Swarm disk guard as data: its walk (the container backend's too) counts as `du`, its reports
parse as the coordinator acts on them, and its service template reads, never writes."""

from __future__ import annotations

import os
from pathlib import Path

from runner.core.policy import Policy
from runner.sandbox.base import SandboxSpec
from runner.sandbox.disk import usage
from runner.sandbox.options import service_task_template, volume_mount
from runner.sandbox.scripts import disk_guard
from runner.sandbox.swarm_guard import GuardLog, guard_template


def test_the_one_walk_counts_blocks_each_inode_once_and_follows_no_link(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "f").write_bytes(b"x" * 10_000)
    (tmp_path / "sparse").write_bytes(b"")
    with (tmp_path / "sparse").open("r+b") as fh:
        fh.seek(50 << 20)
        fh.write(b"y")
    os.link(tmp_path / "d" / "f", tmp_path / "hard")
    (tmp_path / "loop").symlink_to(tmp_path)
    total = usage([tmp_path])
    assert 10_000 < total < 1 << 20  # the sparse file costs its blocks, not its 50 MiB
    # The hard link, a directory named twice and a missing path add nothing.
    assert usage([tmp_path / "d", tmp_path, tmp_path / "missing"]) == total
    assert disk_guard.usage([str(tmp_path)]) == total  # the script the Swarm guard runs


def test_reports_parse_and_exceeded_kills_once() -> None:
    kills: list[int] = []
    g = GuardLog(kills.append)
    g.run([b"base 12", b"34\nexceeded 99 1\n", b"exceeded 120 1\nTraceback (most", b" recent)\n"])
    assert (g.base, g.exceeded, g.added, g.final) == (1234, True, 120, False)
    assert kills == [1]  # once, with what the guard killed itself
    assert g.errors == ["Traceback (most recent)"]
    assert not g.oom
    g.line("oom 1")
    g.line("final 130 140")
    assert (g.added, g.peak, g.final, g.oom) == (130, 140, True, True)
    assert g.lines[-2:] == ["oom 1", "final 130 140"]
    assert g.wait(lambda x: x.final, 0)


def test_guard_template_reads_the_task_volumes_only(tmp_path: Path) -> None:
    spec = SandboxSpec(
        run_id="r1", task_id="db", role="task", image="task-image:1", policy=Policy(),
        script="true", timeout=60, workspace=tmp_path, objects=tmp_path, state=tmp_path,
        start_commit="0123abcd", env={"SECRET": "s"},
    )  # fmt: skip
    labels = {"runner.run": "r1"}
    task = service_task_template(
        spec, command=["/bin/sh", "/runner/wrap.sh"], image=spec.image, networks=["task-net"],
        mounts=[volume_mount("w", "/work", labels), volume_mount("o", "/out", labels),
                volume_mount("s", "/shared", labels, read_only=True),
                volume_mount("c", "/cache", labels)],
        configs=[{"ConfigName": "task.sh"}], node="node1",
    )  # fmt: skip
    t = guard_template(
        task, service="runner-r1-task-db", image="runner/sandbox:1", network="depot-net",
        disk=64 << 20, script={"ConfigName": "guard"}, labels={"runner.role": "guard-task"},
    )  # fmt: skip
    c = t["ContainerSpec"]
    assert c["Image"] == "runner/sandbox:1"
    assert t["Placement"] == {"Constraints": ["node.id==node1"]}
    assert t["Networks"] == [{"Target": "depot-net"}]  # never the task's network
    volumes = [
        (m["Source"], m["Target"], m["ReadOnly"]) for m in c["Mounts"] if m["Type"] == "volume"
    ]
    assert volumes == [("w", "/work", True), ("o", "/out", True), ("c", "/cache", True)]
    binds = [(m["Source"], m["Target"]) for m in c["Mounts"] if m["Type"] == "bind"]
    assert binds == [("/var/run/docker.sock", "/var/run/docker.sock")]  # the node's own
    env = dict(e.split("=", 1) for e in c["Env"])
    assert env["RUNNER_GUARD_PATHS"] == "/work:/out:/cache"
    assert env["RUNNER_GUARD_SERVICE"] == "runner-r1-task-db"
    assert env["RUNNER_DISK"] == str(64 << 20)
    assert "SECRET" not in env  # the task's environment is not the guard's
    assert c["Configs"] == [{"ConfigName": "guard"}]
    assert (c["User"], c["ReadOnly"], c["CapabilityDrop"]) == ("0:0", True, ["ALL"])
    assert c["CapabilityAdd"] == ["CAP_DAC_READ_SEARCH"]
    assert c["StopSignal"] == "SIGTERM"  # its last look
    assert t["RestartPolicy"]["Condition"] == "none"


def test_a_log_read_again_goes_on_after_what_the_follower_saw() -> None:
    from runner.sandbox.swarm_guard import after

    seen = b"line 6\nline 7\nline 8\n"
    assert after(seen, b"line 7\nline 8\nline 9\nlast\n", key=14) == b"line 9\nlast\n"
    assert after(b"line 8\n", b"line 8\n") == b""  # it had it all
    # A flood of one byte: after its last run, which is where the follower lost its place.
    assert after(b"x" * 5000, b"x" * 900 + b"last line\n") == b"last line\n"
    assert after(b"gone\n", b"other\nlast\n") == b"other\nlast\n"  # a gap: all of it
    assert after(b"", b"all\n") == b"all\n"
