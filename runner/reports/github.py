"""GitHub Actions: masks for passed variables, annotations on the plan, a job summary.

Active when `GITHUB_ACTIONS=true`. Workflow commands go to stderr (the Actions runner reads
commands from both streams), so stdout stays the result document with `--json`. Masks come
first, before the run prints anything; annotations point at the task's line in the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TextIO

from runner.core.plan import PlanDoc
from runner.core.results import RunResult, TaskStatus
from runner.core.yamlmarks import line_for
from runner.reports.facts import verify_said

SUMMARY_ROWS = 200  # a job summary is capped at 1 MiB: a huge plan's table is cut


def active(environ: Mapping[str, str]) -> bool:
    return environ.get("GITHUB_ACTIONS") == "true"


def _data(text: str) -> str:
    """Escape a workflow command's message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    """Escape a workflow command's property value."""
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def mask_commands(doc: PlanDoc, environ: Mapping[str, str]) -> list[str]:
    """`::add-mask::` for the value of every variable the plan passes to a task, a line of a
    multi-line value at a time (GitHub masks line by line)."""
    seen: set[str] = set()
    out: list[str] = []
    for task in doc.plan.tasks:
        for name in task.env:
            value = environ.get(name)
            for part in (value or "").splitlines():
                part = part.strip()
                if part and part not in seen:
                    seen.add(part)
                    out.append(f"::add-mask::{_data(part)}")
    return out


def plan_file(plan: str, environ: Mapping[str, str]) -> str:
    """The plan's path as annotations need it: relative to the workspace when inside it."""
    workspace = environ.get("GITHUB_WORKSPACE")
    path = Path(plan)
    if workspace:
        try:
            return path.resolve().relative_to(Path(workspace).resolve()).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def error_commands(result: RunResult, doc: PlanDoc | None, environ: Mapping[str, str]) -> list[str]:
    """`::error` per task that did not merge for its own reasons, and per scope violation."""
    file = _prop(plan_file(result.plan, environ))
    index = {t.id: i for i, t in enumerate(doc.plan.tasks)} if doc else {}

    def where(task_id: str, *field: str) -> str:
        line = (
            line_for(doc.lines, ("tasks", index[task_id], *field))
            if doc and task_id in index
            else None
        )
        return f"file={file}" + (f",line={line}" if line else "")

    out = []
    for t in result.tasks:
        if t.status.ok or t.status is TaskStatus.SKIPPED:
            continue  # a skipped task's reason is another task's failure, annotated there
        title = _prop(f"task {t.id}: {t.status.value}")
        out.append(f"::error {where(t.id)},title={title}::{_data(t.reason or t.status.value)}")
        for path in t.violations:
            title = _prop(f"task {t.id}: outside its scope")
            said = _data(f"{t.id} changed {path}, outside its scope")
            out.append(f"::error {where(t.id, 'scope')},title={title}::{said}")
    if result.error:
        out.append(
            f"::error file={file},title=run {_prop(result.status.value)}::{_data(result.error)}"
        )
    return out


def _cell(text: str) -> str:
    """Markdown table cell: HTML escaped (GitHub renders HTML in summaries), one line, no `|`."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(text.split()).replace("|", "\\|").replace("`", "\\`")


def summary_markdown(result: RunResult) -> str:
    ok = sum(t.status.ok for t in result.tasks)
    icon = "✅" if result.exit_code == 0 else "❌"
    branch = result.integration_ref.removeprefix("refs/heads/")
    lines = [
        f"### {icon} runner run `{_cell(result.run_id)}`: {result.status.value}",
        "",
        f"{ok} of {len(result.tasks)} tasks merged (or had no changes)"
        + (f" in {result.duration_s:.1f}s" if result.duration_s is not None else "")
        + f"; integration branch `{_cell(branch)}` at `{(result.integration_commit or '-')[:12]}`.",
        "",
        "| wave | task | status | exit | time | files | reason |",
        "|---:|---|---|---:|---:|---:|---|",
    ]
    tasks = sorted(result.tasks, key=lambda t: (t.wave, t.id))
    for t in tasks[:SUMMARY_ROWS]:
        lines.append(
            f"| {t.wave} | `{_cell(t.id)}` | {t.status.value} | "
            f"{'-' if t.exit_code is None else t.exit_code} | "
            f"{'-' if t.duration_s is None else f'{t.duration_s:.1f}s'} | {len(t.files_changed)} | "
            f"{_cell(t.reason or '')} |"
        )
    if len(tasks) > SUMMARY_ROWS:
        lines.append(f"| | … | {len(tasks) - SUMMARY_ROWS} more tasks: see result.json | | | | |")
    lines.append("")
    for w in result.waves:
        lines.append(f"- wave {w.index}: {_cell(verify_said(w, result))}")
    if result.isolation is not None and not result.isolation.unchanged:
        lines.append(
            f"- **your checkout CHANGED during the run: {', '.join(result.isolation.changed)}**"
        )
    lines += [f"- **warning:** {_cell(w)}" for w in result.warnings]
    if result.error:
        lines.append(f"- **error:** {_cell(result.error)}")
    return "\n".join(lines) + "\n"


def append_summary(result: RunResult, environ: Mapping[str, str]) -> Path | None:
    """Append the job summary to $GITHUB_STEP_SUMMARY (None: the variable is not set)."""
    target = environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(summary_markdown(result) + "\n")
    return path


def emit(lines: Iterable[str], stream: TextIO) -> None:
    for line in lines:
        stream.write(line + "\n")
    stream.flush()
