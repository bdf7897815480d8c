"""The `runner` command. One error boundary: user errors -> one message and an exit code."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from runner import log as runner_log
from runner.core.plan import Plan, load_plan
from runner.core.results import RunResult
from runner.errors import InputError, RunnerError, Terminated
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
    if prepared.runtime_asks:
        _check_runtimes_if_reachable(prepared, settings, out)
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
) -> None:
    """Run a plan: one sandbox per task, bundles home, merged on runner/<run>/integration."""
    settings = Settings()
    live = not json_out and err.is_terminal
    # On a terminal the live table shows progress; logs would tear it, so only warnings show.
    runner_log.configure(settings.log_format, quiet=json_out or live)
    ended: list[RunResult] = []
    try:
        result = execute(plan, repo, settings, live=live, on_end=ended.append)
    except KeyboardInterrupt:
        if ended:  # the result document still comes out, saying `interrupted`
            _report(ended[0], json_out)
        raise
    _report(result, json_out)
    raise typer.Exit(result.exit_code)


def _report(result: RunResult, json_out: bool) -> None:
    if json_out:
        print(result.model_dump_json(indent=2), flush=True)
    else:
        from runner.report import print_summary

        print_summary(result, Console(highlight=False))


def execute(
    plan: Path,
    repo: Path,
    settings: Settings,
    *,
    live: bool = False,
    on_end: Callable[[RunResult], None] | None = None,
) -> RunResult:
    """Load, pre-flight, run and report one plan (shared by `run` and `demo`)."""
    from runner.coordinator import Coordinator, state_root
    from runner.lock import repo_lock
    from runner.preflight import preflight
    from runner.report import append_usage, write_result
    from runner.sandbox.docker import DockerBackend, connect

    prepared = preflight(load_plan(plan), repo, settings, os.environ)
    client = connect(settings.docker_timeout)
    needed = prepared.images | {settings.collector_image}
    if any(pol.network == "allowlist" for pol in prepared.policies.values()):
        from runner.images import PROXY_TAG

        needed.add(PROXY_TAG)
    missing = sorted(i for i in needed if not _has_image(client, i))
    if missing:
        raise InputError(
            f"image(s) not found: {', '.join(missing)}",
            hint="build the runner's images with `runner images build` (a plan may name yours)",
        )
    check_runtimes(prepared.doc, prepared.runtime_asks, _daemon_runtimes(client))
    backend = DockerBackend(
        client,
        settings.collector_image,
        egress_network=settings.egress_network,
        egress_dns=settings.egress_dns,
    )
    backend.cleanup(None)  # reap what dead runs left behind
    root = state_root(prepared.repo, settings.state_dir)
    coordinator = Coordinator(prepared, backend, root, keep_workspaces=settings.keep_workspaces)
    with repo_lock(root, coordinator.run_id):
        try:
            if live:
                from runner.progress import LiveProgress

                with LiveProgress(err) as progress:
                    coordinator.observer = progress
                    result = coordinator.run()
            else:
                result = coordinator.run()
        finally:
            write_result(coordinator.result)
            append_usage(coordinator.result, root / "usage.jsonl")
            if on_end is not None:
                on_end(coordinator.result)
    return result


def _daemon_runtimes(client: Any) -> dict[str, Any]:
    return dict(client.info().get("Runtimes") or {})


def _check_runtimes_if_reachable(prepared: Prepared, settings: Settings, out: Console) -> None:
    """`runner plan` starts nothing and works without a daemon: it checks runtimes when it can."""
    from runner.sandbox.docker import connect

    try:
        client = connect(settings.docker_timeout)
    except RunnerError:
        asked = sorted({a.runtime for a in prepared.runtime_asks})
        out.print(f"[yellow]not checked:[/] runtime {', '.join(asked)} (no Docker daemon)")
        return
    check_runtimes(prepared.doc, prepared.runtime_asks, _daemon_runtimes(client))


def _has_image(client: Any, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


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
) -> None:
    """Build the runner's images (base without any pull, then the sandbox image on it)."""
    from runner.images import build_images
    from runner.sandbox.docker import connect

    settings = Settings()
    client = connect(settings.docker_timeout)
    for info in build_images(
        client,
        settings.images_dir,
        force=force,
        from_registry=from_registry,
        progress=lambda m: err.print(m, highlight=False),
    ):
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
) -> None:
    """Remove what runs left in Docker (by label) and stale workspaces."""
    from runner.gc import collect_garbage

    for line in collect_garbage(Settings(), repo, all_runs=all_runs, caches=caches):
        print(line)


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


def main() -> None:
    app()
