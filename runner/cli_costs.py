"""`runner costs`: tokens and cost of runs, per task, model or run, from their result.json.

A task's `usage` in result.json is used when there; otherwise (runs made before the runner
kept it) it is parsed again from the task's copied-out RUNNER_OUT. Costs not reported by the
agent are (re-)estimated with the prices file as it is now.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from runner import names
from runner.core.results import RunResult
from runner.core.usage import (
    Prices,
    Tokens,
    Usage,
    by_model,
    load_prices,
    priced,
    prices_path,
    total,
    usage_for,
)
from runner.errors import InputError

By = Literal["task", "model", "run"]
_BY: dict[str, By] = {"task": "task", "model": "model", "run": "run"}


@dataclass(frozen=True)
class TaskUsage:
    run_id: str
    task: str
    status: str
    usage: Usage


def task_usages(result: RunResult, prices: Prices) -> list[TaskUsage]:
    """Each task's usage (None-usage tasks left out), priced with the prices of now."""
    out = []
    for t in result.tasks:
        usage = t.usage
        if usage is None and t.out_path:
            usage = usage_for(Path(t.out_path), None, prices)
        elif usage is not None and usage.cost_source != "reported":
            usage = priced(usage, prices)
        if usage is not None:
            out.append(TaskUsage(result.run_id, t.id, t.status.value, usage))
    return out


_COLS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "tokens")


def _numbers(u: Tokens, parts: list[Tokens] | None = None) -> dict[str, Any]:
    """The token columns and cost; with parts (what u sums), `cost_usd_known` too: the sum of
    the parts whose cost is known (a lower bound when cost_usd is unknown)."""
    row = u.model_dump(include={*_COLS, "cost_usd", "cost_source"})
    if parts is not None:
        known = [p.cost_usd for p in parts if p.cost_usd is not None]
        row["cost_usd_known"] = round(sum(known), 10) if known else None
    return row


def rows(usages: list[TaskUsage], by: By) -> list[dict[str, Any]]:
    if by == "task":
        return [
            {
                "run_id": u.run_id,
                "task": u.task,
                "status": u.status,
                "model": u.usage.model,
                "turns": u.usage.turns,
                "complete": u.usage.complete,
                "source": u.usage.source,
                **_numbers(u.usage),
            }
            for u in usages
        ]
    groups: dict[str, list[Tokens]] = {}
    tasks: dict[str, set[tuple[str, str]]] = {}
    for u in usages:
        parts: list[Tokens] = by_model(u.usage) if by == "model" else [u.usage]
        for p in parts:
            key = (p.model or "unknown") if by == "model" else u.run_id
            groups.setdefault(key, []).append(p)
            tasks.setdefault(key, set()).add((u.run_id, u.task))
    return [
        {
            by if by == "model" else "run_id": key,
            "tasks": len(tasks[key]),
            **_numbers(total(ps), ps),
        }
        for key, ps in groups.items()
    ]


def load_results(root: Path, which: str | None) -> list[RunResult]:
    from runner.status import find_run

    if which is not None:
        dirs = [find_run(root, which)]
    else:
        runs_dir = names.runs_dir(root)
        dirs = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    results = []
    for d in dirs:
        path = names.result_path(d)
        try:
            results.append(RunResult.model_validate_json(path.read_bytes()))
        except FileNotFoundError:
            if which is not None:
                raise InputError(
                    f"run {d.name} has no result.json yet ({path})",
                    hint="it is running or ended before writing one: see `runner status`",
                ) from None
        except (OSError, ValidationError) as exc:
            if which is not None:
                raise InputError(f"{path}: not a result document: {exc}") from None
    return results


def _money(u: dict[str, Any]) -> str:
    if u["cost_usd"] is None:
        known = u.get("cost_usd_known")
        return f"unknown (${known:.4f} known)" if known else "unknown"
    return f"${u['cost_usd']:.4f}" + ("" if u["cost_source"] == "reported" else " (estimated)")


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def print_table(
    by: By, table_rows: list[dict[str, Any]], grand: dict[str, Any], out: Console
) -> None:
    keys = {
        "task": ["run_id", "task", "status", "model"],
        "model": ["model", "tasks"],
        "run": ["run_id", "tasks"],
    }[by]
    table = Table(box=None, pad_edge=False)
    for k in keys:
        table.add_column(k.replace("_", " "))
    for label in ("input", "cache read", "cache write", "output", "cost"):
        table.add_column(label, justify="right")
    for r in [*table_rows, grand]:
        cells = [str(r.get(k) if r.get(k) is not None else "-") for k in keys]
        if r is grand:
            cells = ["total", *[""] * (len(keys) - 1)]
        incomplete = r.get("complete") is False
        cost = _money(r) + (" (cut off)" if incomplete else "")
        table.add_row(*cells, *[_n(r[c]) for c in _COLS[:4]], cost)
    out.print(table)


def register(app: typer.Typer) -> None:
    @app.command("costs")
    def costs_cmd(
        run: Annotated[
            str | None,
            typer.Argument(help="A run id, a unique prefix of one, or `latest`; default: all."),
        ] = None,
        by: Annotated[str, typer.Option("--by", help="Rows per task, model or run.")] = "task",
        repo: Annotated[Path, typer.Option(help="The git checkout whose runs.")] = Path("."),
        json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Tokens and cost of runs: reported by the agent, estimated from your prices file
        (RUNNER_PRICES), or unknown (never shown as 0)."""
        from runner.cli import guarded

        guarded(_costs)(run, by, repo, json_out)


def _costs(run: str | None, by: str, repo: Path, json_out: bool) -> None:
    from runner import git
    from runner.coordinator import state_root
    from runner.settings import Settings

    kind = _BY.get(by)
    if kind is None:
        raise InputError(f"--by {by!r}: give task, model or run")
    settings = Settings()
    path = prices_path(settings.prices, os.environ)
    if settings.prices is not None and not path.is_file():
        raise InputError(f"RUNNER_PRICES={path}: no such file", hint="unset it or create it")
    prices = load_prices(path)
    results = load_results(state_root(git.toplevel(repo), settings.state_dir), run)
    usages = [u for r in results for u in task_usages(r, prices)]
    table_rows = rows(usages, kind)
    grand = _numbers(total(u.usage for u in usages), [u.usage for u in usages])
    if json_out:
        doc = {
            "by": by,
            "runs": [r.run_id for r in results],
            "rows": table_rows,
            "total": grand,
            "prices": str(path) if path.is_file() else None,
        }
        print(json.dumps(doc, indent=2), flush=True)
        return
    out = Console(highlight=False)
    if not usages:
        out.print("no usage recorded in these runs (agent presets and usage.json report it)")
        return
    print_table(kind, table_rows, grand, out)
    if grand["cost_source"] == "unknown":
        out.print(
            f"[yellow]some costs are unknown:[/] the agent did not report them; add their "
            f"models to {path} (USD per million tokens) to estimate them"
        )
