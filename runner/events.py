"""The journal's events, built from the coordinator's values: what each one carries.

The fields are listed in `runner.core.runstate.EVENTS`, which projects them back into a
run's state. Environment variables appear by name only: values never reach an event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner.preflight import Prepared
from runner.sandbox.base import Collected, Execution


def planned(
    prepared: Prepared, run_id: str, state_dir: str, integration_ref: str
) -> dict[str, Any]:
    plan = prepared.doc.plan
    wave_of = {t: i for i, w in enumerate(prepared.dispatch.waves, start=1) for t in w}
    tasks = [  # env: the names a task asked for (prepared.env holds values: never here)
        {"id": t.id, "wave": wave_of[t.id], "depends_on": t.depends_on, "env": t.env}
        for t in plan.tasks
    ]
    return {
        "run_id": run_id,
        "repo": str(prepared.repo),
        "plan": prepared.doc.source,
        "base": plan.base,
        "base_commit": prepared.base_commit,
        "integration_ref": integration_ref,
        "state_dir": state_dir,
        "warnings": prepared.warnings(),
        "waves": prepared.dispatch.waves,
        "tasks": tasks,
        "on_conflict": plan.on_conflict,
        "verify": plan.verify.run if plan.verify else None,
    }


def task_ended(task_id: str, ex: Execution, attempt: int) -> dict[str, Any]:
    return {
        "task": task_id,
        "attempt": attempt,
        "exit_code": ex.exit_code,
        "timed_out": ex.timed_out,
        "oom_killed": ex.oom_killed,
        "disk_exceeded": ex.disk_exceeded,
        "lost": ex.lost,
        "duration_s": ex.duration_s,
        "log": str(ex.log_path),
        "cpu_s": ex.cpu_s,
        "peak_memory_bytes": ex.peak_memory_bytes,
        "metrics_source": ex.metrics_source,
    }


def execution(ev: dict[str, Any]) -> Execution:
    """How a task ended, from its `task_ended` event (to judge it after a resume)."""
    return Execution(
        exit_code=ev["exit_code"],
        timed_out=ev["timed_out"],
        oom_killed=ev["oom_killed"],
        duration_s=ev["duration_s"],
        log_path=Path(ev["log"]),
        cpu_s=ev.get("cpu_s"),
        peak_memory_bytes=ev.get("peak_memory_bytes"),
        metrics_source=ev.get("metrics_source"),
        disk_exceeded=ev.get("disk_exceeded", False),
        lost=ev.get("lost"),
    )


def collected(task_id: str, c: Collected) -> dict[str, Any]:
    out = str(c.out_dir) if c.out_dir else None
    return {"task": task_id, "head": c.head, "problem": c.problem, "out": out, "notes": c.notes}


def span(start: float, end: float) -> dict[str, Any]:
    """One phase of a task (`PhaseTime`), from two `time.time()` readings."""
    iso = datetime.fromtimestamp(start, UTC).isoformat(timespec="milliseconds")
    return {"start": iso, "duration_s": round(max(0.0, end - start), 3)}
