"""What a run depends on besides the repo's history, pinned as it is now (issue 13).

The pure parts (hashes, keys, drift) are in `runner.core.inputs`; this asks the backend for
image ids and the daemon's version and the repo for the shared dir's tree.
"""

from __future__ import annotations

import hashlib

from runner import reapply
from runner.core.inputs import RunInputs, TaskInputs, definition_hash, policy_hash
from runner.preflight import Prepared
from runner.sandbox.base import SandboxBackend


def plan_hash(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def runner_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("runner")
    except PackageNotFoundError:  # run from a checkout that was never installed
        from runner import __version__

        return __version__


def pin_inputs(prepared: Prepared, backend: SandboxBackend, backend_name: str) -> RunInputs:
    """What a run of `prepared` depends on besides the repo's history, as it is now."""
    plan = prepared.doc.plan
    egress = any(pol.network == "allowlist" for pol in prepared.policies.values())
    used = prepared.images | backend.required_images(egress=egress)
    found = backend.image_ids(used)
    names_of = {"": plan.policy} | {t.id: t.policy or plan.policy for t in plan.tasks}
    shared_tree = None
    if plan.shared:
        shared_tree = reapply.tree_of(prepared.repo, prepared.base_commit, plan.shared)
    collector = getattr(backend, "collector_image", None)
    return RunInputs(
        plan=prepared.doc.source,
        plan_hash=plan_hash(prepared.doc.text),
        base_commit=prepared.base_commit,
        shared=plan.shared,
        shared_tree=shared_tree,
        tasks={
            t.id: TaskInputs(
                definition=definition_hash(t, plan),
                image=t.image or plan.image,
                policy=names_of[t.id],
            )
            for t in plan.tasks
        },
        images={name: found.get(name) for name in sorted(used)},
        image_digests=backend.image_digests(used),
        verify_image=plan.image if plan.verify else None,
        collector_image=collector if isinstance(collector, str) else None,
        policies={names_of[k]: policy_hash(pol) for k, pol in prepared.policies.items()},
        runner_version=runner_version(),
        backend=backend_name,
        daemon_version=backend.engine_version(),
    )
