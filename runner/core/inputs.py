"""What a run's result pins (issue 13): hashes of its inputs, each task's input key, drift.

Pure: the coordinator gathers the facts (image ids from the backend, trees from git) and this
module turns them into hashes and comparisons. A hash is `sha256:` + the hex digest of a
canonical JSON (sorted keys, no spaces), so the same input hashes the same on every host.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from runner.core.plan import Plan, Task
from runner.core.policy import Policy
from runner.core.usage import Usage

DRIFT_KINDS = ("image", "policy")
"""What `runner rerun --allow-drift` may let differ from the pinned run."""


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(value: Any) -> str:
    """sha256 of a value's canonical JSON (a str is hashed as its JSON string)."""
    return "sha256:" + hashlib.sha256(canonical(value).encode()).hexdigest()


def task_definition(task: Task, plan: Plan) -> dict[str, Any]:
    """What a task is, with the plan's defaults filled in: env by name only (never values)."""
    return {
        "run": task.run,
        "scope": task.scope,
        "deny": task.deny,
        "env": sorted(task.env),
        "image": task.image or plan.image,
        "policy": task.policy or plan.policy,
        "timeout": float(task.timeout or plan.timeout),  # 1800 and 1800.0: one value
        "retries": task.retries,
        "retry_on": sorted(task.retry_on),
        "shared": plan.shared,
    }


def definition_hash(task: Task, plan: Plan) -> str:
    return digest(task_definition(task, plan))


def policy_hash(policy: Policy) -> str:
    """The resolved policy's content (as run on this host), not its file's bytes."""
    return digest(policy.model_dump(mode="json"))


class TaskInputs(_Doc):
    definition: str
    """Hash of the task's definition (runner.core.inputs.task_definition)."""
    image: str
    """The image it runs in (its id is in RunInputs.images)."""
    policy: str
    """Its policy's name (its hash is in RunInputs.policies)."""


class RunInputs(_Doc):
    """Everything a run depended on besides the repo's history, pinned when it was planned."""

    plan: str
    plan_hash: str | None = None
    """sha256 of the plan's text as read (the run keeps that copy)."""
    base_commit: str
    shared: str | None = None
    shared_tree: str | None = None
    """The tree of the shared dir at the base commit."""
    tasks: dict[str, TaskInputs] = {}
    images: dict[str, str | None] = {}
    """Every image used (tasks, verify, collector, proxy) -> its id (None: not found)."""
    image_digests: dict[str, list[str]] = {}
    """Those that came from a registry -> their repo digests (built here: none)."""
    verify_image: str | None = None
    collector_image: str | None = None
    policies: dict[str, str] = {}
    """Policy name -> hash of its resolved content."""
    runner_version: str
    backend: str
    daemon_version: str | None = None


class KeyParts(_Doc):
    """What a task's input key is made of: a change in any of them runs it again."""

    definition: str
    start_tree: str
    """The tree of its start commit (base, or the integration head of its wave)."""
    shared_tree: str | None
    image_id: str | None
    policy: str


def input_key(parts: KeyParts) -> str:
    return digest(parts.model_dump(mode="json"))


class ReusedFrom(_Doc):
    """The earlier merged task whose work a task reused instead of running."""

    run: str
    task: str
    commit: str
    """Its commit in that run (re-applied on this run's start as a fresh commit)."""
    start_commit: str
    usage: Usage | None = None
    """What its original attempts used: saved by not running it again."""


class Candidate(_Doc):
    """A merged task of an earlier run, as the lookup sees it."""

    run: str
    task: str
    key: str
    commit: str
    start_commit: str
    usage: Usage | None = None
    reused_from: ReusedFrom | None = None


def find_reusable(
    key: str, candidates: Iterable[Candidate], present: Callable[[str], bool]
) -> ReusedFrom | None:
    """The newest earlier merged task with this key whose commits are still in the repo.

    `candidates` come oldest first (run ids begin with their start time). The usage saved is
    that of the original attempts: a task that was itself reused passes its source's on."""
    for c in reversed(list(candidates)):
        if c.key != key or not (present(c.commit) and present(c.start_commit)):
            continue
        usage = c.reused_from.usage if c.reused_from is not None else c.usage
        return ReusedFrom(
            run=c.run, task=c.task, commit=c.commit, start_commit=c.start_commit, usage=usage
        )
    return None


def drift(pinned: RunInputs, now: RunInputs) -> list[tuple[str, str]]:
    """(kind, what) for every pinned input that is gone or changed; kinds: DRIFT_KINDS."""
    found: list[tuple[str, str]] = []
    for name, was in sorted(pinned.images.items()):
        is_ = now.images.get(name)
        if is_ is None:
            found.append(("image", f"image {name} is gone (pinned {_short(was)})"))
        elif is_ != was:
            found.append(("image", f"image {name} changed: {_short(was)} -> {_short(is_)}"))
    for name, was in sorted(pinned.policies.items()):
        is_ = now.policies.get(name)
        if is_ is None:
            found.append(("policy", f"policy {name} is gone"))
        elif is_ != was:
            found.append(("policy", f"policy {name} changed: {_short(was)} -> {_short(is_)}"))
    return found


def notes(pinned: RunInputs, now: RunInputs) -> list[str]:
    """Differences that do not refuse a rerun but are worth saying (versions)."""
    said = []
    for what, was, is_ in (
        ("runner", pinned.runner_version, now.runner_version),
        ("backend", pinned.backend, now.backend),
        ("daemon", pinned.daemon_version, now.daemon_version),
    ):
        if was != is_:
            said.append(f"{what} version differs from the pinned run: {was} -> {is_}")
    return said


def _short(value: str | None) -> str:
    if value is None:
        return "none"
    algo, _, hexa = value.partition(":")
    return f"{algo}:{hexa[:12]}" if hexa else value[:12]


def describe(inputs: RunInputs, starts: Mapping[str, str | None]) -> list[str]:
    """`runner show RUN --inputs`: one line per pinned input."""
    out = [
        f"plan: {inputs.plan} {inputs.plan_hash or '-'}",
        f"base: {inputs.base_commit}",
        f"runner: {inputs.runner_version}",
        f"backend: {inputs.backend} (daemon {inputs.daemon_version or 'unknown'})",
    ]
    if inputs.shared:
        out.append(f"shared: {inputs.shared} tree {inputs.shared_tree or '-'}")
    for name, image_id in sorted(inputs.images.items()):
        digests = " ".join(inputs.image_digests.get(name, []))
        out.append(f"image: {name} {image_id or 'not found'}" + (f" {digests}" if digests else ""))
    for name, h in sorted(inputs.policies.items()):
        out.append(f"policy: {name} {h}")
    for task_id, t in inputs.tasks.items():
        start = starts.get(task_id) or "-"
        out.append(
            f"task: {task_id} definition {t.definition} image {t.image} policy {t.policy} "
            f"start {start}"
        )
    return out
