"""Pre-flight: all checked before anything starts. Bad input -> PlanError, nothing changed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner import git
from runner.core.plan import PlanDoc
from runner.core.policy import Policy, load_policy, warnings
from runner.core.scope import Scope
from runner.core.waves import Dispatch, dispatch, find_cycle
from runner.errors import InputError, PlanError
from runner.runtimes import RuntimeAsk
from runner.settings import Settings


@dataclass(frozen=True)
class Prepared:
    """A plan checked against its repo: what the coordinator needs to run it."""

    doc: PlanDoc
    repo: Path
    base_commit: str
    dispatch: Dispatch
    scopes: dict[str, Scope]
    policies: dict[str, Policy]
    """Per task id, and "" for the plan's default (verify)."""
    env: dict[str, dict[str, str]]
    """Per task id: the passed-through variables' values (never logged)."""
    runtime_asks: list[RuntimeAsk] = field(default_factory=list)
    """Where a sandbox's OCI runtime is chosen; checked against the daemon before a run."""

    def warnings(self) -> list[str]:
        """Loud notes on the policies in use (weakened sandboxes, an open network)."""
        users: dict[str, list[str]] = {}
        for key, policy in self.policies.items():
            for said in warnings(policy):
                users.setdefault(said, []).append(key or "verify")
        return [f"{said} (used by: {', '.join(who)})" for said, who in users.items()]

    @property
    def images(self) -> set[str]:
        plan = self.doc.plan
        return {plan.image} | {t.image for t in plan.tasks if t.image}


def resolve_policy_path(name: str, plan_dir: Path, settings: Settings) -> Path:
    """A bare name is a built-in (policies/NAME.yaml); a path is relative to the plan file."""
    if "/" in name or name.endswith((".yaml", ".yml")):
        path = Path(name)
        return path if path.is_absolute() else plan_dir / path
    return settings.policies_dir / f"{name}.yaml"


def _for_this_host(policy: Policy, settings: Settings) -> Policy:
    """An unprivileged host cannot give the clone to the policy's uid: run as the host's.
    A policy naming no runtime gets the operator's (RUNNER_RUNTIME); its own always wins."""
    update: dict[str, str] = {}
    if os.geteuid() != 0:
        update["user"] = f"{os.getuid()}:{os.getgid()}"
    if policy.runtime is None and settings.runtime:
        update["runtime"] = settings.runtime
    return policy.model_copy(update=update) if update else policy


def preflight(
    doc: PlanDoc, repo_arg: Path, settings: Settings, environ: Mapping[str, str]
) -> Prepared:
    """Check the plan against the repo and the host. Raises PlanError / InputError."""
    plan = doc.plan
    repo = git.toplevel(repo_arg)
    problems: list[str] = []
    if git.resolve(repo, "refs/heads/runner"):
        raise InputError(
            f"{repo}: a branch named 'runner' exists; it blocks the runner's branches "
            "refs/heads/runner/<run>/...",
            hint="rename it: git branch -m runner runner-old",
        )
    if git.alternates(repo):
        raise InputError(
            f"{repo}: the repo borrows objects from another (objects/info/alternates); "
            "sandboxes could not read them",
            hint="run `git repack -a -d` to make it self-contained, then retry",
        )
    base = git.resolve(repo, plan.base)
    if base is None:
        problems.append(doc.problem(("base",), f"{plan.base!r} is not a commit in {repo}"))

    ids = {t.id for t in plan.tasks}
    for i, task in enumerate(plan.tasks):
        for j, dep in enumerate(task.depends_on):
            if dep not in ids:
                problems.append(doc.problem(("tasks", i, "depends_on", j), f"unknown task {dep!r}"))
            elif dep == task.id:
                problems.append(doc.problem(("tasks", i, "depends_on", j), "depends on itself"))
        for name in task.env:
            if name not in environ:
                problems.append(doc.problem(("tasks", i, "env"), f"{name} is not set on the host"))
    deps = {t.id: [d for d in t.depends_on if d in ids and d != t.id] for t in plan.tasks}
    if not problems and (cycle := find_cycle(deps)):
        loc = doc.task_loc(cycle[0], "depends_on")
        problems.append(doc.problem(loc, "dependency cycle: " + " -> ".join(cycle)))

    if plan.shared and base and not git.is_dir_at(repo, base, plan.shared):
        problems.append(
            doc.problem(("shared",), f"{plan.shared!r} is not a directory at {plan.base}")
        )

    policies: dict[str, Policy] = {}
    plan_dir = Path(doc.source).resolve().parent
    loaded: dict[str, Policy] = {}
    origins: dict[str, str] = {}
    asks: list[RuntimeAsk] = []
    for key, name, loc in [("", plan.policy, ("policy",))] + [
        (t.id, t.policy or plan.policy, ("tasks", i, "policy") if t.policy else ("policy",))
        for i, t in enumerate(plan.tasks)
    ]:
        if name not in loaded:
            path = resolve_policy_path(name, plan_dir, settings)
            if not path.is_file():
                problems.append(doc.problem(loc, f"unknown policy {name!r} (no file {path})"))
                continue
            try:
                own = load_policy(path)
            except InputError as exc:
                problems.append(doc.problem(loc, f"bad policy: {exc.message}"))
                continue
            loaded[name] = _for_this_host(own, settings)
            origins[name] = f"policy {name!r} ({path})" if own.runtime else "RUNNER_RUNTIME"
        policy = policies[key] = loaded[name]
        if policy.runtime:
            asks.append(RuntimeAsk(policy.runtime, loc, origins[name], policy.network))
    if problems:
        raise PlanError(list(dict.fromkeys(problems)))  # a policy used twice is said once
    assert base is not None

    scopes = {t.id: Scope.of(t.scope, t.deny) for t in plan.tasks}
    result = dispatch(deps, scopes, git.tree_paths(repo, base), plan.on_overlap)
    if plan.on_overlap == "refuse" and result.overlaps:
        raise PlanError(
            [doc.problem(doc.task_loc(o.second, "scope"), o.describe()) for o in result.overlaps],
            hint="make the scopes disjoint, add depends_on, or set on_overlap: serialize | allow",
        )
    env = {t.id: {n: environ[n] for n in t.env} for t in plan.tasks}
    return Prepared(doc, repo, base, result, scopes, policies, env, asks)
