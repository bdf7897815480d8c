"""service_task_template: the same policy as container_options, as a Swarm TaskTemplate.
Tested as data; the live spec is compared with the policy in tests/integration/test_swarm.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from runner.core.policy import Policy
from runner.sandbox.base import SandboxSpec
from runner.sandbox.options import container_options, service_task_template, volume_mount
from runner.sandbox.swarm import MAX_NAME, object_name


def spec(tmp_path: Path, policy: Policy | None = None) -> SandboxSpec:
    return SandboxSpec(
        run_id="r1", task_id="db", role="task", image="runner/sandbox:1",
        policy=policy or Policy(), script="true", timeout=60, workspace=tmp_path / "work",
        objects=tmp_path / "objects", state=tmp_path, start_commit="0123abcd",
    )  # fmt: skip


def test_the_policy_maps_as_for_containers(tmp_path: Path) -> None:
    policy = Policy(cpus=0.5, memory=256 * 1024**2, pids=64, tmp_size=32 * 1024**2)
    s = spec(tmp_path, policy)
    work = volume_mount("v-work", "/work", {"runner.run": "r1"})
    t = service_task_template(
        s, command=["/bin/sh", "/runner/wrap.sh"], image=s.image, mounts=[work],
        networks=["net-a"], configs=[], node="node1",
    )  # fmt: skip
    c = container_options(s)
    spec_ = t["ContainerSpec"]
    assert spec_["User"] == c["user"] == "10001:10001"
    assert spec_["ReadOnly"] is c["read_only"] is True
    assert spec_["CapabilityDrop"] == c["cap_drop"] == ["ALL"]
    assert spec_["Init"] is c["init"] is True
    assert t["Resources"]["Limits"] == {
        "NanoCPUs": c["nano_cpus"], "MemoryBytes": policy.memory, "Pids": c["pids_limit"],
    }  # fmt: skip
    assert t["RestartPolicy"]["Condition"] == "none"
    assert t["Placement"] == {"Constraints": ["node.id==node1"]}
    assert t["Networks"] == [{"Target": "net-a"}]
    assert {m["Type"] for m in spec_["Mounts"]} == {"volume", "tmpfs"}  # never a bind
    tmp = next(m for m in spec_["Mounts"] if m["Target"] == "/tmp")
    assert tmp["TmpfsOptions"] == {"SizeBytes": policy.tmp_size}
    env = dict(e.split("=", 1) for e in spec_["Env"])
    assert env["RUNNER_TASK"] == "db" and env["HOME"] == "/tmp/home"
    assert spec_["Labels"]["runner.run"] == "r1"


def test_no_node_no_constraint_and_extra_tmpfs(tmp_path: Path) -> None:
    s = replace(spec(tmp_path), role="collect")
    t = service_task_template(
        s, command=["true"], image="x", mounts=[], networks=[], configs=[], env={"A": "1"},
        tmpfs={"/bundle": 1024},
    )  # fmt: skip
    assert "Placement" not in t
    assert t["ContainerSpec"]["Env"] == ["A=1"]
    sizes = {m["Target"]: m["TmpfsOptions"]["SizeBytes"] for m in t["ContainerSpec"]["Mounts"]}
    assert sizes == {"/tmp": s.policy.tmp_size, "/bundle": 1024}


def test_object_names_are_dns_labels_and_distinct() -> None:
    short = object_name("runner", "20261125-220943-652172", "task", "db")
    assert short == "runner-20261125-220943-652172-task-db"
    long_a = object_name("runner", "20261125-220943-652172", "task", "a" * 60)
    long_b = object_name("runner", "20261125-220943-652172", "task", "a" * 59 + "b")
    assert len(long_a) == len(long_b) == MAX_NAME
    assert long_a != long_b
