"""The Swarm egress proxy service as data: the container proxy's hardening in a service's words,
and a task's address on its allowlist network read from its swarm record."""

from __future__ import annotations

from runner.core import egress as core
from runner.core.policy import AllowRule
from runner.sandbox.egress import proxy_options
from runner.sandbox.swarm_egress import proxy_template, task_address


def test_the_proxy_service_is_the_proxy_container() -> None:
    rules = [AllowRule(host="api.example.test", ports=[443])]
    labels = {"runner.run": "r1"}
    t = proxy_template("runner/proxy:1", rules, ["inside", "outside"], labels, ["10.0.0.2"])
    c = proxy_options("runner/proxy:1", "p", labels, "outside", rules, None)
    spec = t["ContainerSpec"]
    assert spec["Env"] == [f"RUNNER_PROXY_CONF={core.squid_config(rules)}"]
    assert spec["User"] == c["user"] == "13:13"
    assert spec["ReadOnly"] is c["read_only"] is True
    assert spec["CapabilityDrop"] == c["cap_drop"] == ["ALL"]
    assert t["Resources"]["Limits"] == {
        "NanoCPUs": c["nano_cpus"], "MemoryBytes": c["mem_limit"], "Pids": c["pids_limit"],
    }  # fmt: skip
    assert t["Networks"] == [{"Target": "inside"}, {"Target": "outside"}]
    assert [m["Type"] for m in spec["Mounts"]] == ["tmpfs"]  # never a bind
    assert spec["DNSConfig"] == {"Nameservers": ["10.0.0.2"]}
    assert "DNSConfig" not in proxy_template("x", rules, [], labels, None)["ContainerSpec"]


def test_a_task_address_on_its_network() -> None:
    record = {
        "NetworksAttachments": [
            {"Network": {"ID": "n1", "Spec": {"Name": "depot"}}, "Addresses": ["10.0.1.5/24"]},
            {"Network": {"ID": "n2", "Spec": {"Name": "egress"}}, "Addresses": ["10.0.2.7/24"]},
        ]
    }
    assert task_address(record, "egress") == "10.0.2.7"
    assert task_address(record, "n1") == "10.0.1.5"
    assert task_address(record, "other") is None
    assert task_address({}, "egress") is None
