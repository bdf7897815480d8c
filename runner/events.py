"""The journal's events, built from the coordinator's values: what each one carries.

The fields are listed in `runner.core.runstate.EVENTS`, which projects them back into a
run's state. Environment variables appear by name only: values never reach an event.
"""

from __future__ import annotations

from typing import Any

from runner.core.results import RunResult, WaveResult
from runner.preflight import Prepared
from runner.sandbox.base import Collected, Execution


def planned(prepared: Prepared, result: RunResult) -> dict[str, Any]:
    plan, r = prepared.doc.plan, result
    tasks = [  # env: the names a task asked for (prepared.env holds values: never here)
        {"id": t.id, "wave": r.task(t.id).wave, "depends_on": t.depends_on, "env": t.env}
        for t in plan.tasks
    ]
    return {
        "run_id": r.run_id,
        "repo": r.repo,
        "plan": r.plan,
        "base": r.base,
        "base_commit": r.base_commit,
        "integration_ref": r.integration_ref,
        "state_dir": r.state_dir,
        "warnings": prepared.warnings(),
        "waves": prepared.dispatch.waves,
        "tasks": tasks,
        "on_conflict": plan.on_conflict,
        "verify": plan.verify.run if plan.verify else None,
    }


def task_ended(task_id: str, ex: Execution) -> dict[str, Any]:
    return {
        "task": task_id,
        "exit_code": ex.exit_code,
        "timed_out": ex.timed_out,
        "oom_killed": ex.oom_killed,
        "disk_exceeded": ex.disk_exceeded,
        "lost": ex.lost,
        "duration_s": ex.duration_s,
        "log": str(ex.log_path),
    }


def collected(task_id: str, c: Collected) -> dict[str, Any]:
    out = str(c.out_dir) if c.out_dir else None
    return {"task": task_id, "head": c.head, "problem": c.problem, "out": out, "notes": c.notes}


def fetched(r: RunResult, task_id: str, problem: str | None, kept: str | None) -> dict[str, Any]:
    t = r.task(task_id)
    return {
        "task": task_id,
        "ref": t.ref,
        "commit": t.commit,
        "files_changed": len(t.files_changed),
        "problem": problem,
        "kept": kept,
    }


def wave_ended(w: WaveResult) -> dict[str, Any]:
    return {
        "wave": w.index,
        "merged_commit": w.merged_commit,
        "verify": w.verify,
        "isolated": w.isolated,
    }


def run_ended(r: RunResult, changed: list[str]) -> dict[str, Any]:
    return {
        "status": r.status.value,
        "error": r.error,
        "integration_commit": r.integration_commit,
        "unchanged": not changed,
        "changed": changed,
        "duration_s": r.duration_s,
    }
