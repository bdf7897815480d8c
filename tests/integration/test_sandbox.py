"""Inside a sandbox: non-root, read-only shared dir, no network, memory limit, no host access."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import docker
import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from runner import names
from runner.cli import execute
from runner.coordinator import repo_key
from runner.settings import Settings
from tests.integration.conftest import GVISOR, RunPlan, leftovers

FILES = {"README.md": "hi\n", "contracts/api.md": "the contract\n"}


@pytest.fixture
def outside_server(images: None) -> Iterator[tuple[str, int]]:
    """An HTTP server of the test's own, on a Docker network the test creates: "the outside"."""
    with (
        Network() as net,
        (
            DockerContainer("runner/sandbox:1")
            .with_command("python3 -m http.server 8080 --bind 0.0.0.0")
            .with_network(net)
            .with_kwargs(user="10001:10001")
        ) as server,
    ):
        wrapped = server.get_wrapped_container()
        for _ in range(100):  # bounded: about 20 s at most
            time.sleep(0.2)
            wrapped.reload()
            addr = wrapped.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
            if addr and _reachable(addr, 8080):
                break
        else:
            pytest.fail("the test's own server did not come up")
        yield addr, 8080


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def test_sandbox_is_hardened(run_plan: RunPlan, outside_server: tuple[str, int]) -> None:
    host, port = outside_server
    assert _reachable(host, port)  # the control: the server is up and reachable from the host
    run = run_plan(
        f"""
        shared: contracts
        tasks:
          - id: probe
            run: |
              id -u > uid.txt
              cat /shared/api.md > shared-read.txt
              try_write() {{ touch "$1" 2>/dev/null && echo writable || echo refused; }}
              try_write /shared/evil > shared-write.txt
              try_write /usr/evil > root-write.txt
              grep -c ':' /proc/net/dev > interfaces.txt || true
              python3 - > network.txt <<'PY'
              import socket
              try:
                  socket.create_connection(("{host}", {port}), timeout=3).close()
                  print("reached")
              except OSError as exc:
                  print("unreachable", type(exc).__name__)
              PY
              grep CapEff /proc/self/status | awk '{{print $2}}' > caps.txt
              if [ -e /var/run/docker.sock ]; then echo present; else echo absent; fi > socket.txt
              # test -d, not ls: coreutils ls fails (EINVAL from statx) under runsc 2022-12.
              test -d /objects/pack && try_write /objects/evil > objects-write.txt
        """,
        FILES,
    )
    assert run.code == 0, run.stderr
    head = run.result["integration_commit"]

    def seen(name: str) -> str:
        return run.show(head, name)

    assert seen("uid.txt") == "10001"
    assert seen("shared-read.txt") == "the contract"
    assert seen("shared-write.txt") == "refused"
    assert seen("root-write.txt") == "refused"
    assert seen("interfaces.txt") == "1"  # loopback only: --network none
    assert seen("network.txt").startswith("unreachable")
    assert seen("caps.txt") == "0000000000000000"
    assert seen("socket.txt") == "absent"
    assert seen("objects-write.txt") == "refused"
    assert not (run.repo / "contracts" / "evil").exists()


def test_memory_limit_kills_with_status_oom(
    run_plan: RunPlan, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = run_plan(
        """
        tasks:
          - id: hog
            policy: small.yaml
            run: |
              echo before > before.txt
              python3 -c "blocks = [bytearray(16 * 1024 * 1024) for _ in range(64)]"
        """,
        FILES,
        extra={"small.yaml": "memory: 128m\n"},
    )
    assert run.code == 1
    hog = run.task("hog")
    assert hog["status"] == "oom", hog
    assert "memory limit" in hog["reason"]
    assert run.show(hog["ref"], "before.txt") == "before"


def test_env_passes_only_named_variables(run_plan: RunPlan, monkeypatch: pytest.MonkeyPatch,
                                         docker_client: docker.DockerClient) -> None:  # fmt: skip
    monkeypatch.setenv("SANDBOX_TEST_PASSED", "given-value")
    monkeypatch.setenv("SANDBOX_TEST_SECRET", "must-not-leak")
    run = run_plan(
        """
        tasks:
          - id: envy
            env: [SANDBOX_TEST_PASSED]
            run: env | sort > env.txt
        """,
        FILES,
    )
    assert run.code == 0, run.stderr
    env = run.show(run.result["integration_commit"], "env.txt")
    assert "SANDBOX_TEST_PASSED=given-value" in env
    assert "must-not-leak" not in env
    assert "given-value" not in run.stdout + run.stderr  # values never reach the result or logs


def test_cache_volume_survives_the_run_so_a_rerun_is_warm(
    run_plan: RunPlan, docker_client: docker.DockerClient
) -> None:
    plan = """
        tasks:
          - id: warm
            run: |
              if [ -f "$PIP_CACHE_DIR/marker" ]; then echo warm; else echo cold; fi > state.txt
              mkdir -p "$PIP_CACHE_DIR" && echo x > "$PIP_CACHE_DIR/marker"
        """
    first = run_plan(plan, FILES)
    assert first.code == 0, first.stderr
    assert first.show(first.result["integration_commit"], "state.txt") == "cold"
    key = repo_key(first.repo)
    volumes = docker_client.volumes.list(
        filters={"label": [f"runner.cache={key}", "runner.task=warm"]}
    )
    assert [v.name for v in volumes] == [names.cache_volume(key, "task", "warm")]
    # Same repo, same task: a second run finds the cache its first run filled.
    result = execute(first.repo.parent / "plan.yaml", first.repo, Settings())
    assert result.integration_commit is not None
    assert first.show(result.integration_commit, "state.txt") == "warm"
    assert leftovers(docker_client, result.run_id) == []


def test_user_image_without_git_or_account_works(
    run_plan: RunPlan, docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A user's image may lack git and an account for the uid: collection uses runner's image."""
    context = tmp_path_factory.mktemp("user-image")
    (context / "Dockerfile").write_text(
        "FROM runner/base:1\nRUN rm -f /usr/bin/git && mkdir -p /cache /work\n"
    )
    tag = "runner-test/no-git:1"
    docker_client.images.build(path=str(context), tag=tag, pull=False, rm=True)
    try:
        run = run_plan(
            f"""
            tasks:
              - id: plain
                image: {tag}
                run: |
                  if command -v git; then echo has-git; else echo no-git; fi > git.txt
                  id -un 2>/dev/null || echo "no account for $(id -u)" > account.txt
            """,
            FILES,
        )
        assert run.code == 0, run.stderr
        head = run.result["integration_commit"]
        assert run.show(head, "git.txt") == "no-git"
        assert run.show(head, "account.txt") == "no account for 10001"
    finally:
        docker_client.images.remove(tag, force=True)


@pytest.fixture
def host_server() -> Iterator[int]:
    """A server of the test's own on the host, answering one fixed body; stopped after."""
    import http.server
    import threading

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello from the test's server")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_open_network_policy_reaches_out_and_its_network_is_removed(
    run_plan: RunPlan, host_server: int
) -> None:
    run = run_plan(
        f"""
        tasks:
          - id: online
            policy: open-network
            run: |
              python3 - > fetched.txt <<'PY'
              import socket, struct, urllib.request
              # The run's bridge gateway is the host, where the test's server listens.
              for line in open("/proc/net/route").readlines()[1:]:
                  fields = line.split()
                  if fields[1] == "00000000":
                      gateway = socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
              url = f"http://{{gateway}}:{host_server}/"
              print(urllib.request.urlopen(url, timeout=5).read().decode())
              PY
        """,
        FILES,
    )
    if GVISOR:
        # runsc is registered with --network=none (its own network stack starts no container on
        # this daemon): the run is refused before it starts, rather than run without a network.
        assert run.code == 2, run.stderr
        assert "network: open, but the daemon runs runtime runsc with --network=none" in (
            run.stderr
        )
        return
    assert run.code == 0, run.stderr
    fetched = run.show(run.result["integration_commit"], "fetched.txt")
    assert fetched == "hello from the test's server"
    # The fixture asserts that the run's network is gone, with its containers.


def test_cpu_and_memory_are_measured(run_plan: RunPlan) -> None:
    run = run_plan(
        """
        tasks:
          - id: busy
            run: |
              python3 -c "sum(range(2 * 10**7)); x = bytearray(64 * 1024 * 1024)"
              echo done > done.txt
        """,
        FILES,
    )
    assert run.code == 0, run.stderr
    busy = run.task("busy")
    assert busy["cpu_s"] is not None and busy["cpu_s"] > 0.05, busy
    if GVISOR:
        # No cgroup files inside gVisor: CPU from the wrapper's `times`, no peak memory.
        assert (busy["metrics_source"], busy["peak_memory_bytes"]) == ("times", None), busy
    else:
        assert busy["metrics_source"] == "cgroup", busy
        assert busy["peak_memory_bytes"] > 64 * 1024 * 1024, busy
