"""Escape probes from inside a default sandbox: every one is refused, and nothing outside the
sandbox (the shared dir, the object store, the test's own server) sees a trace of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import GVISOR
from tests.security.attacks import attack
from tests.security.conftest import Attempt, Launch, Server

FILES = {"README.md": "hello\n", "src/app.txt": "app\n", "contracts/api.md": "contract\n"}

PLAN = r"""
shared: contracts
tasks:
  - id: honest
    scope: ["src/**"]
    run: echo "honest change" >> src/app.txt
  - id: probe
    scope: ["probe/**"]
    run: |
      mkdir probe
      try_write() { if (echo x > "$1") 2>/dev/null; then echo writable; else echo refused; fi; }
      try_write /shared/evil > probe/shared.txt
      try_write /objects/evil > probe/objects.txt
      try_write /objects/pack/evil > probe/objects-pack.txt
      try_write /usr/evil > probe/root-usr.txt
      try_write /etc/passwd > probe/root-etc.txt
      try_write /evil > probe/root.txt
      # The docker socket, or any socket, anywhere
      everywhere() { find / \( -path /proc -o -path /sys \) -prune -o "$@" -print 2>/dev/null; }
      everywhere -type s > probe/sockets.txt || true
      env | grep -i '^docker' > probe/docker-env.txt || true
      # Privilege: setuid binaries, namespaces, mounts, capabilities
      everywhere -perm -4000 -type f > probe/setuid.txt || true
      attempt() { if "$@" </dev/null >/dev/null 2>&1; then echo allowed; else echo refused; fi; }
      attempt su -c id root > probe/su.txt
      attempt mount -t tmpfs none /tmp > probe/mount.txt
      attempt unshare -r id > probe/unshare-user.txt
      attempt unshare -m id > probe/unshare-mount.txt
      attempt unshare -n id > probe/unshare-net.txt
      attempt chroot / id > probe/chroot.txt
      grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs):' /proc/self/status |
        awk '{print $1, $2}' > probe/status.txt
      # ptrace: what can be seen and traced is the sandbox's own processes only
      python3 - > probe/processes.txt <<'PY'
      import os
      for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
          try:
              uid = os.stat(f"/proc/{pid}").st_uid
              comm = open(f"/proc/{pid}/comm").read().strip()
          except OSError:
              continue
          print(pid, uid, comm)
      PY
      python3 - > probe/ptrace.txt <<'PY'
      import ctypes, os
      libc = ctypes.CDLL(None, use_errno=True)
      ok = libc.ptrace(16, 1, None, None) == 0  # PTRACE_ATTACH to PID 1 (docker-init)
      print("attached" if ok else "refused", os.strerror(ctypes.get_errno()) if not ok else "")
      if ok:
          os.waitpid(1, 0x40000000)  # __WALL: wait for the stop, then let it go
          libc.ptrace(17, 1, None, None)  # PTRACE_DETACH
      PY
  - id: netnone
    scope: ["net/**"]
    run: |
      mkdir net
      python3 - > net/direct.txt <<'PY'
      import socket
      try:
          socket.create_connection(("@ADDR@", @PORT@), timeout=3).close()
          print("reached")
      except OSError as exc:
          print("unreachable")
      PY
      grep -c ':' /proc/net/dev > net/interfaces.txt || true
"""


@pytest.fixture(scope="module")
def run(hostile: Launch, outside_server: Server) -> Attempt:
    assert outside_server.reachable()  # the control: the host reaches it
    subs = {"ADDR": outside_server.addr, "PORT": str(outside_server.port)}
    return hostile(PLAN, FILES, setup=lambda _repo: subs)


def seen(run: Attempt, name: str) -> str:
    return run.show(run.task("probe")["ref"], f"probe/{name}")


def test_probes_ran_and_the_run_goes_on(run: Attempt) -> None:
    assert run.stdout.startswith("{"), run.stderr[-3000:]
    assert [t["status"] for t in run.result["tasks"]] == ["merged"] * 3, run.result["tasks"]
    assert run.result["isolation"]["unchanged"] is True


@attack(
    "writing to /shared, /objects and the root file system",
    "refused (read-only mounts and root); the host's shared export, object store and "
    "contract files unchanged",
)
def test_read_only_places_stay_unwritten(run: Attempt) -> None:
    for name in ("shared", "objects", "objects-pack", "root-usr", "root-etc", "root"):
        assert seen(run, f"{name}.txt") == "refused", name
    git_dir = run.repo / ".git"
    assert not (git_dir / "objects" / "evil").exists()
    assert not (git_dir / "objects" / "pack" / "evil").exists()
    assert not (Path(run.result["state_dir"]) / "shared" / "evil").exists()
    assert (run.repo / "contracts" / "api.md").read_text() == "contract\n"
    assert run.show(run.integration(), "contracts/api.md") == "contract"


@attack(
    "looking for the docker socket (any socket, DOCKER_* variables)",
    "none in the sandbox",
)
def test_no_docker_socket(run: Attempt) -> None:
    assert seen(run, "sockets.txt") == ""
    assert seen(run, "docker-env.txt") == ""


@attack(
    "setuid binaries (su), mount, unshare (user, mount, net namespaces), chroot",
    "all refused: no capabilities (effective, bounding, permitted), no_new_privs set",
)
def test_no_privilege_can_be_gained(run: Attempt) -> None:
    for name in ("su", "mount", "unshare-user", "unshare-mount", "unshare-net", "chroot"):
        if name == "unshare-user" and GVISOR:
            # gVisor's own kernel gives a user namespace inside the sandbox: no host privilege.
            assert seen(run, f"{name}.txt") in ("refused", "allowed"), name
            continue
        assert seen(run, f"{name}.txt") == "refused", name
    status = dict(line.split() for line in seen(run, "status.txt").splitlines())
    if GVISOR:  # gVisor's /proc has no NoNewPrivs line (the container option is set:
        status.setdefault("NoNewPrivs:", "1")  # test_inspect reads it back from the daemon)
    assert status == {
        "CapPrm:": "0000000000000000",
        "CapEff:": "0000000000000000",
        "CapBnd:": "0000000000000000",
        "NoNewPrivs:": "1",
    }


@attack(
    "ptrace and process discovery",
    "only the sandbox's own processes (its uid, docker-init as PID 1) are visible or "
    "traceable; nothing of the host's",
)
def test_only_own_processes_are_visible(run: Attempt) -> None:
    procs = [line.split(maxsplit=2) for line in seen(run, "processes.txt").splitlines()]
    assert {uid for _pid, uid, _comm in procs} == {"10001"}, procs
    assert procs[0][0] == "1" and "init" in procs[0][2], procs
    assert len(procs) < 20, procs
    assert seen(run, "ptrace.txt")  # recorded either way: PID 1 is the sandbox's own init


@attack(
    "reaching a server the test runs on another Docker network, with network `none`",
    "unreachable: loopback only; the server sees no request",
)
def test_network_none_has_no_route_out(run: Attempt, outside_server: Server) -> None:
    head = run.integration()
    assert run.show(head, "net/direct.txt") == "unreachable"
    assert run.show(head, "net/interfaces.txt") == "1"
    assert outside_server.requests_seen() == []
