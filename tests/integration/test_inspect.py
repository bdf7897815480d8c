"""A live sandbox read back with `docker inspect` matches its policy (issue 11).

Compared with the policy's values, never with container_options' output: a bug in the options
(a limit dropped, a mount made writable, a runtime lost) shows up here.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from runner.core.policy import Policy, load_policy
from runner.sandbox import labels
from runner.settings import Settings
from tests.integration.conftest import RUNTIME, leftovers, make_repo, remove_caches

# Every value apart from the default, so a default quietly used instead of the policy's shows.
CUSTOM = """\
user: "10002:10003"
cpus: 0.5
memory: 300m
pids: 100
tmp_size: 32m
tmp_options: nosuid,nodev,noexec,mode=1777
max_log: 8m
"""
WRITABLE = {"/work", "/out", "/cache"}
READ_ONLY = {"/objects", "/shared", "/runner"}


@pytest.fixture
def live(
    request: pytest.FixtureRequest, tmp_path: Path, images: None,
    docker_client: docker.DockerClient,
) -> Iterator[tuple[Container, Policy, Path]]:  # fmt: skip
    """A real run whose one task sleeps; yields its task container, its policy and the repo.
    Afterwards the run is ended with SIGTERM and must leave nothing in Docker."""
    repo = make_repo(tmp_path, {"README.md": "hi\n", "contracts/api.md": "c\n"})
    task_id = "inspect-" + secrets.token_hex(4)
    if request.param == "custom":
        (tmp_path / "custom.yaml").write_text(CUSTOM)
        policy_path, policy_name = tmp_path / "custom.yaml", "custom.yaml"
    else:
        policy_path, policy_name = Settings().policies_dir / "default.yaml", "default"
    (tmp_path / "plan.yaml").write_text(
        f"shared: contracts\npolicy: {policy_name}\ntimeout: 300\n"
        f"tasks:\n  - id: {task_id}\n    run: sleep 300\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "plan.yaml", "--repo", str(repo), "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_id = None
    try:
        container = _wait_running(docker_client, task_id, proc)
        run_id = container.labels[labels.RUN]
        yield container, load_policy(policy_path), repo
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
        remove_caches(docker_client, repo)
        assert proc.returncode == 143, err
        if run_id:
            assert leftovers(docker_client, run_id) == []


def _wait_running(
    client: docker.DockerClient, task_id: str, proc: subprocess.Popen[str]
) -> Container:
    flt: dict[str, str | list[str] | bool] = {
        "label": [f"{labels.TASK}={task_id}", f"{labels.ROLE}=task"]
    }
    for _ in range(300):  # bounded: about 60 s (a first start under gVisor is slower)
        found = client.containers.list(filters=flt)
        if found:
            container: Container = found[0]
            return container
        if proc.poll() is not None:
            pytest.fail(f"the run ended before its sandbox was seen: {proc.communicate()}")
        time.sleep(0.2)
    pytest.fail("the run's sandbox did not start")


@pytest.mark.parametrize("live", ["default", "custom"], indirect=True)
def test_live_sandbox_matches_its_policy(
    live: tuple[Container, Policy, Path], docker_client: docker.DockerClient
) -> None:
    container, policy, repo = live
    container.reload()
    attrs = container.attrs
    host, config = attrs["HostConfig"], attrs["Config"]
    assert attrs["State"]["Running"]

    assert config["User"] == policy.user
    assert host["CapDrop"] == policy.cap_drop == ["ALL"]
    assert not host["CapAdd"]
    assert not host["Privileged"]
    assert host["ReadonlyRootfs"] is policy.read_only_root is True
    assert "no-new-privileges:true" in (host["SecurityOpt"] or [])
    assert host["Memory"] == policy.memory
    assert host["MemorySwap"] == policy.memory  # no swap on top of the memory limit
    assert host["NanoCpus"] == round(policy.cpus * 1e9)
    assert host["PidsLimit"] == policy.pids
    assert host["Init"] is True

    # The runtime: the policy's own, else the operator's setting, else the daemon's default.
    daemon_default = docker_client.info()["DefaultRuntime"]
    assert host["Runtime"] == (policy.runtime or RUNTIME or daemon_default)

    # Network none: loopback only, on no Docker network at all.
    assert policy.network == "none"
    assert host["NetworkMode"] == "none"
    assert set(attrs["NetworkSettings"]["Networks"]) <= {"none"}

    # /tmp: a tmpfs of tmp_size with the policy's options (the size is tmp_size's alone).
    (tmp_opts,) = host["Tmpfs"].values()
    assert list(host["Tmpfs"]) == ["/tmp"]
    opts = tmp_opts.split(",")
    sizes = [o.removeprefix("size=") for o in opts if o.startswith("size=")]
    assert [int(s) for s in sizes] == [policy.tmp_size]
    assert set(opts) - {f"size={sizes[0]}"} == set(policy.tmp_options.split(","))

    # Mounts: only the runner's; read-only where the task must not write; no host checkout,
    # no docker socket.
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert set(mounts) == WRITABLE | READ_ONLY
    assert {d for d, m in mounts.items() if m["RW"]} == WRITABLE
    assert mounts["/cache"]["Type"] == "volume"
    sources = [Path(m["Source"]) for m in attrs["Mounts"] if m["Type"] == "bind"]
    assert repo not in sources and not any("docker.sock" in str(s) for s in sources)
    assert all(repo / ".git" in s.parents or s.parent == repo / ".git" for s in sources)
    for mode in ("PidMode", "IpcMode", "UTSMode", "UsernsMode"):
        assert host.get(mode) != "host", mode
    assert not host["Devices"]

    # The daemon's own copy of the output is bounded, near the policy's max_log.
    log = host["LogConfig"]
    assert log["Type"] == "json-file"
    bound = int(log["Config"]["max-size"]) * int(log["Config"]["max-file"])
    assert bound <= max(policy.max_log, 2 * 1024**2)
