"""One self-contained HTML page of a run: summary, timeline (inline SVG), a card per task.

Rendered by Jinja2 with autoescape on: every text of the run (reasons, paths, log tails) is
escaped, and the page loads nothing from anywhere (no scripts, inline CSS, no links out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jinja2

from runner import git
from runner.core.results import RunResult, TaskResult, TaskStatus
from runner.errors import RunnerError
from runner.reports.facts import log_tail, parse_time, verify_said

COLOURS = {
    TaskStatus.MERGED: "#2e7d32",
    TaskStatus.NO_CHANGES: "#66bb6a",
    TaskStatus.SKIPPED: "#9e9e9e",
    TaskStatus.TIMEOUT: "#ef6c00",
    TaskStatus.OOM: "#ef6c00",
    TaskStatus.DISK_LIMIT: "#ef6c00",
    TaskStatus.SCOPE_VIOLATION: "#6a1b9a",
    TaskStatus.CONFLICT: "#ad1457",
    TaskStatus.VERIFY_FAILED: "#c62828",
    TaskStatus.SANDBOX_LOST: "#455a64",
    TaskStatus.REJECTED: "#4e342e",
    TaskStatus.FAILED: "#c62828",
}
VERIFY_COLOURS = {"green": "#1565c0", "red": "#c62828"}
WIDTH, ROW, LABEL = 960, 22, 170  # timeline: pixels wide, per row, for the names
LOG_LINES = 60


@dataclass
class Bar:
    label: str
    kind: str  # task | verify
    status: str
    colour: str
    x: float
    width: float
    y: int
    title: str
    phases: list[Segment] = field(default_factory=list)


@dataclass
class Segment:
    """One phase of a task under its bar (clone, task, collect, ...)."""

    name: str
    x: float
    width: float
    title: str


@dataclass
class Timeline:
    bars: list[Bar] = field(default_factory=list)
    rows: list[tuple[str, int, str]] = field(default_factory=list)  # label, y, note (no bar)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    height: int = 0
    width: int = WIDTH


@dataclass
class Card:
    task: TaskResult
    colour: str
    diffstat: list[tuple[str, str, str]]  # path, added, deleted ("-" for binary)
    log: str | None


def _start(value: str | None) -> datetime | None:
    t = parse_time(value)
    return t if t is not None and t.tzinfo is not None else None


def timeline(result: RunResult) -> Timeline:
    """A bar per task that ran (by start and duration), then one per verify run."""
    spans: list[tuple[str, str, str, str, datetime | None, float]] = []
    for t in sorted(result.tasks, key=lambda t: (t.wave, t.id)):
        spans.append(
            (t.id, "task", t.status.value, COLOURS.get(t.status, "#c62828"),
             _start(t.started_at), t.duration_s or 0.0)
        )  # fmt: skip
    for w in result.waves:
        for v in w.verify_runs:
            label = f"verify {w.index}" + (f" ({v.task})" if v.task else "")
            spans.append(
                (label, "verify", v.result, VERIFY_COLOURS.get(v.result, "#c62828"),
                 _start(v.started_at), v.duration_s or 0.0)
            )  # fmt: skip
    starts = [s[4] for s in spans if s[4] is not None]
    run_start = _start(result.started_at)
    t0 = min([*starts, *([run_start] if run_start else [])], default=None)
    ends = [(s[4] - t0).total_seconds() + s[5] for s in spans if s[4] is not None and t0]
    total = max([*ends, result.duration_s or 0.0, 1.0])
    scale = (WIDTH - LABEL - 10) / total
    tl = Timeline(height=ROW * (len(spans) + 1) + 10)
    for i, (label, kind, status, colour, start, seconds) in enumerate(spans):
        y = ROW * i + 4
        if start is None or t0 is None:
            tl.rows.append((label, y, "not run" if kind == "task" else "no time"))
            continue
        offset = (start - t0).total_seconds()
        bar = Bar(label, kind, status, colour, LABEL + offset * scale, max(seconds * scale, 2.0),
                  y, f"{label}: {status}, from {offset:.1f}s for {seconds:.1f}s")  # fmt: skip
        if kind == "task":
            bar.phases = _segments(result.task(label), t0, scale)
            if bar.phases:
                bar.title += "; " + ", ".join(p.title for p in bar.phases)
        tl.bars.append(bar)
    step = _tick_step(total)
    n = 0
    while n * step <= total + 1e-9:
        tl.ticks.append((LABEL + n * step * scale, f"{n * step:g}s"))
        n += 1
    return tl


def _segments(t: TaskResult, t0: datetime, scale: float) -> list[Segment]:
    out = []
    for name, phase in t.phases.items():
        start = _start(phase.start)
        if start is None:
            continue
        x = LABEL + (start - t0).total_seconds() * scale
        out.append(Segment(name, x, max(phase.duration_s * scale, 1.0),
                           f"{name} {phase.duration_s:.2f}s"))  # fmt: skip
    return out


def _tick_step(total: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if total / step <= 10:
            return step
    return 7200.0


def diffstat(result: RunResult, t: TaskResult) -> list[tuple[str, str, str]]:
    """Lines added and deleted per file from git when the repo has the task's commits; else
    the task's changed files with unknown counts."""
    if t.start_commit and t.commit:
        try:
            raw = git.out(
                Path(result.repo), "diff", "--numstat", "--no-renames", t.start_commit, t.commit
            )
        except (RunnerError, OSError):
            raw = None
        if raw is not None:
            rows = [line.split("\t", 2) for line in raw.splitlines() if line.count("\t") >= 2]
            return [(path, added, deleted) for added, deleted, path in rows]
    return [(path, "?", "?") for path in t.files_changed]


def _tail_lines(text: str | None) -> str | None:
    if text is None:
        return None
    lines = text.splitlines()
    return "\n".join(lines[-LOG_LINES:])


def render_html(result: RunResult) -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("runner.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    counts: dict[str, int] = {}
    for t in result.tasks:
        counts[t.status.value] = counts.get(t.status.value, 0) + 1
    cards = [
        Card(
            t,
            COLOURS.get(t.status, "#c62828"),
            diffstat(result, t),
            _tail_lines(log_tail(t.log_path)),
        )
        for t in sorted(result.tasks, key=lambda t: (t.wave, t.id))
    ]
    red = [
        (w.index, v, _tail_lines(log_tail(v.log)))
        for w in result.waves
        for v in w.verify_runs
        if v.result == "red"
    ]
    return env.get_template("report.html.j2").render(
        r=result,
        counts=sorted(counts.items()),
        timeline=timeline(result),
        cards=cards,
        red_verify=red,
        waves=[(w.index, verify_said(w, result)) for w in result.waves],
        branch=result.integration_ref.removeprefix("refs/heads/"),
        row=ROW,
        label_width=LABEL,
    )


def write_html(result: RunResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result), encoding="utf-8")
    return path
