"""OCI runtimes a plan's sandboxes ask for, checked against the daemon before anything starts.

A policy naming a runtime the daemon lacks must stop the run with exit 2: Docker would refuse
every create anyway, and quietly using the default runtime instead would drop the isolation
the policy asked for (issue 11: never a silent fall-back).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from runner.core.plan import PlanDoc
from runner.core.yamlmarks import Loc
from runner.errors import PlanError

REGISTER_HINT = (
    "register the runtime with the Docker daemon: add it to /etc/docker/daemon.json under "
    '"runtimes" (for gVisor: {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": '
    '["--network=none"]}}; `bash .ci/gvisor` does this), then reload the daemon with '
    "`kill -HUP $(pidof dockerd)`; or remove `runtime` from the policy"
)


@dataclass(frozen=True)
class RuntimeAsk:
    """One place a sandbox's runtime is chosen."""

    runtime: str
    loc: Loc
    """Where the plan picks the policy (`policy` or `tasks[i].policy`)."""
    origin: str
    """Who named the runtime: `policy NAME (FILE)` or the RUNNER_RUNTIME setting."""


def check_runtimes(doc: PlanDoc, asks: Iterable[RuntimeAsk], available: Collection[str]) -> None:
    """Raise PlanError naming every ask whose runtime is not among the daemon's `available`."""
    have = ", ".join(sorted(available)) or "none"
    problems = dict.fromkeys(
        doc.problem(
            ask.loc,
            f"{ask.origin} sets runtime: {ask.runtime}, which this Docker daemon does not "
            f"have (it has: {have})",
        )
        for ask in asks
        if ask.runtime not in available
    )  # dict: one line per place, in plan order, though many tasks share the plan's policy
    if problems:
        raise PlanError(list(problems), hint=REGISTER_HINT)
