"""The one place a policy becomes container options (docker SDK kwargs). Pure: tested as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner import names
from runner.sandbox.base import SandboxSpec
from runner.sandbox.labels import labels_for

WORK, OBJECTS, SHARED, CACHE, OUT, CONTROL, BUNDLE = (
    "/work", "/objects", "/shared", "/cache", "/out", "/runner", "/bundle",
)  # fmt: skip

# Package managers keep their caches in the per-task cache volume, so a re-run is warm.
CACHE_ENV = {
    "XDG_CACHE_HOME": CACHE,
    "PIP_CACHE_DIR": f"{CACHE}/pip",
    "npm_config_cache": f"{CACHE}/npm",
    "CARGO_HOME": f"{CACHE}/cargo",
    "GOMODCACHE": f"{CACHE}/go/mod",
    "GOCACHE": f"{CACHE}/go/build",
}


def environment(spec: SandboxSpec) -> dict[str, str]:
    """The sandbox's whole environment: nothing of the host's but spec.env's named variables."""
    ident = f"task {spec.task_id}"
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        # Images may have no account for the uid: HOME lives on the writable tmpfs.
        "HOME": "/tmp/home",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "RUNNER_RUN": spec.run_id,
        "RUNNER_TASK": spec.task_id,
        "RUNNER_START": spec.start_commit,
        "RUNNER_OUT": OUT,
        "RUNNER_SHARED": SHARED if spec.shared else "",
        "GIT_AUTHOR_NAME": f"runner {ident}",
        "GIT_AUTHOR_EMAIL": f"{spec.task_id}@runner.invalid",
        "GIT_COMMITTER_NAME": f"runner {ident}",
        "GIT_COMMITTER_EMAIL": f"{spec.task_id}@runner.invalid",
        # The workspace and the borrowed object store have other owners than the uid on
        # some hosts; the sandbox is the trust boundary, not git's ownership check.
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "safe.directory",
        "GIT_CONFIG_VALUE_0": "*",
    }
    if spec.cache_volume and spec.role != "collect":  # as mounted in container_options
        env |= CACHE_ENV
    if spec.proxy and spec.role != "collect":
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env[name] = spec.proxy
        env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1,::1"
    return env | spec.env


def container_options(spec: SandboxSpec) -> dict[str, Any]:
    """Keyword arguments for `containers.create` for this sandbox (role decides the command)."""
    p = spec.policy
    mounts = [
        bind(spec.workspace, WORK),
        bind(spec.objects, OBJECTS, read_only=True),
        bind(spec.state / "control", CONTROL, read_only=True),
        bind(spec.state / "out", OUT, read_only=spec.role == "collect"),
    ]
    if spec.role == "collect":
        mounts.append(bind(spec.state / "bundle", BUNDLE))
    if spec.shared is not None:
        mounts.append(bind(spec.shared, SHARED, read_only=True))
    if spec.cache_volume and spec.role != "collect":
        mounts.append({"Type": "volume", "Source": spec.cache_volume, "Target": CACHE})
    script = "collect.sh" if spec.role == "collect" else "wrap.sh"
    opts: dict[str, Any] = {
        "image": spec.image,
        "command": ["/bin/sh", f"{CONTROL}/{script}"],
        "name": container_name(spec),
        "labels": labels_for(spec.run_id, spec.task_id, spec.role),
        "environment": environment(spec),
        "working_dir": WORK,
        "user": p.user,
        "mounts": mounts,
        "read_only": p.read_only_root,
        "tmpfs": {"/tmp": f"size={p.tmp_size},{p.tmp_options}"},
        "cap_drop": list(p.cap_drop),
        "security_opt": ["no-new-privileges:true"] if p.no_new_privileges else [],
        "mem_limit": p.memory,
        "memswap_limit": p.memory,  # equal to mem_limit: no swap on top
        "nano_cpus": int(p.cpus * 1e9),
        "pids_limit": p.pids,
        "init": True,  # a real PID 1 reaps zombies and forwards the kill on timeout
        # The daemon's copy of the output is bounded too (the runner keeps max_log of it).
        "log_config": {
            "type": "json-file",
            "config": {"max-size": str(max(p.max_log // 2, 1024**2)), "max-file": "2"},
        },
        "detach": True,
    }
    # The collector never needs a network, whatever the policy says.
    if p.network != "none" and spec.network and spec.role != "collect":
        opts["network"] = spec.network
    else:
        opts["network_mode"] = "none"
    if p.runtime:
        opts["runtime"] = p.runtime
    return opts


def bind(source: Path, target: str, *, read_only: bool = False) -> dict[str, Any]:
    """A bind mount in the API's own form: a path with `:` in it stays one path (the
    `SRC:DST:MODE` strings of `volumes` would split it)."""
    return {"Type": "bind", "Source": str(source), "Target": target, "ReadOnly": read_only}


def container_name(spec: SandboxSpec) -> str:
    return names.container_name(spec.run_id, spec.role, spec.task_id)


# -- Swarm services ------------------------------------------------------------------------------
SWARM_UNSET = ("no_new_privileges", "tmp_options", "memory swap", "runtime")
"""Policy settings a Swarm service cannot carry on API 1.41 (docs/scale-out.md): the sandbox
image has no setuid files instead; /tmp is a tmpfs of its size only; the nodes' default
runtime is the runtime."""


def service_task_template(
    spec: SandboxSpec,
    *,
    command: list[str],
    image: str,
    mounts: list[dict[str, Any]],
    networks: list[str],
    configs: list[dict[str, Any]],
    node: str | None = None,
    env: dict[str, str] | None = None,
    tmpfs: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The TaskTemplate (Engine API 1.41, as JSON) of one step of a sandbox as a one-shot
    Swarm service: the same policy as container_options, in the service's words.

    `node`: the node id the step must run on (the node that holds its workspace volume).
    `tmpfs`: extra tmpfs mounts (target -> size) besides /tmp.
    """
    p = spec.policy
    scratch = {"/tmp": p.tmp_size} | (tmpfs or {})
    mounts = mounts + [
        {"Type": "tmpfs", "Target": target, "TmpfsOptions": {"SizeBytes": size}}
        for target, size in scratch.items()
    ]
    template: dict[str, Any] = {
        "ContainerSpec": {
            "Image": image,
            "Command": command,
            "Env": [f"{k}={v}" for k, v in (env if env is not None else environment(spec)).items()],
            "Dir": WORK,
            "User": p.user,
            "ReadOnly": p.read_only_root,
            "CapabilityDrop": list(p.cap_drop),
            "Init": True,  # as for containers: a real PID 1
            "Mounts": mounts,
            "Configs": configs,
            # A kill on timeout is a kill (a container's is SIGKILL too), not a grace period.
            "StopSignal": "SIGKILL",
            "StopGracePeriod": 0,
            "Labels": labels_for(spec.run_id, spec.task_id, spec.role),
        },
        "Resources": {
            "Limits": {
                "NanoCPUs": int(p.cpus * 1e9),
                "MemoryBytes": p.memory,
                "Pids": p.pids,
            }
        },
        "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
        "Networks": [{"Target": n} for n in networks],
        "LogDriver": {
            "Name": "json-file",
            "Options": {"max-size": str(max(p.max_log // 2, 1024**2)), "max-file": "2"},
        },
    }
    if node is not None:
        template["Placement"] = {"Constraints": [f"node.id=={node}"]}
    return template


def volume_mount(
    source: str, target: str, labels: dict[str, str], *, read_only: bool = False
) -> dict[str, Any]:
    """A node-local named volume (made on the node on first use, with these labels)."""
    return {
        "Type": "volume",
        "Source": source,
        "Target": target,
        "ReadOnly": read_only,
        "VolumeOptions": {"Labels": labels},
    }
