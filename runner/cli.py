"""The `runner` command. One error boundary: user errors -> one message and an exit code."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from runner import cli_costs, cli_runs, names
from runner import log as runner_log
from runner.core.plan import Plan, load_plan
from runner.core.results import RunResult
from runner.errors import InputError, RunnerError, SandboxError, Terminated
from runner.runtimes import check_runtimes
from runner.settings import Settings

if TYPE_CHECKING:
    from runner.preflight import Prepared

app = typer.Typer(
    help="Run a plan's tasks in parallel, each in its own hardened Docker sandbox; "
    "bring the work home as git bundles and merge it on an integration branch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
images_app = typer.Typer(help="The runner's own images (built here; nothing is pulled).")
app.add_typer(images_app, name="images")
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def guarded(fn: F) -> F:
    """The one error handler of every command."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return fn(*args, **kwargs)
        except RunnerError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except Terminated:
            err.print("terminated: sandboxes removed, finished work kept under refs/runner/")
            raise typer.Exit(143) from None
        except KeyboardInterrupt:
            err.print("interrupted: sandboxes removed, finished work kept under refs/runner/")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except ValidationError as exc:
            if exc.title != Settings.__name__:  # a model of the runner's own: a bug
                _crash()
            # Settings are read from RUNNER_* variables when a command begins.
            said = _settings_error(exc)
            err.print(f"[red]error:[/] {escape(str(said))}", highlight=False, soft_wrap=True)
            raise typer.Exit(said.exit_code) from None
        except Exception:
            _crash()

    return wrapper  # type: ignore[return-value]


def _settings_error(exc: ValidationError) -> InputError:
    problems = []
    for e in exc.errors():
        name = "RUNNER_" + str(e["loc"][0]).upper() if e["loc"] else "a RUNNER_ variable"
        problems.append(f"environment variable {name}: {e['msg'].removeprefix('Value error, ')}")
    return InputError("; ".join(problems), hint="fix or unset it (`env | grep ^RUNNER_`)")


def _crash() -> NoReturn:
    """An exception that is no user's error: a bug. Its traceback goes to a file."""
    crash = Path(tempfile.gettempdir()) / f"runner-crash-{os.getpid()}.log"
    crash.write_text(traceback.format_exc())
    err.print(f"internal error: {sys.exc_info()[1]!r}; traceback in {crash}")
    raise typer.Exit(3) from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("runner")
    except PackageNotFoundError:  # run from a checkout that was never installed
        from runner import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        print(f"runner {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """The options of `runner` itself (the app's help says what it does)."""


PlanArg = Annotated[Path, typer.Argument(help="The plan file (YAML).", show_default=False)]
RepoOpt = Annotated[Path, typer.Option("--repo", help="The git checkout to run on.")]


@app.command("plan")
@guarded
def plan_cmd(plan: PlanArg, repo: RepoOpt = Path(".")) -> None:
    """Validate a plan and print the dispatch plan (waves, scopes, overlaps); start nothing."""
    from runner.preflight import preflight

    settings = Settings()
    prepared = preflight(load_plan(plan), repo, settings, os.environ)
    d = prepared.dispatch
    out = Console()
    _check_daemon_if_reachable(prepared, settings, out)
    out.print(
        f"plan {plan}: {len(prepared.doc.plan.tasks)} tasks in {len(d.waves)} waves, "
        f"base {prepared.doc.plan.base} = {prepared.base_commit[:12]}"
    )
    for i, wave in enumerate(d.waves):
        out.print(f"wave {i + 1}:")
        for task_id in wave:
            deps = prepared.doc.plan.task(task_id).depends_on
            after = f"  after {', '.join(deps)}" if deps else ""
            out.print(f"  {task_id}: {prepared.scopes[task_id].describe()}{after}")
            policy = prepared.policies[task_id]
            if policy.network == "allowlist":
                allow = ", ".join(f"{r.host}:{','.join(map(str, r.ports))}" for r in policy.allow)
                said = f"    egress only to {escape(allow)} (through the run's proxy)"
                out.print(said, soft_wrap=True)
    for task_id, after in d.moved:
        out.print(f"serialized: {task_id} waits for {after} (overlapping scopes)")
    for overlap in d.overlaps:
        out.print(f"[yellow]overlap (allowed):[/] {overlap.describe()}")
    for said in prepared.warnings():
        out.print(f"[bold red]warning:[/] {escape(said)}", soft_wrap=True)


@app.command("run")
@guarded
def run_cmd(
    plan: PlanArg,
    repo: RepoOpt = Path("."),
    json_out: Annotated[bool, typer.Option("--json", help="Print the result JSON alone.")] = False,
    junit: Annotated[
        Path | None,
        typer.Option("--junit", help="Also write a JUnit XML report here.", show_default=False),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write a one-file HTML report here.", show_default=False),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="Sandbox backend: docker (containers) or swarm (services on a Docker Swarm); "
            "default: RUNNER_BACKEND, else docker.",
            show_default=False,
        ),
    ] = None,
    reuse: Annotated[
        bool,
        typer.Option(
            "--reuse",
            help="Do not run a task whose input key matches a task merged in an earlier run: "
            "re-apply that work instead (as the plan's `reuse: true`).",
        ),
    ] = False,
) -> None:
    """Run a plan: one sandbox per task, bundles home, merged on runner/<run>/integration.

    On GitHub Actions (GITHUB_ACTIONS=true) it also masks the values of the variables passed to
    tasks, annotates the plan with failed tasks and violations, and writes a job summary."""
    from runner.reports import github
    from runner.sandbox.factory import BACKENDS

    if backend is not None and backend not in BACKENDS:
        raise InputError(
            f"--backend {backend!r} is not a sandbox backend",
            hint=f"use one of: {', '.join(sorted(BACKENDS))}",
        )
    settings = Settings(backend=backend) if backend else Settings()
    if github.active(os.environ):  # masks before anything else is printed
        github.emit(github.mask_commands(load_plan(plan), os.environ), sys.stderr)
    for path in (junit, html):
        if path is not None and path.is_dir():
            raise InputError(f"{path} is a directory", hint="give the report's file name")
    _run_and_report(plan, repo, settings, json_out, junit, html, reuse=True if reuse else None)


def _run_and_report(
    plan: Path | None,
    repo: Path,
    settings: Settings,
    json_out: bool,
    junit: Path | None = None,
    html: Path | None = None,
    **options: Any,
) -> NoReturn:
    """`execute` with progress on stderr, then the reports and the result; exits with the
    run's code (3 when a report could not be written). Shared by run, resume, rerun, retry."""
    from runner.progress import interactive

    live = interactive(err)
    # Progress shows every state change on stderr; logs add only warnings, unless a log format
    # was asked for (RUNNER_LOG_FORMAT).
    runner_log.configure(settings.log_format, quiet=settings.log_format == "auto")
    ended: list[RunResult] = []
    try:
        result = execute(plan, repo, settings, live=live, on_end=ended.append, **options)
    except KeyboardInterrupt:
        if ended:  # the result document (and reports) still come out, saying `interrupted`
            _report(ended[0], json_out, junit, html)
        raise
    failed = _report(result, json_out, junit, html)
    raise typer.Exit(result.exit_code or (3 if failed else 0))


@app.command("shell", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@guarded
def shell_cmd(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id, a unique prefix of one, or `latest`.")],
    task: Annotated[str, typer.Argument(help="The task whose sandbox to make again.")],
    at: Annotated[
        str, typer.Option("--at", help="start: the task's start commit; result: its work.")
    ] = "start",
    repo: RepoOpt = Path("."),
) -> None:
    """Run a command (after --) in a fresh sandbox made as the task's: image, policy, limits,
    network, shared mount and cache, on a clone of its start or result; removed after."""
    from runner.shell import run_shell

    if at not in ("start", "result"):
        raise InputError(f"--at {at}: say start or result")
    code, output = run_shell(repo, run, task, at, list(ctx.args), Settings())
    sys.stdout.write(output)
    raise typer.Exit(code)


ResumeBackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="Sandbox backend; default: the one the run was pinned with (another is refused).",
        show_default=False,
    ),
]


def _pinned_settings(backend: str | None) -> tuple[Settings, str | None]:
    """Settings of a resume or retry, and the backend asked for (--backend, else
    RUNNER_BACKEND; None: neither), which `execute` checks against the run's pin."""
    from runner.sandbox.factory import BACKENDS

    if backend is not None and backend not in BACKENDS:
        raise InputError(
            f"--backend {backend!r} is not a sandbox backend",
            hint=f"use one of: {', '.join(sorted(BACKENDS))}",
        )
    settings = Settings(backend=backend) if backend else Settings()
    return settings, backend or os.environ.get("RUNNER_BACKEND") or None


@app.command("resume")
@guarded
def resume_cmd(
    run: Annotated[str, typer.Argument(help="Run id, a unique prefix of one, or `latest`.")],
    repo: RepoOpt = Path("."),
    json_out: Annotated[bool, typer.Option("--json", help="Print the result JSON alone.")] = False,
    backend: ResumeBackendOpt = None,
) -> None:
    """Continue an interrupted or killed run: judged tasks stay, the rest run, waves merge."""
    settings, asked = _pinned_settings(backend)
    _run_and_report(None, repo, settings, json_out, resume=run, backend_asked=asked)


@app.command("rerun")
@guarded
def rerun_cmd(
    run: Annotated[str, typer.Argument(help="Run id, a unique prefix of one, or `latest`.")],
    repo: RepoOpt = Path("."),
    allow_drift: Annotated[
        str,
        typer.Option(
            "--allow-drift",
            help="Inputs that may differ from the pinned ones, comma-separated: image, policy.",
        ),
    ] = "",
    json_out: Annotated[bool, typer.Option("--json", help="Print the result JSON alone.")] = False,
) -> None:
    """Run a finished run's plan (its own copy) again as a new run, on its pinned base commit,
    images and policies; refused when one of them is gone or changed (see --allow-drift).
    Every task runs; the new result names the run it replays."""
    allow = [k.strip() for k in allow_drift.split(",") if k.strip()]
    _run_and_report(None, repo, Settings(), json_out, rerun=run, allow_drift=allow)


@app.command("retry")
@guarded
def retry_cmd(
    run: Annotated[str, typer.Argument(help="Run id, a unique prefix of one, or `latest`.")],
    tasks: Annotated[list[str], typer.Argument(help="The tasks to run again.")],
    repo: RepoOpt = Path("."),
    json_out: Annotated[bool, typer.Option("--json", help="Print the result JSON alone.")] = False,
    backend: ResumeBackendOpt = None,
) -> None:
    """Run tasks of a finished run again, in that run, as their next attempt; what depends on
    them runs too, and everything merges onto the run's integration branch."""
    settings, asked = _pinned_settings(backend)
    _run_and_report(None, repo, settings, json_out, resume=run, retry=tasks, backend_asked=asked)


def _report(
    result: RunResult, json_out: bool, junit: Path | None = None, html: Path | None = None
) -> bool:
    """Write the reports, then print the result; True when a report could not be written."""
    from runner.reports import github

    failed = False
    for problem in _write_reports(result, junit, html):
        err.print(f"[red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True)
        failed = True
    if github.active(os.environ):
        doc = None
        with contextlib.suppress(RunnerError):  # the plan may have moved since: no lines then
            doc = load_plan(Path(result.plan))
        github.emit(github.error_commands(result, doc, os.environ), sys.stderr)
        try:
            github.append_summary(result, os.environ)
        except OSError as exc:
            err.print(f"[red]error:[/] cannot write the job summary: {escape(str(exc))}")
            failed = True
    if json_out:
        print(result.model_dump_json(indent=2), flush=True)
    else:
        from runner.report import print_summary

        print_summary(result, Console(highlight=False))
    return failed


def _write_reports(result: RunResult, junit: Path | None, html: Path | None) -> list[str]:
    """Write the asked-for reports; one line per report that could not be written."""
    from runner.reports.html import write_html
    from runner.reports.junit import write_junit

    problems = []
    for path, write in ((junit, write_junit), (html, write_html)):
        if path is None:
            continue
        try:
            write(result, path)
        except OSError as exc:
            problems.append(f"cannot write the report {path}: {exc.strerror or exc}")
    return problems


def execute(
    plan: Path | None,
    repo: Path,
    settings: Settings,
    *,
    live: bool = False,
    on_end: Callable[[RunResult], None] | None = None,
    resume: str | None = None,
    retry: Sequence[str] = (),
    reuse: bool | None = None,
    rerun: str | None = None,
    allow_drift: Sequence[str] = (),
    backend_asked: str | None = None,
) -> RunResult:
    """Load, pre-flight, run and report one plan (shared by `run`, `resume`, `rerun` and
    `demo`)."""
    from runner.coordinator import Coordinator, state_root
    from runner.core.usage import load_prices, prices_path
    from runner.inputs import pin_inputs
    from runner.lock import repo_lock
    from runner.preflight import preflight
    from runner.report import append_usage, write_result
    from runner.sandbox.factory import make_backend

    replay, again, pinned, replays = None, list[str](), None, None
    if resume is not None:
        from runner.resume import prepare_resume, resume_backend

        prepared, replay, again = prepare_resume(repo, resume, settings, os.environ, retry)
        # The run goes on where its work is: on the backend it was pinned with.
        chosen = resume_backend(replay.result, backend_asked)
        if chosen is not None and chosen != settings.backend:
            settings = settings.model_copy(update={"backend": chosen})
    elif rerun is not None:
        from runner.resume import prepare_rerun

        prepared, replays, pinned = prepare_rerun(repo, rerun, settings, os.environ)
        reuse = False  # a replay runs every task again
    else:
        assert plan is not None
        prepared = preflight(load_plan(plan), repo, settings, os.environ)
    backend = make_backend(settings)
    egress = any(pol.network == "allowlist" for pol in prepared.policies.values())
    missing = backend.missing_images(prepared.images | backend.required_images(egress=egress))
    if missing:
        raise InputError(
            f"image(s) not found: {', '.join(missing)}",
            hint="build the runner's images with `runner images build` (a plan may name yours)",
        )
    check_runtimes(prepared.doc, prepared.runtime_asks, backend.runtimes())
    if pinned is not None and replays is not None:
        from runner.resume import check_drift

        now = pin_inputs(prepared, backend, settings.backend)
        for said in check_drift(replays, pinned, now, allow_drift):
            err.print(f"[yellow]note:[/] {escape(said)}", soft_wrap=True)
    backend.cleanup(None)  # reap what dead runs left behind
    root = state_root(prepared.repo, settings.state_dir)
    coordinator = Coordinator(
        prepared,
        backend,
        root,
        keep_workspaces=settings.keep_workspaces,
        resume=replay,
        retry=again,
        prices=load_prices(prices_path(settings.prices, os.environ)),
        backend_name=settings.backend,
        replays=replays,
        reuse=reuse,
    )
    with repo_lock(root, coordinator.run_id):
        try:
            from runner.progress import Progress

            # On a terminal a live table, elsewhere one line per state change: both on stderr.
            journal = names.journal_path(coordinator.run_dir)
            with Progress(err, journal, live=live) as progress:
                coordinator.observer = progress
                result = coordinator.run()
            # Leave the object store as tidy as a `git fetch` would (never fails the run).
            from runner.retention import after_run

            tidied = after_run(prepared.repo, root, coordinator.run_dir)
            if tidied.note:
                err.print(f"[yellow]note:[/] {escape(tidied.note)}", soft_wrap=True)
        finally:
            write_result(coordinator.result)
            append_usage(coordinator.result, names.usage_log(root))
            if on_end is not None:
                on_end(coordinator.result)
    return result


def _check_daemon_if_reachable(prepared: Prepared, settings: Settings, out: Console) -> None:
    """`runner plan` starts nothing and works without a daemon: it checks the runtimes and
    images the plan asks for when it can, and says what it could not check."""
    from runner.images import check_plan_images
    from runner.sandbox.factory import make_backend

    try:
        backend = make_backend(settings)
    except SandboxError:
        if prepared.runtime_asks:
            asked = sorted({a.runtime for a in prepared.runtime_asks})
            out.print(f"[yellow]not checked:[/] runtime {', '.join(asked)} (no Docker daemon)")
        images = sorted(prepared.images)
        said = f"image{'s' if len(images) > 1 else ''} {', '.join(images)}"
        out.print(f"[yellow]not checked:[/] {said} (no Docker daemon)")
        return
    try:
        check_runtimes(prepared.doc, prepared.runtime_asks, backend.runtimes())
        egress = any(pol.network == "allowlist" for pol in prepared.policies.values())
        own = backend.required_images(egress=egress)
        missing = set(backend.missing_images(prepared.images | own))
        check_plan_images(prepared.doc, sorted(own), lambda i: i not in missing)
    finally:
        backend.close()


@app.command("status")
@guarded
def status_cmd(
    run: Annotated[
        str, typer.Argument(help="A run id, a unique prefix of one, or `latest`.")
    ] = "latest",
    repo: Annotated[Path, typer.Option(help="The git checkout whose run it is.")] = Path("."),
    json_out: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> None:
    """A run's state from its journal: each task's state and where its work is (also while
    another process runs it)."""
    from runner import git
    from runner.coordinator import state_root
    from runner.status import load_status, print_status

    status = load_status(state_root(git.toplevel(repo), Settings().state_dir), run)
    if json_out:
        print(json.dumps(status.document(), indent=2), flush=True)
    else:
        print_status(status, Console(highlight=False))


@app.command("report")
@guarded
def report_cmd(
    run: Annotated[
        str, typer.Argument(help="A run id, a unique prefix of one, or `latest`.")
    ] = "latest",
    repo: Annotated[Path, typer.Option(help="The git checkout whose run it is.")] = Path("."),
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Write a JUnit XML report here.")
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a one-file HTML report here.")
    ] = None,
) -> None:
    """Make the reports of a finished run from its result document (result.json)."""
    from pydantic import ValidationError

    from runner import git
    from runner.coordinator import state_root
    from runner.reports.facts import complete
    from runner.status import find_run

    if junit is None and html is None:
        raise InputError("no report asked for", hint="give --junit PATH and/or --html PATH")
    run_dir = find_run(state_root(git.toplevel(repo), Settings().state_dir), run)
    path = names.result_path(run_dir)
    try:
        result = RunResult.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise InputError(
            f"run {run_dir.name} has no result document ({path}): it is still running, or died",
            hint=f"`runner status {run_dir.name}` shows its state from the journal",
        ) from None
    except (OSError, ValidationError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not a result document of this runner"
        raise InputError(f"cannot read {path}: {why}") from None
    complete(result)
    problems = _write_reports(result, junit, html)
    if problems:
        raise RunnerError("; ".join(problems))
    for written in (junit, html):
        if written is not None:
            print(f"wrote {written}")


@app.command("schema")
@guarded
def schema_cmd(
    result: Annotated[bool, typer.Option("--result", help="The result document's schema.")] = False,
) -> None:
    """Print the JSON Schema of the plan file (or of the result document)."""
    model = RunResult if result else Plan
    print(json.dumps(model.model_json_schema(), indent=2))


@images_app.command("build")
@guarded
def images_build(
    force: Annotated[bool, typer.Option(help="Rebuild even if up to date.")] = False,
    from_registry: Annotated[
        bool, typer.Option(help="Base image FROM a registry instead of mmdebstrap.")
    ] = False,
    dockerfile: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Build your own image from this Dockerfile (FROM runner/sandbox:1; its "
            "folder is the build context) instead of the runner's.",
            show_default=False,
        ),
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option(
            help="Name of the image built --from (a plan's `image:`).", show_default=False
        ),
    ] = None,
) -> None:
    """Build the runner's images (base without any pull, then the sandbox image on it), or
    with --from your project's image on top of them (nothing pulled)."""
    from runner.images import build_images, build_user_image
    from runner.sandbox.docker import connect

    if (dockerfile is None) != (tag is None):
        raise InputError(
            "--from and --tag go together", hint="runner images build --from Dockerfile --tag NAME"
        )
    if dockerfile is not None and from_registry:
        raise InputError("--from-registry builds the runner's base; it does not go with --from")
    settings = Settings()
    client = connect(settings.docker_timeout)
    say = lambda m: err.print(m, highlight=False)  # noqa: E731
    if dockerfile is not None and tag is not None:
        infos = [build_user_image(client, dockerfile, tag, force=force, progress=say)]
    else:
        infos = build_images(
            client, settings.images_dir, force=force, from_registry=from_registry, progress=say
        )
    for info in infos:
        state = "built" if info.built else "up to date"
        print(f"{info.tag}: {state} ({info.id[:19]})")


@app.command("gc")
@guarded
def gc_cmd(
    repo: Annotated[
        Path | None, typer.Option(help="Also remove stale run state of this repo.")
    ] = None,
    all_runs: Annotated[
        bool,
        typer.Option("--all", help="Also runs whose owner is alive; with --caches: every repo's."),
    ] = False,
    caches: Annotated[
        bool, typer.Option(help="Also remove the cache volumes of --repo (or --all repos).")
    ] = False,
    older_than: Annotated[
        str | None,
        typer.Option(help="With --caches: only caches not used for this long (14d, 12h)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Remove nothing: list the caches with sizes, and what would go.")
    ] = False,
) -> None:
    """Remove what runs left in Docker (by label) and stale workspaces; with --caches, cache
    volumes (all of the repo's, or those unused for --older-than)."""
    from runner.gc import collect_garbage

    age = None
    if older_than is not None:
        from runner.retention import parse_age

        age = parse_age(older_than)
    lines = collect_garbage(
        Settings(), repo, all_runs=all_runs, caches=caches, older_than=age, dry_run=dry_run
    )
    for line in lines:
        print(line)


YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@app.command("rm")
@guarded
def rm_cmd(
    runs: Annotated[
        list[str], typer.Argument(help="Run ids, unique prefixes of them, or `latest`.")
    ],
    repo: Annotated[Path, typer.Option(help="The git checkout whose runs they are.")] = Path("."),
    yes: YesOpt = False,
) -> None:
    """Remove runs: their refs, integration branch, state dir and logs (asks unless --yes).
    A run whose coordinator still runs is refused."""
    from runner import git
    from runner.coordinator import state_root
    from runner.retention import describe, find, list_runs, refuse_removal, remove_run

    top = git.toplevel(repo)
    root = state_root(top, Settings().state_dir)
    entries = list_runs(top, root)
    chosen = list({e.run_id: e for e in (find(entries, which) for which in runs)}.values())
    for entry in chosen:
        if why := refuse_removal(top, entry):
            raise InputError(why, hint="wait for it to end, or switch that checkout to a branch")
    _confirm([describe(e) for e in chosen], yes)
    for entry in chosen:
        remove_run(top, root, entry)
        print(f"removed run {entry.run_id}")


@app.command("prune")
@guarded
def prune_cmd(
    older_than: Annotated[
        str, typer.Option(help="Remove runs that ended longer ago than this (7d, 12h, 2w).")
    ],
    repo: Annotated[Path, typer.Option(help="The git checkout whose runs they are.")] = Path("."),
    caches: Annotated[
        bool, typer.Option(help="Also the repo's cache volumes not used for that long.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="List what would go; remove nothing.")] = False,
    yes: YesOpt = False,
) -> None:
    """Remove finished runs older than --older-than (refs, branch, state, logs). Runs in
    progress, and runs that died without an end, are kept."""
    from runner import git
    from runner.coordinator import state_root
    from runner.retention import describe, list_runs, now, parse_age, prunable, remove_run

    age = parse_age(older_than)
    top = git.toplevel(repo)
    settings = Settings()
    root = state_root(top, settings.state_dir)
    remove, notes = prunable(list_runs(top, root), now() - age)
    for note in notes:
        print(note)
    if not remove:
        print(f"no finished run older than {older_than}")
    elif dry_run:
        for entry in remove:
            print("would remove " + describe(entry))
    else:
        _confirm([describe(e) for e in remove], yes)
        for entry in remove:
            remove_run(top, root, entry)
            print(f"removed run {entry.run_id}")
    if caches:
        from runner.gc import collect_garbage

        lines = collect_garbage(
            settings, top, all_runs=False, caches=True, older_than=age, dry_run=dry_run,
            only_caches=True,
        )  # fmt: skip
        for line in lines:
            print(line)


def _confirm(what: list[str], yes: bool) -> None:
    """List what goes, then ask (on a terminal); off a terminal, --yes is required."""
    for line in what:
        print(line)
    if yes:
        return
    if not sys.stdin.isatty():
        raise InputError("not removed: confirmation needed", hint="pass --yes to remove them")
    if not typer.confirm(f"remove {len(what)} run(s)?", default=False):
        raise typer.Exit(1)


@app.command("demo")
@guarded
def demo_cmd(
    keep: Annotated[
        Path | None, typer.Option(help="Create the sample here (default: a temp dir).")
    ] = None,
) -> None:
    """The built-in main job: a sample repo, a 4-task plan in 3 waves, run for real, verified."""
    from runner.demo import run_demo

    raise typer.Exit(run_demo(keep, Settings()))


COMPLETE_VAR = "_RUNNER_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


@app.command("completion")
@guarded
def completion_cmd(
    shell: Annotated[str, typer.Argument(help="bash, zsh or fish.", show_default=False)],
) -> None:
    """Print the completion script of a shell (where to put it: the README, Install)."""
    from typer._completion_shared import get_completion_script

    if shell not in SHELLS:
        raise InputError(f"no completion for shell {shell!r}", hint=f"one of {', '.join(SHELLS)}")
    print(get_completion_script(prog_name="runner", complete_var=COMPLETE_VAR, shell=shell))


cli_runs.register(app)  # ps, logs, diff, show, apply, accept
cli_costs.register(app)  # costs


def main() -> None:
    from typer._completion_classes import completion_init

    # Typer's completion protocol (the scripts `runner completion` prints speak it); typer
    # registers it only with its own --install-completion, which this app leaves out.
    completion_init()
    app(prog_name="runner")
