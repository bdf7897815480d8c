"""The plan file: what a user writes, as frozen pydantic models, loaded with file:line errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from runner.core import agents
from runner.core.scope import check_glob
from runner.core.yamlmarks import Loc, YamlSyntaxError, line_for, load_with_lines
from runner.errors import PlanError

# Task ids become git ref components, container names and file names: keep them plain.
TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
RESERVED_ENV = frozenset({"PATH", "HOME", "TMPDIR", "LANG"})
# Past this a timer cannot be set (OverflowError in the wait for a 1e300 s sandbox); no run
# waits 30 days for one task.
MAX_TIMEOUT = 30 * 24 * 3600
MAX_PLAN_BYTES = 16 * 2**20  # a 1000-task plan is ~100 KiB


def _no_nul(value: str) -> str:
    # These become git arguments, paths, image names or a script: none may hold a NUL byte
    # (the OS would refuse the argument with a ValueError deep inside the run).
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
SomeText = Annotated[str, Field(min_length=1), AfterValidator(_no_nul)]


RetryOn = Literal["failed", "timeout", "oom", "sandbox_lost", "disk_limit", "rejected"]
"""Statuses a task may be retried on: its own failures, never a merge's (conflict, verify)."""


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False
    )


class Verify(_Model):
    """A command run in a sandbox on the merged tree after each wave."""

    run: Text = Field(min_length=1)
    """Shell script, run at the repo root with `sh -e`."""
    timeout: float = Field(default=600, gt=0, le=MAX_TIMEOUT)
    """Seconds before the verify sandbox is killed (counts as red)."""


class Task(_Model):
    """One unit of work, run in its own sandbox on its own clone."""

    id: Annotated[str, Field(pattern=TASK_ID_PATTERN)]
    """Unique name; used in refs (refs/runner/<run>/task/<id>), logs and labels."""
    run: Text = Field(default="", min_length=1)
    """Shell script run at the repo root in the sandbox with `sh -e` (or give `agent`)."""
    scope: list[str] | None = None
    """gitwildmatch globs the task may change; absent means the whole repo."""
    deny: list[str] = []
    """Globs the task must not change, even inside its scope."""
    depends_on: list[Text] = []
    """Task ids whose merged work this task starts from."""
    policy: Text | None = None
    """Policy name (policies/NAME.yaml) or path to a policy file; default: the plan's."""
    image: Text | None = None
    """Docker image; default: the plan's."""
    timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT)
    """Hard limit in seconds; default: the plan's."""
    env: list[Annotated[str, Field(pattern=ENV_NAME_PATTERN)]] = []
    """Names of host environment variables passed through; nothing else leaks in."""
    retries: int = Field(default=0, ge=0, le=10)
    """How many more times to run it, each in a fresh sandbox, when it ends in `retry_on`."""
    retry_on: list[RetryOn] = ["failed", "timeout", "sandbox_lost"]
    """The statuses that make it run again (while retries last)."""
    agent: agents.AgentName | None = None
    """Instead of `run`: an agent preset, compiled into the agent's non-interactive command
    line (stdin closed, JSON output kept under $RUNNER_OUT/agent/ for `runner costs`)."""
    prompt: SomeText | None = None
    """The agent's prompt (with `agent`; or `prompt_file`)."""
    prompt_file: Text | None = None
    """A file holding the prompt: a repo path, or /shared/... (with `agent`; or `prompt`)."""
    model: SomeText | None = None
    """The agent's model (its `--model`); default: the agent's own."""
    args: list[Text] = []
    """More arguments for the agent's command line."""

    @model_validator(mode="before")
    @classmethod
    def _agent_preset(cls, data: Any) -> Any:
        # The preset becomes `run` here, so everything downstream runs a plain script.
        if not isinstance(data, dict):
            return data
        preset = ("prompt", "prompt_file", "model", "args")
        if data.get("agent") is None:
            for name in preset:
                if name in data:
                    raise _field_error(name, "only with `agent` (claude, codex or aider)")
            if "run" not in data:
                raise _field_error(
                    "run", "missing: give `run` (a shell script) or `agent` (an agent preset)"
                )
            return data
        if "run" in data:
            raise _field_error("agent", "give `run` or `agent`, not both")
        if ("prompt" in data) == ("prompt_file" in data):
            raise _field_error("agent", "give exactly one of `prompt` and `prompt_file`")
        values = {n: data.get(n) for n in preset}
        args = values["args"] or []
        typed = (
            data["agent"] in agents.AGENTS
            and all(isinstance(values[n], str | None) for n in preset[:3])
            and isinstance(args, list)
            and all(isinstance(a, str) for a in args)
        )
        # Ill-typed fields get their own errors from validation; `run` is then never used.
        run = (
            agents.compile_preset(
                data["agent"],
                prompt=values["prompt"],
                prompt_file=values["prompt_file"],
                model=values["model"],
                args=args,
            )
            if typed
            else "(agent preset)"
        )
        return {**data, "run": run}

    @field_validator("prompt_file")
    @classmethod
    def _prompt_file_path(cls, value: str | None) -> str | None:
        return None if value is None else agents.check_prompt_file(value)

    @field_validator("id")
    @classmethod
    def _id_is_ref_component(cls, value: str) -> str:
        # The pattern admits names git refuses as a ref component (git check-ref-format).
        if ".." in value or value.endswith((".", ".lock")):
            raise ValueError(
                "must not contain '..' or end with '.' or '.lock' (it names a git ref)"
            )
        return value

    @field_validator("env")
    @classmethod
    def _env_not_reserved(cls, names: list[str]) -> list[str]:
        # The sandbox's own variables (HOME on the tmpfs, RUNNER_OUT, git identity) must hold.
        for name in names:
            if name in RESERVED_ENV or name.startswith(("RUNNER_", "GIT_")):
                raise ValueError(f"{name} is set by the runner in every sandbox; pick another name")
        return names

    @field_validator("scope", "deny")
    @classmethod
    def _globs_not_empty(cls, value: list[str] | None) -> list[str] | None:
        for glob in value or []:
            if not glob.strip():
                raise ValueError("a glob must not be empty")
            if ".." in glob.strip().removeprefix("!").split("/"):
                raise ValueError(f"glob {glob!r} climbs out of the repo")
            check_glob(glob)
        return value


class Plan(_Model):
    """A run: tasks with scopes and dependencies, and how to run, merge and verify them."""

    base: Text = "HEAD"
    """Git revision every first-wave task starts from."""
    shared: Text | None = None
    """Repo-relative directory exported from base and mounted read-only at /shared."""
    concurrency: int = Field(default=4, ge=1, le=64)
    """Sandboxes running at once."""
    image: Text = "runner/sandbox:1"
    """Default image for tasks and verify."""
    policy: Text = "default"
    """Default policy name or file."""
    timeout: float = Field(default=1800, gt=0, le=MAX_TIMEOUT)
    """Default hard timeout per task, seconds."""
    on_overlap: Literal["refuse", "serialize", "allow"] = "refuse"
    """What to do when two tasks of one wave may change the same paths."""
    on_conflict: Literal["stop", "skip"] = "stop"
    """What to do on a merge conflict or a red verify."""
    verify: Verify | None = None
    """Run after each wave on the merged tree; a plain string is the command."""
    reuse: bool = False
    """Reuse the work of tasks whose input key matches a task merged in an earlier run of
    the repo instead of running them (as `runner run --reuse`)."""
    tasks: list[Task] = Field(min_length=1)
    """The tasks; ids unique."""

    @field_validator("base")
    @classmethod
    def _base_not_an_option(cls, value: str) -> str:
        if not value.strip() or value.startswith("-"):
            raise ValueError("must be a revision (a branch, tag or commit), not empty or '-...'")
        return value

    @field_validator("verify", mode="before")
    @classmethod
    def _verify_from_string(cls, value: Any) -> Any:
        return {"run": value} if isinstance(value, str) else value

    @field_validator("shared")
    @classmethod
    def _shared_relative(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Normalized ("./contracts/." -> "contracts"): the scope check compares path prefixes.
        parts = PurePosixPath(value.strip()).parts
        if not parts or value.strip().startswith("/") or ".." in parts:
            raise ValueError("must be a directory inside the repo, relative to its root")
        return "/".join(parts)

    @field_validator("tasks")
    @classmethod
    def _unique_ids(cls, tasks: list[Task]) -> list[Task]:
        # A field validator, so the error points at the tasks list rather than line 1.
        seen: dict[str, int] = {}
        for i, task in enumerate(tasks):
            if task.id in seen:
                raise ValueError(
                    f"task id {task.id!r} appears twice (tasks[{seen[task.id]}], [{i}])"
                )
            seen[task.id] = i
        return tasks

    @field_validator("tasks")
    @classmethod
    def _prompt_in_shared(cls, tasks: list[Task], info: ValidationInfo) -> list[Task]:
        if info.data.get("shared") is None:
            for i, task in enumerate(tasks):
                if (task.prompt_file or "").startswith(agents.SHARED_PREFIX):
                    raise _field_error(
                        (i, "prompt_file"),
                        "is under /shared/ but the plan has no `shared` directory",
                    )
        return tasks

    def task(self, task_id: str) -> Task:
        return next(t for t in self.tasks if t.id == task_id)


def _field_error(at: str | tuple[str | int, ...], message: str) -> PydanticCustomError:
    """An error found on a whole node that _problems places at a field under it (file:line)."""
    return PydanticCustomError("task_field", message, {"field": at})


def load_plan(path: Path) -> PlanDoc:
    """Read and validate a plan file.

    Raises:
        PlanError: one line per problem, as `FILE:LINE: FIELD: message`.
    """
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PLAN_BYTES + 1)  # bounded: `runner plan /dev/zero` must end
    except FileNotFoundError:
        raise PlanError(
            [f"{path}: no such plan file"], hint="pass the path of a YAML plan"
        ) from None
    except OSError as exc:
        raise PlanError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_PLAN_BYTES:
        raise PlanError([f"{path}: more than {MAX_PLAN_BYTES // 2**20} MiB: not a plan file"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise PlanError(
            [f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {col})"],
            hint="save the plan as UTF-8",
        ) from None
    return parse_plan(text, str(path))


def parse_plan(text: str, source: str) -> PlanDoc:
    try:
        data, lines = load_with_lines(text)
    except YamlSyntaxError as exc:
        where = f"{source}:{exc.line}" if exc.line else source
        raise PlanError([f"{where}: not valid YAML: {exc.message}"]) from None
    if not isinstance(data, dict):
        raise PlanError(
            [f"{source}:1: the plan must be a mapping with a 'tasks' list"],
            hint="see `runner schema` for the fields",
        )
    if bad_keys := _key_problems(data, lines, source):
        # pydantic would say "Keys should be strings" at the parent's line, the key unnamed.
        raise PlanError(bad_keys, hint="every key of a plan is a field name: see `runner schema`")
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(_problems(exc, data, lines, source), hint="see `runner schema`") from None
    return PlanDoc(plan, source, data, lines, text)


def field_name(loc: Loc, data: Any = None) -> str:
    """('tasks', 2, 'scope', 0) -> tasks[2](api).scope[0]; names the task by id when known."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                out += f"({node['id']})"
        else:
            out += f".{part}" if out else part
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(plan)"


def _key_problems(data: Any, lines: dict[Loc, int], source: str) -> list[str]:
    """A problem for each key that is not a string (`1: x`, `~: x`, `2024-01-01: x`)."""
    problems = []
    stack: list[tuple[Loc, Any]] = [((), data)]
    while stack:
        loc, node = stack.pop()
        if isinstance(node, list):
            stack.extend(((*loc, i), item) for i, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if isinstance(key, str):
                stack.append(((*loc, key), value))
                continue
            shown = "null" if key is None else str(key)
            problems.append(
                f"{source}:{line_for(lines, (*loc, str(key)))}: {field_name(loc, data)}: "
                f"{shown!r} is not a field name (YAML reads it as {type(key).__name__}; "
                "field names are words like `tasks`)"
            )
    return sorted(problems)


def _problems(exc: ValidationError, data: Any, lines: dict[Loc, int], source: str) -> list[str]:
    problems = []
    for err in exc.errors():
        # pydantic appends union/validator tags to loc; keep the parts that address data.
        loc = tuple(
            p for p in err["loc"] if isinstance(p, int) or not str(p).startswith("function-")
        )
        if err["type"] == "task_field":
            at = err.get("ctx", {})["field"]
            loc = (*loc, *(at if isinstance(at, tuple) else (at,)))
        line = line_for(lines, loc)
        where = f"{source}:{line}" if line else source
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling; `runner schema` lists the fields)"
        problems.append(f"{where}: {field_name(loc, data)}: {msg}")
    return problems


@dataclass(frozen=True)
class PlanDoc:
    """A validated plan with where it came from, so later checks can point at lines too."""

    plan: Plan
    source: str
    data: Any = None
    lines: dict[Loc, int] = field(default_factory=dict)
    text: str = ""
    """The plan file's text as read: a run keeps a copy, and `resume` runs that copy."""

    def problem(self, loc: Loc, message: str) -> str:
        """`FILE:LINE: FIELD: message` for a field found wrong after validation."""
        line = line_for(self.lines, loc)
        where = f"{self.source}:{line}" if line else self.source
        return f"{where}: {field_name(loc, self.data)}: {message}"

    def task_loc(self, task_id: str, *rest: str | int) -> Loc:
        index = next(i for i, t in enumerate(self.plan.tasks) if t.id == task_id)
        return ("tasks", index, *rest)
