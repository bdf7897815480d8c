"""Fuzzed plan files, loaded and pre-flighted against a real git repo (no daemon).

Every input ends in a checked plan or in one InputError whose every line says FILE:LINE:,
never another exception; and nothing changes: not the repo, its refs or its git dir, and
nothing is written to the temp dir. The budget is fixed and the examples derandomized, so CI
runs the same inputs every time (`FUZZ`); the defects found are pinned below as regressions.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.core.plan import MAX_TIMEOUT, load_plan, parse_plan
from runner.core.policy import Policy, load_policy, parse_size
from runner.core.scope import Scope, check_glob
from runner.core.yamlmarks import MAX_DEPTH, load_with_lines
from runner.errors import InputError, PlanError, RunnerError
from runner.preflight import Prepared, preflight
from runner.settings import Settings

FUZZ = settings(
    derandomize=True,  # the same examples on every run: a CI failure reproduces locally
    database=None,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# For spaces that are small (a few fields, a few values) or slow per example (a policy file).
FUZZ_SMALL = settings(FUZZ, max_examples=60)
ENVIRON = {"PRESENT": "value"}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.test",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def _git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | GIT_ENV
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env=env, check=True)  # fmt: skip
    return proc.stdout


@dataclass(frozen=True)
class World:
    """A repo to pre-flight against, a dir for plan files, a temp dir nothing may write to."""

    repo: Path
    plans: Path
    tmp: Path

    def snapshot(self) -> tuple[str, dict[str, tuple[int, int]]]:
        """Refs, HEAD and every file under the repo (git dir included) with size and mtime."""
        refs = _git(self.repo, "for-each-ref") + _git(self.repo, "symbolic-ref", "HEAD")
        files = {}
        for dirpath, _dirs, names in os.walk(self.repo):
            for name in names:
                st_ = os.lstat(os.path.join(dirpath, name))
                files[os.path.join(dirpath, name)] = (st_.st_size, st_.st_mtime_ns)
        return refs, files


def make_world(root: Path) -> World:
    repo = root / "repo"
    for rel in ("README.md", "src/a.py", "src/db/m.sql", "docs/x.md", "contracts/api.txt"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(rel + "\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "initial")
    _git(repo, "tag", "v1")
    (root / "plans").mkdir()
    (root / "plans" / "mine.yaml").write_text("network: none\n")  # a policy file by path
    (root / "tmp").mkdir()
    return World(repo, root / "plans", root / "tmp")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(autouse=True)
def _private_tmp(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever the code under test writes to "the temp dir" lands where the test can see it.
    monkeypatch.setattr(tempfile, "tempdir", str(world.tmp))


_LOCATED = r"^{}:[0-9]+: "


def check(world: World, raw: bytes) -> Prepared | PlanError:
    """Load and pre-flight raw as a plan file; the outcome, after checking it and the world."""
    path = world.plans / "plan.yaml"
    path.write_bytes(raw)
    before = world.snapshot()
    outcome: Prepared | PlanError
    try:
        outcome = preflight(load_plan(path), world.repo, Settings(), ENVIRON)
    except RunnerError as exc:
        assert isinstance(exc, PlanError), f"{type(exc).__name__}: {exc}"
        assert exc.problems, "an error without a problem"
        located = re.compile(_LOCATED.format(re.escape(str(path))))
        for problem in exc.problems:
            assert located.match(problem), f"not located by FILE:LINE: {problem!r}"
            assert "Traceback" not in problem
        outcome = exc
    else:
        plan = outcome.doc.plan
        assert sorted(t for wave in outcome.dispatch.waves for t in wave) == sorted(
            t.id for t in plan.tasks
        )
    assert world.snapshot() == before, "the repo changed"
    assert list(world.tmp.iterdir()) == [], "a file was written to the temp dir"
    return outcome


# -- (a) arbitrary YAML documents --------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=8)
    | st.sampled_from(["tasks", "id", "run", "scope", "a", "src/**", "../x", "/abs", "HEAD"])
)
_keys = (
    st.text(max_size=8)
    | st.integers()
    | st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.sampled_from(["tasks", "id", "run", "base", "scope", "depends_on", "policy"])
)
_docs = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_keys, inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)  # !!python/tuple
    ),
    max_leaves=16,
)
# Spliced into the text at random places: what a hand-edited or hostile file may hold.
_SPLICES = [
    "\t", "---\n", "...\n", "&a ", "*a", "*nope", "<<: *a\n", "!!python/object:os.system ",
    "!!python/object/apply:os.system ['true'] ", "!!binary ", "!!set ", "!!omap ", "!custom ",
    "%YAML 1.1\n", "%TAG ! tag:example.test,2000:\n", "? ", ": ", "- ", "[", "]", "{", "}",
    "9" * 5000, "1e400", "-.inf", ".nan", "0x", "0o9", "2024-13-45", "\ufeff", "\x00", "\x07",
    "\x85", "\u2028", "\ud800", "'", '"', "\\", "#", "|", ">", "\n", "\r\n", "  ", "tasks:",
    "- id: a\n  run: x\n", "\n" * 3,
]  # fmt: skip
_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00", b"\xfe\xff"]


@st.composite
def _yaml_texts(draw: st.DrawFn) -> bytes:
    data = draw(_docs)
    style = draw(st.sampled_from([None, True, False]))
    try:
        text = yaml.dump(data, default_flow_style=style, allow_unicode=draw(st.booleans()))
    except (yaml.YAMLError, ValueError):  # an int too long for str(): use a plain doc
        text = "tasks: []\n"
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(_SPLICES)) + text[at:]
    if draw(st.booleans()):  # more than one document
        text += "---\n" + draw(st.sampled_from(["tasks: []\n", "a: 1\n", "", "- x\n"]))
    raw = text.encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-16"])), "surrogatepass")
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from(_BYTES)) + raw[at:]
    return raw


@FUZZ
@given(_yaml_texts())
def test_fuzz_arbitrary_yaml_documents(world: World, raw: bytes) -> None:
    check(world, raw)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(world: World, raw: bytes) -> None:
    check(world, raw)


@pytest.mark.parametrize("depth", [60, 64, 65, 400, 20_000])
@pytest.mark.parametrize("kind", ["flow list", "flow map", "block list", "mixed"])
def test_deep_nesting_is_refused_at_once_with_a_line(world: World, depth: int, kind: str) -> None:
    # Was: PyYAML's scanner is quadratic in flow depth: 20,000 '[' (40 KB) took minutes, and
    # past the recursion limit the error had no line.
    if kind == "flow list":
        body = "tasks: " + "[" * depth + "]" * depth
    elif kind == "flow map":
        body = "tasks: " + "{a: " * depth + "1" + "}" * depth
    elif kind == "block list":
        body = "tasks:\n" + "".join(f"{' ' * i}-\n" for i in range(min(depth, 600)))
    else:
        body = "tasks:\n" + "".join(
            f"{' ' * i}- " + "[" * 63 + "\n" for i in range(min(depth, 600))
        )
    started = time.monotonic()
    outcome = check(world, body.encode())
    assert time.monotonic() - started < 5  # not a timing claim: minutes before, a bound here
    if kind == "mixed":  # unclosed flow lists, one per line: refused as a syntax error
        assert isinstance(outcome, PlanError)
    elif depth > MAX_DEPTH:
        assert isinstance(outcome, PlanError)
        assert f"nested more than {MAX_DEPTH} deep" in str(outcome)


def test_fuzz_alias_expansion_is_bounded(world: World) -> None:
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    laughs += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    outcome = check(world, ("\n".join(laughs) + "\ntasks: *a8\n").encode())
    assert isinstance(outcome, PlanError)
    assert "aliases expand" in str(outcome)


# -- (b) mutations of a valid plan -------------------------------------------------------------

VALID: dict[str, Any] = {
    "base": "main",
    "shared": "contracts",
    "concurrency": 4,
    "policy": "default",
    "timeout": 600,
    "on_overlap": "refuse",
    "on_conflict": "stop",
    "verify": {"run": "true", "timeout": 60},
    "tasks": [
        {"id": "db", "scope": ["src/db/**"], "deny": ["src/db/m.sql"], "run": "echo db"},
        {"id": "api", "scope": ["src/api/**"], "depends_on": ["db"], "run": "echo api",
         "env": ["PRESENT"], "timeout": 30},
        {"id": "docs", "scope": ["docs/**", "README.md"], "run": "echo docs",
         "policy": "mine.yaml", "image": "runner/sandbox:1"},
    ],
}  # fmt: skip
_TOP = [*VALID, "tasks"]
_TASK = ["id", "run", "scope", "deny", "depends_on", "policy", "image", "timeout", "env"]
_weird_ids = st.sampled_from(
    ["", "-a", ".a", "a..b", "a.lock", "a.", "a/b", "a b", "é", "a" * 64, "a" * 63, "HEAD",
     "db", "@", "a\x00", "a:b", "a~1", "a^", "a\nb", "_", "0", "a" * 10_000]
) | st.text(max_size=10)  # fmt: skip
_weird_globs = st.sampled_from(
    ["", " ", "**", "*", "/", "//", "/abs/x", "../x", "a/../../x", "..", "!", "!x", "!../x",
     "\\", "a\\", "[", "[]", "[[]", "[!]", "[a-", "]", "#x", "\\#x", "a\x00b", "src/**/",
     "src/***", "**/**/**", "a" * 5000, "src/db/**", "docs/**", "{a,b}", "\t", "a\nb"]
) | st.text(max_size=8)  # fmt: skip
_numbers: st.SearchStrategy[Any] = st.sampled_from(
    [0, -1, -(10**20), 10**20, 10**400, 1e308, float("inf"), float("-inf"), float("nan"),
     0.0001, 65, 64, 1, True, False, "4", "1e3", "", None, [], {}, MAX_TIMEOUT,
     MAX_TIMEOUT + 1]
)  # fmt: skip
_names = st.sampled_from(
    ["default", "open-network", "nope", "", "..", "../../etc/passwd", "/etc/passwd",
     "/nonexistent.yaml", "mine.yaml", "./mine.yaml", "a\x00b", "/", "plans", "plan.yaml",
     "/dev/null", "/proc/self/status", "HEAD", "v1", "main~1", "HEAD^{tree}", "-x", "--all",
     "main@{0}", "a:b", "contracts", "README.md", "src", "contracts/", "./contracts/."]
) | st.text(max_size=8)  # fmt: skip
_any = _numbers | _names | _weird_globs | st.lists(_names, max_size=3) | _docs


@st.composite
def _mutated_plans(draw: st.DrawFn) -> bytes:
    plan: dict[Any, Any] = {
        k: ([dict(t) for t in v] if k == "tasks" else v) for k, v in VALID.items()
    }
    tasks: list[Any] = plan["tasks"]
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(
            ["drop", "retype", "task_drop", "task_retype", "id", "glob", "cycle", "number",
             "name", "dup_task", "unknown", "task_unknown", "add_tasks"]
        ))  # fmt: skip
        if not tasks and kind.startswith(("task_", "id", "glob", "cycle", "dup")):
            continue
        t = draw(st.sampled_from(tasks)) if tasks else {}
        if kind == "drop":
            plan.pop(draw(st.sampled_from(_TOP)), None)
        elif kind == "retype":
            plan[draw(st.sampled_from(_TOP))] = draw(_any)
        elif kind == "task_drop":
            t.pop(draw(st.sampled_from(_TASK)), None)
        elif kind == "task_retype":
            t[draw(st.sampled_from(_TASK))] = draw(_any)
        elif kind == "id":
            t["id"] = draw(_weird_ids)
        elif kind == "glob":
            field = draw(st.sampled_from(["scope", "deny"]))
            t[field] = draw(st.lists(_weird_globs, max_size=3))
        elif kind == "cycle":
            other = draw(st.sampled_from(tasks))
            t["depends_on"] = [*(t.get("depends_on") or []), other.get("id")]
        elif kind == "number":
            where = draw(st.sampled_from(["concurrency", "timeout", "task", "verify"]))
            if where == "task":
                t["timeout"] = draw(_numbers)
            elif where == "verify":
                plan["verify"] = {"run": "true", "timeout": draw(_numbers)}
            else:
                plan[where] = draw(_numbers)
        elif kind == "name":
            where = draw(st.sampled_from(["policy", "base", "shared", "image", "task"]))
            (t if where == "task" else plan)["policy" if where == "task" else where] = draw(_names)
        elif kind == "dup_task":
            tasks.append(dict(t))
        elif kind == "unknown":
            plan[draw(st.sampled_from(["polcy", "task", "Tasks", "on_overlap ", "x"]))] = 1
        elif kind == "task_unknown":
            t[draw(st.sampled_from(["scopes", "Id", "depends", "retries", "x"]))] = 1
        elif kind == "add_tasks":  # many tasks in one wave: the pairwise overlap check
            n = draw(st.integers(0, 40))
            tasks.extend({"id": f"m{i}", "scope": [f"m/{i}/**"], "run": "true"} for i in range(n))
    text = yaml.dump(plan, sort_keys=False, default_flow_style=draw(st.sampled_from([None, True])))
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(_mutated_plans())
def test_fuzz_mutated_valid_plans(world: World, raw: bytes) -> None:
    check(world, raw)


def test_the_unmutated_plan_is_valid(world: World) -> None:
    # The mutations start from a plan that passes: their errors are theirs.
    outcome = check(world, yaml.dump(VALID, sort_keys=False).encode())
    assert isinstance(outcome, Prepared), outcome
    assert outcome.dispatch.waves == [["db", "docs"], ["api"]]


_dup_lines = st.tuples(
    st.sampled_from(["id", "scope", "run", "policy", "timeout"]),
    st.sampled_from(["a", "b", "x", "1", "[]", "{}", "~"]),
)


@FUZZ_SMALL
@given(st.lists(_dup_lines, max_size=6))
def test_fuzz_duplicate_keys(world: World, extra: list[tuple[str, str]]) -> None:
    # Duplicate keys cannot be made through a dict: written as text, each must be refused.
    lines = "".join(f"    {k}: {v}\n" for k, v in extra)
    text = f"tasks:\n  - id: a\n    run: echo\n{lines}"
    outcome = check(world, text.encode())
    if any(k in {"id", "run"} for k, _ in extra):
        assert isinstance(outcome, PlanError)
        assert "duplicate key" in str(outcome)


@FUZZ_SMALL
@given(st.lists(_docs, max_size=3), st.dictionaries(st.sampled_from(list(Policy.model_fields)),
                                                     _any, max_size=4))  # fmt: skip
def test_fuzz_policy_files(world: World, junk: list[Any], fields: dict[str, Any]) -> None:
    # The plan names a policy file; whatever it holds is one located error or a policy.
    (world.plans / "fuzzed.yaml").write_text(
        yaml.dump(fields) if fields or not junk else yaml.dump(junk)
    )
    text = "policy: fuzzed.yaml\ntasks:\n  - {id: a, run: echo}\n"
    outcome = check(world, text.encode())
    if isinstance(outcome, PlanError):
        assert all("policy" in p for p in outcome.problems), outcome.problems


# -- regressions: the defects fuzzing found (each failed before its fix) ----------------------


def _problems(world: World, text: str) -> list[str]:
    outcome = check(world, textwrap.dedent(text).encode())
    assert isinstance(outcome, PlanError), f"accepted: {text!r}"
    return [p.split(": ", 1)[1] for p in outcome.problems]


def test_a_nul_in_a_revision_or_path_is_a_plan_error(world: World) -> None:
    # Was: ValueError('embedded null byte') out of subprocess, a traceback.
    assert _problems(world, 'base: "main\\0"\ntasks: [{id: a, run: x}]') == [
        "base: must not contain a NUL character"
    ]
    assert _problems(world, 'shared: "contracts\\0"\ntasks: [{id: a, run: x}]') == [
        "shared: must not contain a NUL character"
    ]
    for field in ("image", "policy", "run"):
        task = {"id": "a", "run": "x", field: "a\0"}
        (problem,) = _problems(world, f"tasks: [{json.dumps(task)}]")
        assert problem == f"tasks[0](a).{field}: must not contain a NUL character"
    (problem,) = _problems(world, 'tasks: [{id: a, run: x, depends_on: ["\\0"]}]')
    assert problem == "tasks[0](a).depends_on[0]: must not contain a NUL character"


@pytest.mark.parametrize("glob", ["\\", "src/\\", "a\\", "[[]", "[a-[b]", "a\x00b"])
def test_a_glob_pathspec_cannot_compile_is_a_plan_error(world: World, glob: str) -> None:
    # Was: GitIgnorePatternError (trailing backslash) or, under -W error, FutureWarning
    # ("Possible nested set") out of the overlap check: a traceback from `runner plan`.
    text = f"tasks:\n  - id: a\n    run: x\n    scope: [{json.dumps(glob)}]\n"
    text += "  - {id: b, run: x, scope: [docs/**]}\n"
    (problem,) = _problems(world, text)
    assert problem.startswith("tasks[0](a).scope: glob ")
    with pytest.raises(ValueError, match="glob"):
        check_glob(glob)
    text = text.replace("scope:", "deny:")
    assert _problems(world, text)[0].startswith("tasks[0](a).deny: glob ")


def test_every_glob_a_plan_accepts_compiles() -> None:
    for glob in ["\\\\", "\\[", "[!a]", "[]]", "src/**", "!x", "#x", "a b"]:
        check_glob(glob)
        Scope.of([glob], [glob]).allows("x")


def test_a_timeout_no_timer_can_hold_is_a_plan_error(world: World) -> None:
    # Was: accepted, and `run` died in the sandbox wait (OverflowError for 1e300 s).
    for where in ("timeout: {}\ntasks: [{{id: a, run: x}}]",
                  "tasks: [{{id: a, run: x, timeout: {}}}]",
                  "verify: {{run: x, timeout: {}}}\ntasks: [{{id: a, run: x}}]"):  # fmt: skip
        (problem,) = _problems(world, where.format("1e300"))
        assert f"less than or equal to {MAX_TIMEOUT}" in problem
        assert isinstance(check(world, where.format(MAX_TIMEOUT).encode()), Prepared)


def test_tags_on_maps_and_lists_are_refused_not_ignored(world: World) -> None:
    # Was: `!!python/tuple [...]` and `!!python/object:x {...}` built as a plain list / dict.
    assert _problems(world, "tasks: !!python/tuple [{id: a, run: x}]") == [
        "not valid YAML: tag !!python/tuple is not supported (only plain maps, lists)"
    ]
    assert _problems(world, "!!python/object:os.system {tasks: []}") == [
        "not valid YAML: tag !!python/object:os.system is not supported (only plain maps, lists)"
    ]
    (problem,) = _problems(world, "tasks: !!set {a, b}")
    assert "tag !!set is not supported" in problem
    assert load_with_lines("a: !!map {b: !!seq [1]}")[0] == {"a": {"b": [1]}}  # the plain tags


def test_a_character_yaml_refuses_is_located(world: World) -> None:
    # Was: "plan.yaml: not valid YAML: unacceptable character ... position 22": no line.
    outcome = check(world, b"tasks:\n  - id: a\n    run: \x01\n")
    assert isinstance(outcome, PlanError)
    (problem,) = outcome.problems
    assert problem.endswith(
        "plan.yaml:3: not valid YAML: character U+0001 is not allowed here "
        "(escape it in double quotes)"
    )


def test_a_file_that_is_not_utf8_is_located(world: World) -> None:
    # Was: "cannot read: 'utf-8' codec can't decode byte 0xff in position 27": no line.
    outcome = check(world, b"tasks:\n  - id: a\n    run: '\xff'\n")
    assert isinstance(outcome, PlanError)
    assert outcome.problems[0].endswith("plan.yaml:3: not UTF-8 text (byte 0xff at column 11)")


def test_nesting_too_deep_is_located(world: World) -> None:
    # Was: "plan.yaml: not valid YAML: nested too deeply": no line.
    outcome = check(world, b"tasks:\n  - id: a\n    run: " + b"[" * 5000 + b"]" * 5000)
    assert isinstance(outcome, PlanError)
    assert outcome.problems[0].endswith(
        f"plan.yaml:3: not valid YAML: nested more than {MAX_DEPTH} deep"
    )


def test_a_key_that_is_not_a_string_is_named_at_its_line(world: World) -> None:
    # Was: "plan.yaml:1: [1]: Keys should be strings" (as if a list index, at the parent's line).
    assert _problems(world, "tasks:\n  - id: a\n    run: x\n    1: x\n") == [
        "tasks[0](a): '1' is not a field name (YAML reads it as int; field names are words "
        "like `tasks`)"
    ]
    (problem,) = _problems(world, "tasks: [{id: a, run: x}]\n~: 1\n")
    assert problem.startswith("(plan): 'null' is not a field name")
    outcome = check(world, b"tasks: [{id: a, run: x}]\n2024-01-01: 1\n")
    assert isinstance(outcome, PlanError) and ":2: (plan): '2024-01-01'" in str(outcome)


def test_a_plan_file_too_large_is_refused_unread(tmp_path: Path) -> None:
    # Was: read whole (`runner plan /dev/zero` never ended).
    with pytest.raises(PlanError, match="/dev/zero: more than 16 MiB: not a plan file"):
        load_plan(Path("/dev/zero"))


def test_policy_numbers_docker_cannot_take_are_refused(tmp_path: Path) -> None:
    # Was: "9" * 400 + "t" -> float infinity -> OverflowError out of load_policy; 10**30 bytes
    # or 1e300 cpus accepted, and Docker refused them mid-run.
    cases = {
        "memory: " + "9" * 400 + "t": "memory: ",
        "memory: 10000000000000000000000000000": "a size must be at most 1024t",
        "cpus: 1e300": "less than or equal to 4096",
        "pids: 100000000000000000000": "less than or equal to 4194304",
        "user: '" + "9" * 5000 + ":1'": "user: String should match pattern",
    }
    for text, said in cases.items():
        (tmp_path / "p.yaml").write_text(text + "\n")
        with pytest.raises(InputError, match=re.escape(said)):
            load_policy(tmp_path / "p.yaml")
    assert parse_size("1024t") == 1024**5
    assert parse_size("1.5g") == 1024**3 * 3 // 2


def test_parse_plan_alone_never_raises_anything_else() -> None:
    # The pure entry point used by `runner plan` before the repo is looked at.
    for text in ["", "~", "[]", "tasks: ~", "\x00", "a: !!binary _", "? [a]\n: b"]:
        with pytest.raises(PlanError):
            parse_plan(text, "p.yaml")
