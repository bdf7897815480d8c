"""OCI runtimes a plan's sandboxes ask for, checked against the daemon before anything starts.

A policy naming a runtime the daemon lacks must stop the run with exit 2: Docker would refuse
every create anyway, and quietly using the default runtime instead would drop the isolation
the policy asked for (issue 11: never a silent fall-back).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.core.plan import PlanDoc
from runner.core.yamlmarks import Loc
from runner.errors import PlanError

REGISTER_HINT = (
    "register the runtime with the Docker daemon: add it to /etc/docker/daemon.json under "
    '"runtimes" (for gVisor: {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": '
    '["--network=none"]}}; `bash .ci/gvisor` does this), then reload the daemon with '
    "`kill -HUP $(pidof dockerd)`; or remove `runtime` from the policy"
)
OFFLINE_HINT = (
    "give tasks that need the network a policy without `runtime`, or register the runtime "
    "with a network (for runsc, --network=host reaches Docker networks here, but hands the "
    "network system calls to the host kernel)"
)


@dataclass(frozen=True)
class RuntimeAsk:
    """One place a sandbox's runtime is chosen."""

    runtime: str
    loc: Loc
    """Where the plan picks the policy (`policy` or `tasks[i].policy`)."""
    origin: str
    """Who named the runtime: `policy NAME (FILE)` or the RUNNER_RUNTIME setting."""
    network: str = "none"
    """The policy's network mode."""


def check_runtimes(
    doc: PlanDoc, asks: Iterable[RuntimeAsk], daemon: Mapping[str, Mapping[str, Any]]
) -> None:
    """Raise PlanError naming every ask the daemon cannot honour.

    Args:
        daemon: `docker info`'s Runtimes: name -> {"path": ..., "runtimeArgs": [...]}.
    """
    have = ", ".join(sorted(daemon)) or "none"
    missing: dict[str, None] = {}  # dicts: one line per place, in plan order
    offline: dict[str, None] = {}
    for ask in asks:
        if ask.runtime not in daemon:
            missing[
                doc.problem(
                    ask.loc,
                    f"{ask.origin} sets runtime: {ask.runtime}, which this Docker daemon does "
                    f"not have (it has: {have})",
                )
            ] = None
        elif ask.network != "none" and "--network=none" in _args(daemon[ask.runtime]):
            # Docker would attach the network, the runtime would ignore it: a task asking
            # for a network would silently run without one.
            offline[
                doc.problem(
                    ask.loc,
                    f"{ask.origin} asks for network: {ask.network}, but the daemon runs "
                    f"runtime {ask.runtime} with --network=none (no network at all)",
                )
            ] = None
    if missing or offline:
        raise PlanError(
            list(missing) + list(offline), hint=REGISTER_HINT if missing else OFFLINE_HINT
        )


def _args(runtime: Mapping[str, Any]) -> list[str]:
    args = runtime.get("runtimeArgs") or []
    return [str(a) for a in args] if isinstance(args, list) else []
