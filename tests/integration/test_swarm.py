"""The Swarm backend on a real single-node swarm: the same results as containers (merged,
conflict, scope violation, timeout), no bind mount from the host into a task, no route out,
nothing of a run left behind.

The session fixture makes this daemon a swarm manager if it is not one, and leaves it as it
found it: a daemon that was not in a swarm leaves it at the end (containers on bridge
networks, which every other test uses, are unaffected by swarm mode).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from runner.core.policy import load_policy
from runner.demo import make_sample
from runner.sandbox import labels
from runner.settings import Settings
from tests.integration.conftest import git, make_repo, remove_caches, runner_cli

pytestmark = pytest.mark.swarm


@pytest.fixture(scope="session")
def swarm(docker_client: docker.DockerClient, images: None) -> Iterator[None]:
    state = docker_client.info()["Swarm"]["LocalNodeState"]
    bridges = {str(n.name) for n in docker_client.networks.list(names=[GWBRIDGE])}
    if state == "inactive":
        docker_client.swarm.init(advertise_addr="127.0.0.1")
    elif state != "active":
        pytest.fail(f"this daemon's swarm is {state}; the Swarm tests need it active or inactive")
    try:
        yield
    finally:
        if state == "inactive":
            docker_client.swarm.leave(force=True)
            leave_as_found(docker_client, bridges)


GWBRIDGE = "docker_gwbridge"


def leave_as_found(client: docker.DockerClient, bridges: set[str]) -> None:
    """Swarm mode makes docker_gwbridge and leaving keeps it: removed when it was not there."""
    if GWBRIDGE in bridges:
        return
    for net in client.networks.list(names=[GWBRIDGE]):
        with contextlib.suppress(docker.errors.APIError):  # in use: kept, as the daemon's own
            net.remove()


def swarm_leftovers(client: docker.DockerClient, run_id: str) -> list[str]:
    """Every service, network, config, volume or container labelled with the run."""
    flt: dict[str, Any] = {"label": f"{labels.RUN}={run_id}"}
    found = [f"service {s.name}" for s in client.services.list(filters=flt)]
    found += [f"network {n.name}" for n in client.networks.list(filters=flt)]
    found += [f"config {c.name}" for c in client.configs.list(filters=flt)]
    found += [f"volume {v.name}" for v in client.volumes.list(filters=flt)]
    found += [f"container {c.name}" for c in client.containers.list(all=True, filters=flt)]
    return found


def run(repo: Path, plan: Path, backend: str) -> dict[str, Any]:
    proc = runner_cli("run", str(plan), "--repo", str(repo), "--json", "--backend", backend)
    assert proc.stdout.strip().startswith("{"), proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    result["exit_code"] = proc.returncode
    return result


def outcome(repo: Path, result: dict[str, Any]) -> tuple[Any, ...]:
    """What must be the same on both backends: statuses, reasons' kinds, the integrated tree."""
    tasks = {
        t["id"]: (t["status"], tuple(t.get("violations") or ()), json.dumps(t.get("conflicts")))
        for t in result["tasks"]
    }
    tree = git(repo, "rev-parse", f"{result['integration_commit']}^{{tree}}")
    return result["status"], result["exit_code"], tasks, tree


def both(
    tmp_path: Path, client: docker.DockerClient, setup: Any
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    got = []
    for backend in ("docker", "swarm"):
        repo, plan = setup(tmp_path / backend)
        result = run(repo, plan, backend)
        try:
            got.append(outcome(repo, result))
        finally:
            remove_caches(client, repo)
        assert swarm_leftovers(client, result["run_id"]) == [], backend
    return got[0], got[1]


def test_demo_plan_same_as_containers(
    swarm: None, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    def setup(root: Path) -> tuple[Path, Path]:
        root.mkdir()
        return make_sample(root)

    containers, swarm_ = both(tmp_path, docker_client, setup)
    assert containers[0] == "success"
    assert swarm_ == containers


CONFLICT_AND_SCOPE = """\
on_overlap: allow
on_conflict: skip
shared: contracts
tasks:
  - id: first
    scope: ["src/**"]
    run: sed -i 's/line one/ONE by first/' src/app.txt
  - id: second
    scope: ["src/**"]
    run: sed -i 's/line one/ONE by second/' src/app.txt
  - id: sneaky
    scope: ["docs/**"]
    run: |
      mkdir -p docs && cat /shared/c.md > docs/c.md
      echo "new" > README.md
  - id: slow
    scope: ["slow/**"]
    timeout: 5
    run: mkdir -p slow && echo partial > slow/p.txt && sleep 120
  - id: docs
    scope: ["notes/**"]
    run: |
      mkdir -p notes && echo x > notes/x.md && git add -A && git commit -qm notes
      echo '{"n": 1}' > "$RUNNER_OUT/report.json"
"""


def test_conflict_and_scope_violation_same_as_containers(
    swarm: None, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    def setup(root: Path) -> tuple[Path, Path]:
        files = {"src/app.txt": "line one\nline two\n", "README.md": "hello", "contracts/c.md": "c"}
        repo = make_repo(root, files)
        (root / "plan.yaml").write_text(CONFLICT_AND_SCOPE)
        return repo, root / "plan.yaml"

    containers, swarm_ = both(tmp_path, docker_client, setup)
    statuses = {k: v[0] for k, v in containers[2].items()}
    assert statuses == {
        "first": "merged",
        "second": "conflict",
        "sneaky": "scope_violation",
        "slow": "timeout",
        "docs": "merged",
    }
    assert swarm_ == containers
    # RUNNER_OUT came home through the depot too.
    report = next((tmp_path / "swarm" / "repo" / ".git" / "runner" / "runs").glob("*/tasks/docs"))
    assert json.loads(next(report.rglob("report.json")).read_text()) == {"n": 1}


PROBE = """\
tasks:
  - id: probe
    scope: ["probe.txt"]
    timeout: 120
    run: |
      python3 - > probe.txt <<'PY'
      import socket
      for host in ("{server}", "{gateway}"):
          s = socket.socket()
          s.settimeout(3)
          try:
              s.connect((host, 8080))
              print(host, "reached")
          except OSError as exc:
              print(host, "unreachable", exc.errno)
      PY
      sleep 6
"""


@pytest.fixture
def server(docker_client: docker.DockerClient) -> Iterator[tuple[str, str]]:
    """An HTTP server of the test's own on a bridge network of its own: (address, gateway)."""
    net = docker_client.networks.create(f"runner-test-swarm-{time.time_ns()}", driver="bridge")
    box = docker_client.containers.run(
        "runner/sandbox:1", ["python3", "-m", "http.server", "8080"], network=net.name,
        detach=True, labels={"runner-test": "swarm"},
    )  # fmt: skip
    try:
        box.reload()
        address = box.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
        gateway = net.attrs["IPAM"]["Config"][0]["Gateway"] if net.attrs["IPAM"]["Config"] else ""
        if not gateway:
            net.reload()
            gateway = net.attrs["IPAM"]["Config"][0]["Gateway"]
        yield address, gateway
    finally:
        box.remove(force=True)
        net.remove()


def test_live_service_is_the_policy_no_bind_no_route(
    swarm: None, docker_client: docker.DockerClient, tmp_path: Path, server: tuple[str, str]
) -> None:
    address, gateway = server
    repo = make_repo(tmp_path, {"README.md": "hello"})
    (tmp_path / "plan.yaml").write_text(textwrap.dedent(PROBE).format(server=address,
                                                                      gateway=gateway))  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "plan.yaml", "--repo", str(repo), "--json",
         "--backend", "swarm"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    live: dict[str, Any] | None = None
    networks: list[dict[str, Any]] = []
    deadline = time.monotonic() + 240
    flt = {"label": [f"{labels.ROLE}=task", f"{labels.TASK}=probe"]}
    while live is None and time.monotonic() < deadline and proc.poll() is None:
        for service in docker_client.services.list(filters=flt):
            live = service.attrs["Spec"]
            networks = [
                docker_client.networks.get(n["Target"]).attrs
                for n in live["TaskTemplate"].get("Networks", [])
            ]
        time.sleep(0.2)
    out, err = proc.communicate(timeout=300)
    assert live is not None, err[-2000:]
    result = json.loads(out)
    assert result["tasks"][0]["status"] == "merged", err[-2000:]

    # The live spec is the default policy, in the service's words.
    policy = load_policy(Settings().policies_dir / "default.yaml")
    template = live["TaskTemplate"]
    container = template["ContainerSpec"]
    assert container["User"] == policy.user
    assert container["ReadOnly"] is policy.read_only_root is True
    assert container["CapabilityDrop"] == list(policy.cap_drop) == ["ALL"]
    assert container["Init"] is True
    limits = template["Resources"]["Limits"]
    assert limits == {
        "NanoCPUs": int(policy.cpus * 1e9),
        "MemoryBytes": policy.memory,
        "Pids": policy.pids,
    }
    assert template["RestartPolicy"]["Condition"] == "none"
    # No bind mount at all: volumes of the node and tmpfs only; configs for the scripts.
    kinds = {m["Type"] for m in container["Mounts"]}
    assert kinds <= {"volume", "tmpfs"}, container["Mounts"]
    tmp = next(m for m in container["Mounts"] if m["Target"] == "/tmp")
    assert tmp["TmpfsOptions"]["SizeBytes"] == policy.tmp_size
    assert {c["File"]["Name"] for c in container["Configs"]} == {
        "/runner/task.sh",
        "/runner/wrap.sh",
    }
    # One network: an internal overlay of the task's own.
    assert [(n["Driver"], n["Internal"]) for n in networks] == [("overlay", True)]
    assert networks[0]["Labels"][labels.TASK] == "probe"

    # No route out: neither the test's server on its bridge nor that bridge's gateway (the host).
    probe = git(repo, "show", f"{result['tasks'][0]['ref']}:probe.txt").splitlines()
    assert probe == [f"{address} unreachable 101", f"{gateway} unreachable 101"]
    assert swarm_leftovers(docker_client, result["run_id"]) == []
    remove_caches(docker_client, repo)


def test_a_task_may_write_only_its_own_ref_in_the_depot(tmp_path: Path) -> None:
    """The depot's hook, run by git itself as the depot runs it: only refs/heads/result and
    refs/heads/out, each once."""
    from importlib import resources

    depot = tmp_path / "t.git"
    subprocess.run(["git", "init", "-q", "--bare", str(depot)], check=True)
    hook = depot / "hooks" / "pre-receive"
    hook.write_bytes(
        (resources.files("runner.sandbox") / "scripts" / "depot-pre-receive.sh").read_bytes()
    )
    hook.chmod(0o755)
    work = make_repo(tmp_path / "w", {"a": "1"})

    def push(*refspecs: str) -> int:
        return subprocess.run(["git", "-C", str(work), "push", "-q", str(depot), *refspecs],
                              capture_output=True, check=False).returncode  # fmt: skip

    assert push("HEAD:refs/heads/main") != 0
    assert push("HEAD:refs/heads/result", "HEAD:refs/tags/x") != 0
    assert push("HEAD:refs/heads/result") == 0
    git(work, "commit", "-q", "--allow-empty", "-m", "again")
    assert push("HEAD:refs/heads/result") != 0  # written once: never moved
    assert push(":refs/heads/result") != 0  # nor deleted
    assert push("HEAD:refs/heads/out") == 0


# The attack suite's cases that apply to services, run as they are with RUNNER_BACKEND=swarm
# (in a child pytest, inside this module's swarm). Left out, and why (docs/scale-out.md):
# - a task reading other branches' or a sibling's commits from /objects (reset, mergebase): on
#   Swarm a task gets only its start commit's history, so these attacks cannot be tried;
# - NoNewPrivs (not settable before API 1.44: the image has no setuid file instead);
# - network none's single interface: an internal overlay has one (eth0) with no route out.
SECURITY = ["test_collector.py", "test_history.py", "test_outputs.py", "test_escape.py",
            "test_resources.py"]  # fmt: skip
NOT_ON_SWARM = [
    "test_reset_onto_another_branch_is_rejected",
    "test_no_privilege_can_be_gained",
    "test_network_none_has_no_route_out",
]


def test_attack_cases_that_apply_hold_on_swarm(swarm: None) -> None:
    root = Path(__file__).parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-k", " and ".join(f"not {name}" for name in NOT_ON_SWARM),
         *(str(root / "tests" / "security" / name) for name in SECURITY)],
        cwd=root, capture_output=True, text=True, timeout=1800, check=False,
        env=os.environ | {"RUNNER_BACKEND": "swarm"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert " passed" in last and "failed" not in last, last


MiB = 1024**2


def test_disk_writers_end_disk_limit_and_keep_their_work(
    swarm: None, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """The container backend's disk test (test_disk.py) on Swarm: the guard is a service on the
    task's node reading its volumes, no host path of the coordinator's is watched."""
    from runner import names
    from runner.coordinator import repo_key
    from tests.integration.test_disk import BOUND, LIMIT, PLAN, POLICY

    repo = make_repo(tmp_path, {"README.md": "hello\n"})
    (tmp_path / "disk.yaml").write_text(POLICY)
    (tmp_path / "plan.yaml").write_text(PLAN)
    result = run(repo, tmp_path / "plan.yaml", "swarm")
    try:
        assert result["exit_code"] == 1, result
        tasks = {t["id"]: t for t in result["tasks"]}
        for task_id in ("work", "out", "cache"):
            task = tasks[task_id]
            assert task["status"] == "disk_limit", task
            assert "stopped for writing more than 64 MiB" in task["reason"]
            assert task["ref"] == names.task_ref(result["run_id"], task_id)
            assert git(repo, "show", f"{task['ref']}:early-{task_id}") == "early"
        work_big = int(git(repo, "cat-file", "-s", f"{tasks['work']['ref']}:big"))
        out_big = (Path(tasks["out"]["out_path"]) / "big").stat().st_size
        volume = names.cache_volume(repo_key(repo), "task", "cache")
        mountpoint = docker_client.volumes.get(volume).attrs["Mountpoint"]
        cache_big = os.stat(Path(mountpoint) / "big").st_blocks * 512
        for got in (work_big, out_big, cache_big):
            assert LIMIT < got <= BOUND, f"{got / MiB:.0f} MiB written, bound {BOUND / MiB:.0f}"
        assert tasks["small"]["status"] == "merged", tasks["small"]
        assert swarm_leftovers(docker_client, result["run_id"]) == []
    finally:
        remove_caches(docker_client, repo)


EGRESS_PLAN = """\
tasks:
  - id: probe
    scope: ["probe.json"]
    policy: allow.yaml
    timeout: 120
    run: |
      python3 - > probe.json <<'PY'
      import json, urllib.error, urllib.request
      def get(url):
          try:
              return urllib.request.urlopen(url, timeout=10).status
          except urllib.error.HTTPError as e:
              return e.code
          except Exception as e:
              return type(e).__name__
      def direct(url):
          opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
          try:
              return opener.open(url, timeout=5).status
          except Exception as e:
              return type(e).__name__
      print(json.dumps({"api": get("http://api.example.test:8080/"),
                        "direct": direct("http://api.example.test:8080/"),
                        "other": get("http://other.example.test:8080/"),
                        "port": get("http://api.example.test:9090/")}))
      PY
"""


@pytest.fixture
def overlay_server(swarm: None, docker_client: docker.DockerClient) -> Iterator[str]:
    """An attachable overlay of the test's own with its HTTP server (api.example.test and
    other.example.test, ports 8080 and 9090): the only outside the run's proxy may reach."""
    name = f"runner-test-swarm-egress-{time.time_ns()}"
    net = docker_client.networks.create(name, driver="overlay", attachable=True)
    web = None
    try:
        web = docker_client.containers.run(
            "runner/sandbox:1",
            ["sh", "-c", "python3 -m http.server 9090 & exec python3 -m http.server 8080"],
            network=name, detach=True, labels={"runner-test": "swarm"},
        )  # fmt: skip
        net.disconnect(web)  # aliases are given on a connect
        net.connect(web, aliases=["api.example.test", "other.example.test"])
        yield name
    finally:
        if web is not None:
            web.remove(force=True)
        net.remove()


def test_allowlist_through_a_proxy_service(
    docker_client: docker.DockerClient, tmp_path: Path, overlay_server: str
) -> None:
    repo = make_repo(tmp_path, {"README.md": "hello"})
    (tmp_path / "allow.yaml").write_text(
        "network: allowlist\nallow:\n  - host: api.example.test\n    ports: [8080]\n"
    )
    (tmp_path / "plan.yaml").write_text(EGRESS_PLAN)
    egress = {"RUNNER_EGRESS_NETWORK": overlay_server}
    plan = str(tmp_path / "plan.yaml")
    proc = runner_cli("run", plan, "--repo", str(repo), "--json", "--backend", "swarm", env=egress)
    assert proc.stdout.strip().startswith("{"), proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    try:
        task = result["tasks"][0]
        assert task["status"] == "merged", (task, proc.stderr[-3000:])
        probe = json.loads(git(repo, "show", f"{task['ref']}:probe.json"))
        # The listed name and port answer through the proxy; without it the name does not
        # even resolve (an internal overlay); another name and another port are refused by
        # the proxy, and the refusals are in the result, as for containers.
        assert probe == {"api": 200, "direct": "URLError", "other": 403, "port": 403}, probe
        denied = {(d["host"], d["port"]) for d in task["denials"]}
        assert denied == {("other.example.test", 8080), ("api.example.test", 9090)}, task
        assert swarm_leftovers(docker_client, result["run_id"]) == []
    finally:
        remove_caches(docker_client, repo)
    # A bridge (one daemon's network) cannot be a swarm proxy's way out: said in one line.
    bridge = docker_client.networks.create(f"runner-test-bridge-{time.time_ns()}")
    try:
        proc = runner_cli("run", plan, "--repo", str(repo), "--json", "--backend", "swarm",
                          env={"RUNNER_EGRESS_NETWORK": str(bridge.name)})  # fmt: skip
        refused = json.loads(proc.stdout)
        assert refused["status"] == "error", proc.stderr[-3000:]
        assert "a swarm service can join only swarm-scoped ones" in refused["error"]
        assert "Traceback" not in proc.stderr
        assert swarm_leftovers(docker_client, refused["run_id"]) == []
    finally:
        bridge.remove()


def test_oom_is_read_on_the_task_node(
    swarm: None, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """The swarm's task status does not say OOM; the task's guard reads it from its node's
    daemon (so it holds on any node, not only the coordinator's), as guard.log shows."""
    repo = make_repo(tmp_path, {"README.md": "hello"})
    (tmp_path / "small.yaml").write_text("memory: 64m\n")
    (tmp_path / "plan.yaml").write_text(
        "tasks:\n  - id: hog\n    scope: ['x']\n    policy: small.yaml\n"
        "    run: python3 -c 'b = bytearray(1 << 30); print(len(b))'\n"
        "  - id: fine\n    scope: ['y']\n    run: echo y > y\n"
    )
    result = run(repo, tmp_path / "plan.yaml", "swarm")
    try:
        tasks = {t["id"]: t for t in result["tasks"]}
        assert tasks["hog"]["status"] == "oom", tasks["hog"]
        assert "killed by the memory limit (64 MiB)" in tasks["hog"]["reason"]
        assert tasks["fine"]["status"] == "merged", tasks["fine"]
        state = Path(tasks["hog"]["log_path"]).parent
        assert "oom 1" in (state / "guard.log").read_text().splitlines()
        fine = Path(tasks["fine"]["log_path"]).parent / "guard.log"
        assert "oom 0" in fine.read_text().splitlines()
        assert swarm_leftovers(docker_client, result["run_id"]) == []
    finally:
        remove_caches(docker_client, repo)


RESUME_PLAN = """\
concurrency: 2
tasks:
  - id: fast
    scope: ["f/**"]
    run: mkdir f && echo one > f/x.txt
  - id: slow
    scope: ["s/**"]
    run: |
      if [ ! -e /cache/begun ]; then touch /cache/begun; mkdir s; echo part > s/p; sleep 300; fi
      mkdir -p s && echo done > s/x.txt
"""


def test_resume_finishes_a_killed_swarm_run(
    swarm: None, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """SIGKILL the runner while one task is judged ready and one runs on the swarm; `runner
    resume` (a new process: nothing of the old one's memory) keeps the ready one (collected
    from the depot, not run again), runs the cut one again, merges both, and leaves nothing of
    the run on the swarm. (The cut attempt's partial work is not kept on Swarm: README.)"""
    from runner.journal import read_journal

    repo = make_repo(tmp_path, {"README.md": "x\n"})
    (tmp_path / "plan.yaml").write_text(RESUME_PLAN)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "plan.yaml", "--repo", str(repo), "--json",
         "--backend", "swarm"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        runs = repo / ".git" / "runner" / "runs"
        flt = {"label": [f"{labels.ROLE}=task", f"{labels.TASK}=slow"]}
        ready = running = False
        deadline = time.monotonic() + 240
        while not (ready and running) and time.monotonic() < deadline and proc.poll() is None:
            journals = list(runs.glob("*/journal.jsonl")) if runs.is_dir() else []
            events = read_journal(journals[0]).events if journals else []
            ready = any(e["event"] == "judged" and e["task"] == "fast" for e in events)
            running = any(
                t["Status"]["State"] == "running"
                for s in docker_client.services.list(filters=flt)
                for t in docker_client.api.tasks(filters={"service": s.id})  # type: ignore[no-untyped-call]
            )
            time.sleep(0.2)
        assert ready and running, proc.communicate()[1][-3000:] if proc.poll() is not None else ""
        time.sleep(2)  # inside its sleep: its partial file written
        proc.kill()
        proc.communicate(timeout=30)
        run_id = journals[0].parent.name

        # Its work is in the swarm's volumes: another backend is refused, nothing started.
        other = runner_cli("resume", run_id, "--repo", str(repo), "--backend", "docker")
        assert other.returncode == 2, other.stderr[-3000:]
        said = other.stderr.strip()
        assert "\n" not in said and "swarm" in said and "docker" in said, said
        done = runner_cli("resume", run_id, "--repo", str(repo), "--json")  # the pin: swarm
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout)
        tasks = {t["id"]: t for t in result["tasks"]}
        assert {t["status"] for t in tasks.values()} == {"merged"}, tasks
        assert tasks["fast"]["attempts"] == 1 and tasks["slow"]["attempts"] == 2
        assert any("cut short" in n for n in tasks["slow"]["notes"])
        events = read_journal(journals[0]).events
        starts = [e["task"] for e in events if e["event"] == "task_started"]
        assert starts.count("fast") == 1 and starts.count("slow") == 2
        integrated = result["integration_ref"]
        assert git(repo, "show", f"{integrated}:f/x.txt") == "one"
        assert git(repo, "show", f"{integrated}:s/x.txt") == "done"
        assert swarm_leftovers(docker_client, run_id) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        remove_caches(docker_client, repo)
