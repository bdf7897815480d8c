"""`runner ps / logs / diff / show / apply / accept`: looking at runs and taking the work home.

Registered onto cli.py's app by `register(app)`, each command behind cli.py's `guarded`
(imported when registering: cli.py imports this module).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer

from runner import git, names
from runner.core.judge import printable
from runner.errors import InputError, RunnerError
from runner.runs import (
    RunView,
    TaskView,
    find_run,
    follow,
    for_terminal,
    list_runs,
    load_run,
    tail,
    without_metrics,
)

RunArg = Annotated[str, typer.Argument(help="A run id, a unique prefix of one, or `latest`.")]
TaskArg = Annotated[str, typer.Argument(help="A task id of the run.", show_default=False)]
RepoOpt = Annotated[Path, typer.Option("--repo", help="The git checkout whose run it is.")]


def register(app: typer.Typer) -> None:
    from runner.cli import guarded

    for name, fn in (
        ("ps", ps_cmd),
        ("logs", logs_cmd),
        ("diff", diff_cmd),
        ("show", show_cmd),
        ("apply", apply_cmd),
        ("accept", accept_cmd),
    ):
        app.command(name)(guarded(_pipe_closed_ok(fn)))


def _pipe_closed_ok(fn: Callable[..., None]) -> Callable[..., None]:
    """`runner logs RUN T | head`: the reader leaving is no error (exit as if by SIGPIPE)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
            sys.stdout.flush()
        except BrokenPipeError:
            # Python flushes stdout again at exit: point it at /dev/null first.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None

    return wrapper


def _root(repo: Path) -> tuple[Path, Path]:
    from runner.coordinator import state_root
    from runner.settings import Settings

    top = git.toplevel(repo)
    return top, state_root(top, Settings().state_dir)


def _run(repo: Path, which: str) -> RunView:
    return load_run(find_run(_root(repo)[1], which))


def _write(data: bytes) -> None:
    """Task output to stdout: as is when piped, control characters escaped on a terminal."""
    out = sys.stdout.buffer
    out.write(for_terminal(data) if sys.stdout.isatty() else data)
    out.flush()


# -- ps ------------------------------------------------------------------------------------


def ps_cmd(
    run: Annotated[
        str | None, typer.Argument(help="A run (id, unique prefix or `latest`): its tasks.")
    ] = None,
    repo: RepoOpt = Path("."),
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only ids.")] = False,
) -> None:
    """The runs of a repo (newest last), or the tasks of one run; also while it runs."""
    if fmt not in ("table", "json"):
        raise InputError(f"--format {printable(fmt)!r}: use table or json")
    root = _root(repo)[1]
    if run is None:
        views = []
        for run_dir in list_runs(root):
            try:
                views.append(load_run(run_dir))
            except RunnerError as exc:  # one unreadable run hides none of the others
                print(f"warning: run {run_dir.name}: {exc}", file=sys.stderr)
        if quiet:
            print("\n".join(v.run_id for v in views))
        elif fmt == "json":
            print(json.dumps([v.document() for v in views], indent=2))
        else:
            print("\n".join(_columns(_runs_table(views))))
        return
    view = load_run(find_run(root, run))
    if quiet:
        print("\n".join(t.id for t in view.tasks))
    elif fmt == "json":
        print(json.dumps(view.document() | {"tasks": [t.document() for t in view.tasks]}, indent=2))
    else:
        print("\n".join(_columns(_tasks_table(view))))


def _runs_table(views: list[RunView]) -> list[list[str]]:
    rows = [["RUN ID", "STATUS", "STARTED", "DURATION", "MERGED", "INTEGRATION BRANCH"]]
    for v in views:
        doc = v.document()
        rows.append(
            [
                v.run_id,
                v.status,
                _when(v.started_at),
                _secs(doc["duration_s"]),
                f"{v.merged}/{len(v.tasks)}",
                v.integration_ref.removeprefix("refs/heads/"),
            ]
        )
    return rows


def _tasks_table(v: RunView) -> list[list[str]]:
    rows = [["WAVE", "TASK", "STATUS", "EXIT", "TIME", "TRIES", "TOKENS", "COST", "WORK"]]
    for t in sorted(v.tasks, key=lambda t: t.wave):
        status = f"{t.status} (accepted)" if t.accepted else t.status
        exit_code = "-" if t.exit_code is None else str(t.exit_code)
        tokens = "-" if t.tokens is None else str(t.tokens)
        rows.append(
            [str(t.wave), t.id, status, exit_code, _secs(t.duration_s), str(t.attempts),
             tokens, _cost(t.cost_usd, t.cost_source), t.kept or "-"]
        )  # fmt: skip
    return rows


def _cost(usd: float | None, source: str | None) -> str:
    """A known cost ("~" when estimated from prices), "?" when its usage has none: never 0."""
    if source is None:
        return "-"
    if usd is None:
        return "?"
    return ("~" if source == "estimated" else "") + f"${usd:.4f}"


def _columns(rows: list[list[str]]) -> list[str]:
    """Plain aligned columns: never wrapped, no colour (Docker's `ps` habit)."""
    rows = [[printable(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}s" if value < 120 else f"{int(value // 60)}m{int(value % 60):02d}s"


def _when(iso: str) -> str:
    return iso[:19].replace("T", " ") + (" UTC" if iso.endswith(("+00:00", "Z")) else "")


# -- logs ----------------------------------------------------------------------------------


def logs_cmd(
    run: RunArg,
    task: Annotated[
        str | None, typer.Argument(help="A task id (without it, with --verify: every verify).")
    ] = None,
    repo: RepoOpt = Path("."),
    follow_: Annotated[
        bool, typer.Option("-f", "--follow", help="Follow a running task until it ends.")
    ] = False,
    tail_n: Annotated[
        int | None, typer.Option("--tail", "-n", help="Only the last N lines.", min=0)
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Verify logs instead: of the TASK's wave (and of TASK verified alone), "
            "or of every wave (--wave N: of one).",
        ),
    ] = False,
    wave: Annotated[int | None, typer.Option(help="With --verify: only this wave.")] = None,
) -> None:
    """A task's log (the runner's internal lines left out); -f follows it while it runs."""
    view = _run(repo, run)
    if verify:
        if follow_:
            raise InputError("--follow is for a task's log; verify logs are shown as they are")
        _verify_logs(view, task, wave, tail_n)
        return
    if task is None:
        raise InputError("which task? runner logs RUN TASK", hint=f"`runner ps {view.run_id} -q`")
    t = view.task(task)
    if follow_ and not t.ended and view.live:
        _follow(view, t, tail_n)
        return
    if t.log_path is None or not Path(t.log_path).exists():
        raise InputError(
            f"task {t.id} has no log ({t.status})",
            hint=f"follow it as it starts: runner logs {view.run_id} {t.id} -f"
            if view.live
            else None,
        )
    data = without_metrics(Path(t.log_path).read_bytes())
    _write(tail(data, tail_n) if tail_n is not None else data)


def _follow(view: RunView, t: TaskView, tail_n: int | None) -> None:
    from runner.runs import task_log_path

    path = Path(t.log_path) if t.log_path else task_log_path(view.run_dir, t.id)
    start = 0
    if tail_n is not None and path.exists():
        data = path.read_bytes()
        _write(tail(without_metrics(data), tail_n))
        start = len(data)
    if not path.exists():
        print(f"(task {t.id} is {t.status}: waiting for it to start)", file=sys.stderr)

    def ended() -> bool:
        now = load_run(view.run_dir)
        return now.task(t.id).ended or not now.live

    for chunk in follow(path, ended, start=start):
        _write(chunk)


def _verify_logs(view: RunView, task: str | None, wave: int | None, tail_n: int | None) -> None:
    logs = view.verify_logs
    if task is not None:
        t = view.task(task)
        logs = [v for v in logs if v.wave == t.wave and v.task in (None, t.id)]
    if wave is not None:
        logs = [v for v in logs if v.wave == wave]
    if not logs:
        which = f" of task {task}" if task else f" of wave {wave}" if wave else ""
        raise InputError(f"run {view.run_id} has no verify log{which} (not reached, or none)")
    for v in logs:
        if len(logs) > 1:
            alone = f" ({v.task} alone)" if v.task else ""
            _write(f"==> wave {v.wave} verify{alone}: {v.result} ({v.log}) <==\n".encode())
        data = Path(v.log).read_bytes() if Path(v.log).exists() else b"(log missing)\n"
        data = without_metrics(data)
        _write(tail(data, tail_n) if tail_n is not None else data)


# -- diff, show ----------------------------------------------------------------------------


def diff_cmd(
    run: RunArg,
    task: TaskArg,
    repo: RepoOpt = Path("."),
    stat: Annotated[bool, typer.Option("--stat", help="Only the diffstat.")] = False,
) -> None:
    """What a task changed: `git diff START..REF` of its start commit and its kept work."""
    top, root = _root(repo)
    view = load_run(find_run(root, run))
    t = view.task(task)
    rev = _work(top, view, t)
    assert t.start_commit is not None
    args = ["diff", *(["--stat"] if stat else []), t.start_commit, rev, "--"]
    _write(git.git(top, *args).stdout)


def _work(top: Path, view: RunView, t: TaskView) -> str:
    """The task's ref (or, if that was removed, its commit)."""
    for rev in (t.ref, t.commit):
        if rev and t.start_commit and git.resolve(top, rev):
            return rev
    if t.commit:
        ref = names.task_ref(view.run_id, t.id)
        raise InputError(f"task {t.id}'s work ({ref}) is not in this repo any more")
    where = f"; what it left is at {t.kept}" if t.kept else ""
    raise InputError(
        f"task {t.id} ({t.status}) has no work under a ref{where}",
        hint=f"its log: runner logs {view.run_id} {t.id}",
    )


def show_cmd(
    run: RunArg,
    task: Annotated[str | None, typer.Argument(help="Only this task's record.")] = None,
    repo: RepoOpt = Path("."),
    inputs: Annotated[
        bool,
        typer.Option(
            "--inputs",
            help="Print what the run pinned (plan, base, images, policies, versions, each "
            "task's definition hash and start commit), one per line.",
        ),
    ] = False,
) -> None:
    """The run's result record (or one task's) as JSON; while it runs, its journal's state."""
    view = _run(repo, run)
    if inputs:
        _print_inputs(view, task)
        return
    doc: Any
    if view.result is not None and view.result.status.value != "running":
        doc = view.result.model_dump(mode="json")
    elif view.state is not None:
        print(
            f"(run {view.run_id} is {view.status}: its state from the journal; "
            "result.json is written when it ends)",
            file=sys.stderr,
        )
        doc = view.state.model_dump(mode="json")
    else:
        assert view.result is not None
        doc = view.result.model_dump(mode="json")
    if task is not None:
        view.task(task)  # a clear error for an unknown task
        doc = next(t for t in doc["tasks"] if t["id"] == task)
    print(json.dumps(doc, indent=2))


def _print_inputs(view: RunView, task: str | None) -> None:
    from runner.core.inputs import describe
    from runner.resume import run_record

    record = run_record(view.run_dir)
    if record.inputs is None:
        raise InputError(
            f"run {view.run_id} pinned no inputs (an older runner made it)",
            hint=f"its base commit: {view.base_commit}",
        )
    lines = describe(record.inputs, {t.id: t.start_commit for t in record.tasks})
    if record.replays:
        lines.insert(0, f"replays: {record.replays}")
    for t in record.tasks:
        if t.key is not None:
            lines.append(f"key: {t.id} {t.key}")
        if t.reused_from is not None:
            r = t.reused_from
            lines.append(f"reused: {t.id} from run {r.run} task {r.task} commit {r.commit}")
    if task is not None:
        view.task(task)  # a clear error for an unknown task
        mine = (["task:", task], ["key:", task], ["reused:", task])
        lines = [ln for ln in lines if ln.split(" ", 2)[:2] in mine]
    print("\n".join(lines))


# -- apply, accept -------------------------------------------------------------------------


def apply_cmd(
    run: RunArg,
    tasks: Annotated[
        list[str] | None,
        typer.Argument(help="Only these tasks' work (merged in wave order).", show_default=False),
    ] = None,
    repo: RepoOpt = Path("."),
    onto: Annotated[
        str | None,
        typer.Option(help="The branch to apply to (default: the current one; new: created)."),
    ] = None,
    squash: Annotated[bool, typer.Option(help="As one commit.")] = False,
) -> None:
    """Take a run's work into your branch (its integration branch, or chosen tasks' work).

    Fast-forwards when it can, else a merge commit; refuses a dirty checkout; a conflict
    changes nothing."""
    from runner.apply import apply

    view = _run(repo, run)
    chosen = tasks or []
    for task_id in chosen:
        t = view.task(task_id)
        if t.status != "merged" and not t.accepted:
            said = f"note: task {t.id} ended {t.status}: applying its work as asked"
            print(said, file=sys.stderr)
    done = apply(repo, view, chosen, onto=onto, squash=squash)
    what = f"task(s) {', '.join(chosen)} of run {view.run_id}" if chosen else f"run {view.run_id}"
    if done.how == "up to date":
        print(f"{done.branch} already has the work of {what}: nothing to do")
        return
    span = f"{done.old[:12]}..{done.new[:12]}" if done.old else f"at {done.new[:12]}"
    print(f"applied {what} to {done.branch}: {done.how}, {span}")
    if done.checked_out:
        print("your checkout moved with it; undo: git reset --keep ORIG_HEAD")


def accept_cmd(run: RunArg, task: TaskArg, repo: RepoOpt = Path(".")) -> None:
    """Accept a reviewed scope violation onto the run's integration branch.

    Its kept work is merged there and recorded in accepted.json beside result.json."""
    from runner.apply import accept

    view = _run(repo, run)
    done = accept(repo, view, task)
    branch = view.integration_ref.removeprefix("refs/heads/")
    print(f"accepted task {done.task} onto {branch}: {done.previous[:12]}..{done.head[:12]}")
    print(f"recorded in {done.record}")
    print("verify did not run on it: check the branch, then take the work home:")
    print(f"  runner apply {view.run_id}")
