"""`runner shell RUN TASK -- CMD`: a command in a fresh sandbox made as the task's was.

Same image, policy, limits, network, shared mount and cache, on a fresh clone of the task's
start commit (or of its result). The sandbox, its clone and any network it needed are removed
when the command ends; the task's own state (its log, its kept workspace) is never touched.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import tempfile
from pathlib import Path

from runner import names, workspace
from runner.errors import InputError
from runner.settings import Settings


def run_shell(
    repo: Path, which: str, task_id: str, at: str, argv: list[str], settings: Settings
) -> tuple[int, str]:
    """(exit code, output) of argv in the task's sandbox. Raises InputError, SandboxError."""
    from runner.coordinator import Coordinator
    from runner.gc import run_alive
    from runner.resume import load_run_plan
    from runner.sandbox.base import SandboxSpec
    from runner.sandbox.factory import make_backend

    if not argv and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise InputError(
            "give the command to run after -- (an interactive shell needs a terminal)",
            hint="runner shell RUN TASK -- cat FILE",
        )
    run_dir, prepared, done = load_run_plan(repo, which, settings, os.environ)
    result = done.result
    if run_alive(run_dir):
        raise InputError(f"run {result.run_id} is still running", hint="wait for it to end")
    known = [t.id for t in result.tasks]
    if task_id not in known:
        raise InputError(f"run {result.run_id} has no task {task_id!r}", hint=", ".join(known))
    task = result.task(task_id)
    commit = task.start_commit if at == "start" else task.commit
    if commit is None:
        why = "never started" if at == "start" else "brought no commit home"
        raise InputError(f"task {task_id} {why}: there is no {at} commit to open")
    plan = prepared.doc.plan
    backend = make_backend(settings)
    coordinator = Coordinator(prepared, backend, run_dir.parent.parent, resume=done)
    state = names.sandbox_dir(run_dir, "shell", task_id)
    spec: SandboxSpec | None = None
    with tempfile.TemporaryDirectory(prefix="runner-shell-") as tmp:
        try:
            if plan.shared:
                coordinator.shared = workspace.export_shared(
                    prepared.repo, prepared.base_commit, plan.shared, Path(tmp) / "shared"
                )
            if prepared.policies[task_id].network == "open":
                coordinator.network = backend.create_network(result.run_id)
            timeout = plan.task(task_id).timeout or plan.timeout
            spec = coordinator.sandbox_spec(task_id, "task", commit, shlex.join(argv), timeout)
            spec = dataclasses.replace(spec, role="shell", state=state, workspace=state / "work")
            workspace.make_clone(
                prepared.repo, commit, spec.workspace, f"task/{task_id}", spec.policy.user
            )
            if not argv:
                return backend.interactive(spec), ""
            ex = backend.execute(spec)
            output = ex.log_path.read_text(errors="replace")
            code = 124 if ex.timed_out else (ex.exit_code if ex.exit_code is not None else 1)
            return code, output
        finally:
            if spec is not None:
                backend.destroy(spec)
            backend.cleanup(result.run_id)  # the run is over: its network and proxies too
            workspace.remove(state)
            backend.close()
