"""container_options: a policy and a spec become docker SDK kwargs. Tested as data."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runner.core.policy import Policy
from runner.sandbox.base import Role, SandboxSpec
from runner.sandbox.options import CACHE_ENV, container_name, container_options, environment

FIXED_ENV = {
    "PATH", "HOME", "TMPDIR", "LANG",
    "RUNNER_RUN", "RUNNER_TASK", "RUNNER_START", "RUNNER_OUT", "RUNNER_SHARED",
    "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
    "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0",
}  # fmt: skip


@pytest.fixture
def spec(tmp_path: Path) -> SandboxSpec:
    return SandboxSpec(
        run_id="r1",
        task_id="db",
        role="task",
        image="runner/sandbox:1",
        policy=Policy(),
        script="true",
        timeout=60,
        workspace=tmp_path / "state" / "work",
        objects=tmp_path / "repo" / ".git" / "objects",
        state=tmp_path / "state",
        start_commit="0123abcd",
    )


def test_hardening_from_the_default_policy(spec: SandboxSpec) -> None:
    opts = container_options(spec)
    assert opts["user"] == "10001:10001"
    assert opts["read_only"] is True
    assert opts["cap_drop"] == ["ALL"]
    assert opts["security_opt"] == ["no-new-privileges:true"]
    assert opts["tmpfs"] == {"/tmp": f"size={256 * 1024**2},nosuid,nodev,noexec"}
    assert opts["mem_limit"] == 1024**3
    assert opts["memswap_limit"] == opts["mem_limit"]  # no swap on top
    assert opts["pids_limit"] == 512
    assert opts["nano_cpus"] == 1_000_000_000
    assert opts["network_mode"] == "none"
    assert "network" not in opts
    assert "runtime" not in opts
    assert opts["init"] is True
    for risky in ("privileged", "cap_add", "devices", "pid_mode", "ipc_mode", "userns_mode"):
        assert risky not in opts


def test_limits_follow_the_policy(spec: SandboxSpec) -> None:
    policy = Policy.model_validate(
        {"user": "2000:3000", "cpus": 1.5, "memory": "512m", "pids": 64, "tmp_size": "1m",
         "tmp_options": "nosuid", "runtime": "runsc", "no_new_privileges": False,
         "unsafe": True}
    )  # fmt: skip
    opts = container_options(replace(spec, policy=policy))
    assert opts["user"] == "2000:3000"
    assert opts["nano_cpus"] == 1_500_000_000
    assert opts["mem_limit"] == opts["memswap_limit"] == 512 * 1024**2
    assert opts["pids_limit"] == 64
    assert opts["tmpfs"] == {"/tmp": "size=1048576,nosuid"}
    assert opts["runtime"] == "runsc"
    assert opts["security_opt"] == []


def test_identity_command_and_workdir(spec: SandboxSpec) -> None:
    opts = container_options(spec)
    assert opts["image"] == "runner/sandbox:1"
    assert opts["name"] == container_name(spec) == "runner-r1-task-db"
    assert opts["command"] == ["/bin/sh", "/runner/wrap.sh"]
    assert opts["working_dir"] == "/work"
    assert opts["labels"] == {
        "runner.run": "r1",
        "runner.task": "db",
        "runner.role": "task",
        "runner.pid": str(os.getpid()),
        "runner.host": socket.gethostname(),
    }


def test_open_policy_uses_the_run_network(spec: SandboxSpec) -> None:
    open_spec = replace(spec, policy=Policy(network="open"), network="runner-r1")
    opts = container_options(open_spec)
    assert opts["network"] == "runner-r1"
    assert "network_mode" not in opts


def test_open_policy_without_a_network_stays_offline(spec: SandboxSpec) -> None:
    opts = container_options(replace(spec, policy=Policy(network="open")))
    assert opts["network_mode"] == "none"
    assert "network" not in opts


def test_a_network_name_alone_does_not_open_the_network(spec: SandboxSpec) -> None:
    opts = container_options(replace(spec, network="runner-r1"))
    assert opts["network_mode"] == "none"
    assert "network" not in opts


def test_collector_is_always_offline(spec: SandboxSpec) -> None:
    collect = replace(spec, role="collect", policy=Policy(network="open"), network="runner-r1")
    opts = container_options(collect)
    assert opts["network_mode"] == "none"
    assert "network" not in opts
    assert opts["command"] == ["/bin/sh", "/runner/collect.sh"]
    assert opts["labels"]["runner.role"] == "collect"


def table(opts: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The mounts as {source: {bind, mode}}, to compare as data."""
    return {
        m["Source"]: {"bind": m["Target"], "mode": "ro" if m.get("ReadOnly") else "rw"}
        for m in opts["mounts"]
    }


def test_task_mounts(spec: SandboxSpec, tmp_path: Path) -> None:
    full = replace(spec, shared=tmp_path / "shared", cache_volume="runner-cache-k-db")
    assert {m["Type"] for m in container_options(full)["mounts"]} == {"bind", "volume"}
    assert table(container_options(full)) == {
        str(spec.workspace): {"bind": "/work", "mode": "rw"},
        str(spec.objects): {"bind": "/objects", "mode": "ro"},
        str(spec.state / "control"): {"bind": "/runner", "mode": "ro"},
        str(spec.state / "out"): {"bind": "/out", "mode": "rw"},
        str(tmp_path / "shared"): {"bind": "/shared", "mode": "ro"},
        "runner-cache-k-db": {"bind": "/cache", "mode": "rw"},
    }


def test_collector_mounts(spec: SandboxSpec, tmp_path: Path) -> None:
    collect = replace(
        spec, role="collect", shared=tmp_path / "shared", cache_volume="runner-cache-k-db"
    )
    assert table(container_options(collect)) == {
        str(spec.workspace): {"bind": "/work", "mode": "rw"},
        str(spec.objects): {"bind": "/objects", "mode": "ro"},
        str(spec.state / "control"): {"bind": "/runner", "mode": "ro"},
        str(spec.state / "out"): {"bind": "/out", "mode": "ro"},
        str(spec.state / "bundle"): {"bind": "/bundle", "mode": "rw"},
        str(tmp_path / "shared"): {"bind": "/shared", "mode": "ro"},
    }


def test_no_shared_no_shared_mount(spec: SandboxSpec) -> None:
    binds = [v["bind"] for v in table(container_options(spec)).values()]
    assert "/shared" not in binds
    assert "/cache" not in binds


@pytest.mark.parametrize("role", ["task", "verify", "collect"])
def test_only_the_specs_host_paths_are_mounted(
    spec: SandboxSpec, tmp_path: Path, role: Role
) -> None:
    full = replace(spec, role=role, shared=tmp_path / "shared", cache_volume="runner-cache-k-db")
    volumes = table(container_options(full))
    for source, mount in volumes.items():
        assert "docker.sock" not in source
        assert mount["bind"] != "/var/run/docker.sock"
        if source != "runner-cache-k-db":  # a named volume, not a host path
            assert Path(source).is_relative_to(tmp_path), source
    read_only = {m["bind"] for m in volumes.values() if m["mode"] == "ro"}
    assert {"/objects", "/runner", "/shared"} <= read_only


def test_environment_leaks_nothing_from_the_host(
    spec: SandboxSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_CANARY_SECRET", "canary-value-0451")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "host-key-not-named")
    env = container_options(spec)["environment"]
    assert set(env) == FIXED_ENV
    assert "canary-value-0451" not in env.values()
    assert "host-key-not-named" not in env.values()
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["HOME"] == "/tmp/home"


def test_environment_values(spec: SandboxSpec, tmp_path: Path) -> None:
    env = environment(spec)
    assert env["RUNNER_RUN"] == "r1"
    assert env["RUNNER_TASK"] == "db"
    assert env["RUNNER_START"] == "0123abcd"
    assert env["RUNNER_OUT"] == "/out"
    assert env["RUNNER_SHARED"] == ""
    assert env["GIT_AUTHOR_EMAIL"] == env["GIT_COMMITTER_EMAIL"] == "db@runner.invalid"
    assert environment(replace(spec, shared=tmp_path / "shared"))["RUNNER_SHARED"] == "/shared"


def test_environment_passes_the_named_variables(spec: SandboxSpec) -> None:
    env = environment(replace(spec, env={"ANTHROPIC_API_KEY": "sk-test"}))
    assert set(env) == FIXED_ENV | {"ANTHROPIC_API_KEY"}
    assert env["ANTHROPIC_API_KEY"] == "sk-test"


def test_cache_environment_only_with_a_mounted_cache(spec: SandboxSpec) -> None:
    assert not set(CACHE_ENV) & set(environment(spec))
    cached = replace(spec, cache_volume="runner-cache-k-db")
    env = environment(cached)
    assert set(env) == FIXED_ENV | set(CACHE_ENV)
    assert env["PIP_CACHE_DIR"] == "/cache/pip"
    assert all(v.startswith("/cache") for v in CACHE_ENV.values())
    # The collector gets no cache mount, so no variables pointing at one.
    assert not set(CACHE_ENV) & set(environment(replace(cached, role="collect")))


def test_options_are_pure(spec: SandboxSpec) -> None:
    assert container_options(spec) == container_options(spec)


def test_allowlist_sandbox_joins_its_gateway_and_gets_the_proxy(spec: SandboxSpec) -> None:
    from runner.core.policy import AllowRule

    policy = Policy(network="allowlist", allow=[AllowRule(host="api.example.test")])
    allow = replace(spec, policy=policy, network="runner-r1-egress-k", proxy="http://10.9.0.2:3128")
    opts = container_options(allow)
    assert opts["network"] == "runner-r1-egress-k"
    assert "network_mode" not in opts
    env = opts["environment"]
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == "http://10.9.0.2:3128"
    assert "dns" not in opts  # names are the proxy's to resolve
    # The collector of the same task: no network, no proxy.
    collect = container_options(replace(allow, role="collect"))
    assert collect["network_mode"] == "none" and "network" not in collect
    assert "HTTP_PROXY" not in collect["environment"]


def test_a_path_with_a_colon_stays_one_path(spec: SandboxSpec, tmp_path: Path) -> None:
    odd = tmp_path / "a:b" / "work"
    mounts = container_options(replace(spec, workspace=odd))["mounts"]
    assert {"Type": "bind", "Source": str(odd), "Target": "/work", "ReadOnly": False} in mounts
