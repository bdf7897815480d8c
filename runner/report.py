"""What a run leaves for people and machines: summary table, result JSON, usage JSONL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runner import names
from runner.core.results import RunResult, TaskStatus
from runner.reports.facts import complete, verify_said

_STYLE = {
    TaskStatus.MERGED: "green",
    TaskStatus.NO_CHANGES: "green",
    TaskStatus.SKIPPED: "yellow",
}


UNWRAPPED = 1_000_000
"""Console width off a terminal: a line of a log or CI output is never wrapped or cut."""


def unwrapped(console: Console) -> Console:
    """Off a terminal, make the console never wrap (rich assumes 80 columns there)."""
    if not console.file.isatty():
        console.width = UNWRAPPED
        console.soft_wrap = True
    return console


def write_result(result: RunResult) -> Path:
    """Write result.json, first completing it from the run's journal (start times, every
    verify with its log)."""
    complete(result)
    path = names.result_path(Path(result.state_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.model_dump_json(indent=2) + "\n")
    return path


def append_usage(result: RunResult, usage_log: Path) -> None:
    """One line per task, append-only, for cost tracking across runs."""
    usage_log.parent.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    with usage_log.open("a", encoding="utf-8") as fh:
        for t in result.tasks:
            row = {
                "time": now,
                "run_id": result.run_id,
                "repo": result.repo,
                "task": t.id,
                "status": t.status.value,
                "duration_s": t.duration_s,
                "cpu_s": t.cpu_s,
                "peak_memory_bytes": t.peak_memory_bytes,
                "tokens": _tokens(t.out_path),
            }
            fh.write(json.dumps(row) + "\n")


def _tokens(out_path: str | None) -> int | None:
    """Tokens a task reported in RUNNER_OUT/usage.json ({"tokens": N} or input+output)."""
    if not out_path:
        return None
    try:
        data = json.loads((Path(out_path) / "usage.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    usage = data.get("usage", data)
    if isinstance(usage.get("tokens"), int):
        return int(usage["tokens"])
    parts = [usage.get(k) for k in ("input_tokens", "output_tokens")]
    return sum(p for p in parts if isinstance(p, int)) or None


def _mem(n: int | None) -> str:
    return f"{n / 1024**2:.0f} MiB" if n else "-"


_DENIALS_SHOWN = 5  # per task; the result JSON has them all


def _print_denials(result: RunResult, console: Console) -> None:
    """Connections the egress proxy refused, per task (network: allowlist)."""
    for t in result.tasks:
        if not t.denials:
            continue
        shown = [f"{d.host}:{d.port}" if d.port else d.host for d in t.denials[:_DENIALS_SHOWN]]
        more = len(t.denials) - len(shown)
        tail = f" and {more} more (see result.json)" if more else ""
        console.print(
            f"[yellow]task {t.id}: egress denied {len(t.denials)}x:[/] {', '.join(shown)}{tail}",
            soft_wrap=True,
        )


def print_summary(result: RunResult, console: Console) -> None:
    unwrapped(console)
    table = Table(title=f"run {result.run_id}: {result.status.value}", title_justify="left")
    for col in ("wave", "task", "status", "exit", "time", "cpu", "peak mem", "files", "reason"):
        table.add_column(col, overflow="fold")
    for t in sorted(result.tasks, key=lambda t: t.wave):
        style = _STYLE.get(t.status, "red")
        table.add_row(
            str(t.wave),
            t.id,
            f"[{style}]{t.status.value}[/]",
            "-" if t.exit_code is None else str(t.exit_code),
            "-" if t.duration_s is None else f"{t.duration_s:.1f}s",
            "-" if t.cpu_s is None else f"{t.cpu_s:.2f}s",
            _mem(t.peak_memory_bytes),
            str(len(t.files_changed)),
            escape(t.reason or ""),
        )
    console.print(table)
    for w in result.waves:
        console.print(f"wave {w.index}: {escape(verify_said(w, result))}", soft_wrap=True)
    _print_denials(result, console)
    iso = result.isolation
    if iso is not None:
        if iso.unchanged:
            console.print("your checkout: unchanged (HEAD, branch, index, work tree)")
        else:
            console.print(
                f"[bold red]your checkout CHANGED during the run: {', '.join(iso.changed)}[/]"
            )
    for said in result.warnings:
        console.print(f"[bold red]warning:[/] {escape(said)}", soft_wrap=True)
    if result.error:
        console.print(f"[red]error:[/] {escape(result.error)}")
    if result.usage is not None:
        u = result.usage
        cost = f"${u.cost_usd:.4f} ({u.cost_source})" if u.cost_usd is not None else "unknown"
        console.print(f"usage: {u.tokens or 0} tokens, cost {cost}   (runner costs for more)")
    reused = [t.id for t in result.tasks if t.reused_from is not None]
    if reused:
        s = result.saved
        said = "nothing recorded"
        if s is not None:
            cost = f"${s.cost_usd:.4f} ({s.cost_source})" if s.cost_usd is not None else "unknown"
            said = f"{s.tokens or 0} tokens, cost {cost}"
        console.print(f"reused {len(reused)} task(s) ({', '.join(reused)}): saved {said}")
    if result.replays:
        console.print(f"replays run {result.replays}")
    branch = result.integration_ref.removeprefix("refs/heads/")
    console.print(f"integration branch: {branch} at {(result.integration_commit or '-')[:12]}")
    console.print(f"  inspect: git -C {result.repo} log --oneline --graph {branch}", soft_wrap=True)
    console.print(f"result: {Path(result.state_dir) / 'result.json'}", soft_wrap=True)
    from runner.runs import next_steps  # runs reads results: imported here, not at the top

    steps = next_steps(result)
    if steps:
        console.print("next:")
        for step in steps:
            console.print(f"  {escape(step)}", soft_wrap=True, highlight=False)
