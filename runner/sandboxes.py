"""The run's sandboxes: each one's spec from the plan and its policy, verify, and what a
task's sandbox reports besides its work (egress denials, usage).

One place decides what a sandbox of this run gets (image, policy, network or proxy, mounts,
cache, env); the backend turns that into container options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from runner import names, workspace
from runner.core.usage import Prices, usage_for
from runner.errors import GitError, RunnerError
from runner.preflight import Prepared
from runner.sandbox import labels
from runner.sandbox.base import Execution, Role, SandboxBackend, SandboxSpec

log = structlog.get_logger()


@dataclass
class Sandboxes:
    prepared: Prepared
    backend: SandboxBackend
    run_id: str
    run_dir: Path
    repo_key: str
    emit: Callable[..., None]
    """emit(event, **fields): journal an event and apply it (the coordinator's)."""
    prices: Prices = field(default_factory=Prices)
    shared: Path | None = None
    """The exported shared dir, once the run made it."""
    network: str | None = None
    """The run's network for `network: open` sandboxes, once the run made it."""

    def __post_init__(self) -> None:
        self.repo = self.prepared.repo
        self.plan = self.prepared.doc.plan
        self.stores = self.run_dir / "objects"  # `objects: reachable` stores, per commit

    def spec(
        self, task_id: str, role: Role, start: str, script: str, timeout: float
    ) -> SandboxSpec:
        policy = self.prepared.policies[task_id if role == "task" else ""]
        image = (self.plan.task(task_id).image if role == "task" else None) or self.plan.image
        state = names.sandbox_dir(self.run_dir, role, task_id)
        network, proxy = self.network, None
        if policy.network == "allowlist":
            gateway = self.backend.gateway(self.run_id, policy.allow)
            network, proxy = gateway.network, gateway.proxy
        return SandboxSpec(
            run_id=self.run_id,
            task_id=task_id,
            role=role,
            image=image,
            policy=policy,
            script=script,
            timeout=timeout,
            workspace=state / "work",
            # The task, its collector and verify see `all` objects or only `start`'s history.
            objects=workspace.objects_for(self.repo, start, policy.objects, self.stores),
            state=state,
            start_commit=start,
            shared=self.shared,
            # Verify of every wave shares one cache: a rerun of any wave is warm.
            cache_volume=names.cache_volume(self.repo_key, role, task_id),
            cache_labels=labels.cache_labels(self.repo_key, role, task_id),
            env=self.prepared.env.get(task_id, {}) if role == "task" else {},
            network=network,
            proxy=proxy,
        )

    def usage(self, spec: SandboxSpec, out_dir: Path | None) -> dict[str, Any] | None:
        agent = self.plan.task(spec.task_id).agent
        used = usage_for(out_dir, agent, self.prices)
        return used.model_dump(mode="json") if used is not None else None

    def denials(
        self, spec: SandboxSpec, ex: Execution, since: float, until: float
    ) -> dict[str, Any]:
        """What the task's egress proxy refused it (allowlist sandboxes): task_ended fields."""
        if spec.proxy is None:
            return {}
        if ex.address is None:  # it ended before its address could be read (milliseconds)
            return {"notes": ["egress denials unknown: it ended before its address was read"]}
        try:
            gateway = self.backend.gateway(self.run_id, spec.policy.allow)
            found = self.backend.denials(gateway, ex.address, since, until)
        except RunnerError as exc:  # the work still comes home; the gap is said
            return {"notes": [f"egress denials unknown: {exc}"]}
        if found:
            log.warning("egress denied", task=spec.task_id, count=len(found))
        return {"denials": [d.model_dump() for d in found]}

    def verify(self, index: int, commit: str, alone: str | None) -> bool:
        assert self.plan.verify is not None
        name = f"wave-{index}" + (f"-{alone}" if alone else "")
        spec = self.spec(name, "verify", commit, self.plan.verify.run, self.plan.verify.timeout)
        policy = self.prepared.policies[""]
        self.emit("verify_started", wave=index, task=alone, commit=commit)
        try:
            workspace.make_clone(self.repo, commit, spec.workspace, "verify", policy.user)
        except (GitError, OSError) as exc:
            # The merged tree cannot even be checked out here (a task's paths): red, not a crash.
            why = f"runner: cannot check out the merged tree for verify: {exc}\n"
            spec.state.mkdir(parents=True, exist_ok=True)
            (spec.state / "verify.log").write_text(why)
            workspace.remove(spec.workspace)
            red = {"result": "red", "log": str(spec.state / "verify.log")}
            self.emit("verify_ended", wave=index, task=alone, **red)
            log.warning("verify", wave=index, task=alone, result="red", why=why.strip())
            return False
        try:
            ex = self.backend.execute(spec)
        finally:
            self.backend.destroy(spec)
            for scratch in ("work", "control", "out", "bundle"):
                workspace.remove(spec.state / scratch)
        green = ex.exit_code == 0 and not ex.timed_out and not ex.oom_killed
        ended = {"result": "green" if green else "red", "log": str(ex.log_path)}
        self.emit("verify_ended", wave=index, task=alone, **ended)
        log.info("verify", wave=index, task=alone, result=ended["result"])
        return green
