"""The plan file: defaults, validation, and FILE:LINE: FIELD: message for every problem."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.core.plan import TASK_ID_PATTERN, Plan, PlanDoc, Task, Verify, field_name, load_plan
from runner.core.plan import parse_plan as _parse_plan
from runner.core.yamlmarks import MAX_VALUES
from runner.errors import InputError, PlanError

UNKNOWN = "unknown field (check its spelling; `runner schema` lists the fields)"


def parse(text: str) -> PlanDoc:
    return _parse_plan(textwrap.dedent(text), "plan.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(PlanError) as info:
        parse(text)
    return info.value.problems


MINIMAL = """\
tasks:
  - id: a
    run: echo a
"""


# -- defaults and accepted shapes ------------------------------------------------------------


def test_defaults() -> None:
    plan = parse(MINIMAL).plan
    assert plan.base == "HEAD"
    assert plan.shared is None
    assert plan.concurrency == 4
    assert plan.image == "runner/sandbox:1"
    assert plan.policy == "default"
    assert plan.timeout == 1800
    assert plan.on_overlap == "refuse"
    assert plan.on_conflict == "stop"
    assert plan.verify is None
    assert plan.tasks == [Task(id="a", run="echo a")]
    task = plan.tasks[0]
    assert task.scope is None  # the whole repo
    assert (task.deny, task.depends_on, task.env) == ([], [], [])
    assert (task.policy, task.image, task.timeout) == (None, None, None)


def test_the_design_example_parses() -> None:
    plan = parse(
        """\
        base: main
        shared: contracts
        concurrency: 4
        image: runner/base:1
        policy: default
        on_overlap: serialize
        on_conflict: skip
        verify: {run: "python3 -m pytest -q", timeout: 600}
        tasks:
          - id: db
            scope: ["src/db/**", "tests/db/**"]
            deny: ["src/db/migrations/0001_*"]
            run: ./agents/db.sh
          - id: api
            depends_on: [db]
            scope: ["src/api/**"]
            env: [ANTHROPIC_API_KEY]
            policy: agent.yaml
            timeout: 900
            run: |
              claude -p "$(cat /shared/api-task.md)" > "$RUNNER_OUT/usage.json"
        """
    ).plan
    assert (plan.base, plan.shared, plan.image) == ("main", "contracts", "runner/base:1")
    assert (plan.on_overlap, plan.on_conflict) == ("serialize", "skip")
    assert plan.verify == Verify(run="python3 -m pytest -q", timeout=600)
    db, api = plan.tasks
    assert db.scope == ["src/db/**", "tests/db/**"]
    assert db.deny == ["src/db/migrations/0001_*"]
    assert api.depends_on == ["db"]
    assert api.env == ["ANTHROPIC_API_KEY"]
    assert (api.policy, api.timeout) == ("agent.yaml", 900)
    assert api.run == 'claude -p "$(cat /shared/api-task.md)" > "$RUNNER_OUT/usage.json"\n'
    assert plan.task("api") is api


def test_verify_as_a_plain_string_is_the_command() -> None:
    plan = parse("verify: make test\n" + MINIMAL).plan
    assert plan.verify == Verify(run="make test", timeout=600)


def test_verify_as_a_mapping_keeps_its_timeout() -> None:
    plan = parse("verify:\n  run: make test\n  timeout: 30\n" + MINIMAL).plan
    assert plan.verify == Verify(run="make test", timeout=30)


def test_verify_must_not_be_empty() -> None:
    assert problems('verify: ""\n' + MINIMAL) == [
        "plan.yaml:1: verify.run: String should have at least 1 character"
    ]


def test_models_are_frozen() -> None:
    plan = parse(MINIMAL).plan
    with pytest.raises(ValueError, match="frozen"):
        plan.base = "main"  # type: ignore[misc]


# -- unknown fields, types and lines ---------------------------------------------------------


def test_unknown_task_field_names_line_task_and_field() -> None:
    text = """\
    base: main
    tasks:
      - id: a
        run: echo a
      - id: b
        run: echo b
        scpe: ["src/**"]
    """
    assert problems(text) == [f"plan.yaml:7: tasks[1](b).scpe: {UNKNOWN}"]


def test_unknown_top_level_field() -> None:
    assert problems("bsae: main\n" + MINIMAL) == [f"plan.yaml:1: bsae: {UNKNOWN}"]


def test_every_problem_is_reported_with_its_own_line() -> None:
    text = """\
    concurrency: 0
    on_overlap: merge
    tasks:
      - id: a
        run: echo a
        timeout: -1
    """
    got = problems(text)
    assert [p.split(": ")[0:2] for p in got] == [
        ["plan.yaml:1", "concurrency"],
        ["plan.yaml:2", "on_overlap"],
        ["plan.yaml:6", "tasks[0](a).timeout"],
    ]
    assert "greater than or equal to 1" in got[0]
    assert "'refuse', 'serialize' or 'allow'" in got[1]
    assert "greater than 0" in got[2]


def test_missing_field_points_at_its_parent() -> None:
    text = """\
    tasks:
      - id: a
        run: echo a
      - id: b
    """
    assert problems(text) == [
        "plan.yaml:4: tasks[1](b).run: missing: give `run` (a shell script) or `agent` "
        "(an agent preset)"
    ]


def test_missing_tasks() -> None:
    assert problems("base: main\n") == ["plan.yaml:1: tasks: Field required"]


def test_empty_task_list() -> None:
    got = problems("base: main\ntasks: []\n")
    assert got == ["plan.yaml:2: tasks: List should have at least 1 item after validation, not 0"]


def test_wrong_type_of_list_item() -> None:
    text = """\
    tasks:
      - id: a
        run: echo a
        scope:
          - src/**
          - 5
    """
    assert problems(text) == ["plan.yaml:6: tasks[0](a).scope[1]: Input should be a valid string"]


def test_infinite_timeout_is_refused() -> None:
    assert problems("timeout: .inf\n" + MINIMAL) == [
        "plan.yaml:1: timeout: Input should be a finite number"
    ]


# -- task ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", ["a", "A1", "db.v2", "x_y-z", "7", "a" * 63])
def test_good_task_ids(task_id: str) -> None:
    assert parse(f"tasks: [{{id: '{task_id}', run: x}}]").plan.tasks[0].id == task_id


@pytest.mark.parametrize("task_id", ["", "-a", ".a", "_a", "a b", "a/b", "a:b", "é", "a" * 64])
def test_task_id_outside_the_pattern(task_id: str) -> None:
    assert problems(f"tasks: [{{id: '{task_id}', run: x}}]") == [
        f"plan.yaml:1: tasks[0]({task_id}).id: String should match pattern '{TASK_ID_PATTERN}'"
    ]


def test_task_id_with_a_trailing_newline_is_refused() -> None:
    assert problems('tasks: [{id: "a\\n", run: x}]')[0].startswith("plan.yaml:1: tasks[0](a\n).id:")


@pytest.mark.parametrize("task_id", ["a..b", "a.", "a.lock"])
def test_task_id_that_git_refuses_as_a_ref(task_id: str) -> None:
    # The id becomes refs/runner/<run>/<id>: git check-ref-format refuses these.
    assert problems(f"tasks: [{{id: '{task_id}', run: x}}]") == [
        f"plan.yaml:1: tasks[0]({task_id}).id: "
        "must not contain '..' or end with '.' or '.lock' (it names a git ref)"
    ]


def test_duplicate_task_ids() -> None:
    text = """\
    base: main
    tasks:
      - id: a
        run: echo 1
      - id: b
        run: echo 2
      - id: a
        run: echo 3
    """
    assert problems(text) == ["plan.yaml:3: tasks: task id 'a' appears twice (tasks[0], [2])"]


# -- YAML itself -------------------------------------------------------------------------------


def test_duplicate_yaml_key() -> None:
    text = """\
    tasks:
      - id: a
        run: echo a
        run: echo b
    """
    assert problems(text) == ["plan.yaml:4: not valid YAML: duplicate key 'run'"]


def test_duplicate_top_level_key() -> None:
    assert problems("base: a\nbase: b\n" + MINIMAL) == [
        "plan.yaml:2: not valid YAML: duplicate key 'base'"
    ]


def test_yaml_syntax_error_has_its_line() -> None:
    text = """\
    base: main
    tasks:
      - id: a
        run: [echo
    """
    [problem] = problems(text)
    assert problem.startswith("plan.yaml:5: not valid YAML: ")


def test_tab_indentation_is_a_syntax_error_with_a_line() -> None:
    [problem] = problems("base: main\ntasks:\n\t- id: a\n")
    assert problem.startswith("plan.yaml:3: not valid YAML: ")


@pytest.mark.parametrize("text", ["", "\n", "# just a comment\n", "---\n"])
def test_empty_file(text: str) -> None:
    assert problems(text) == ["plan.yaml:1: the plan must be a mapping with a 'tasks' list"]


@pytest.mark.parametrize("text", ["- id: a\n  run: x\n", "hello\n", "42\n", "[]\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    assert problems(text) == ["plan.yaml:1: the plan must be a mapping with a 'tasks' list"]


def test_only_the_first_document_counts() -> None:
    [problem] = problems(MINIMAL + "---\nbase: x\n")
    assert problem.startswith("plan.yaml:4: not valid YAML: ")


def test_aliases_are_expanded_with_lines() -> None:
    text = """\
    tasks:
      - id: a
        scope: &src ["src/**"]
        run: echo a
      - id: b
        scope: *src
        run: echo b
        bad: 1
    """
    assert problems(text) == [f"plan.yaml:8: tasks[1](b).bad: {UNKNOWN}"]
    assert parse(text.replace("    bad: 1\n", "")).plan.tasks[1].scope == ["src/**"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: !foo bar\n", "'bar': could not determine a constructor for the tag '!foo'"),
        ("concurrency: !!int abc\n", "'abc': not a valid int"),
        ("base: !!timestamp x\n", "'x': not a valid timestamp"),
        ("base: !!python/name:os.system ''\n", "could not determine a constructor"),
        ("? [a, b]\n: c\n", "a key must be a plain value, not a list or map"),
        ("a: &x [*x]\n", "an alias refers to a value that contains it"),
        ("d: &d {run: x}\ntasks:\n  - <<: *d\n", "merge keys (<<) are not supported"),
    ],
)
def test_yaml_that_safe_loading_refuses(text: str, message: str) -> None:
    [problem] = problems(text)
    assert problem.startswith("plan.yaml:")
    assert ": not valid YAML: " in problem
    assert message in problem


def test_merge_key_error_points_at_its_line() -> None:
    assert problems("d: &d {run: x}\ntasks:\n  - <<: *d\n    id: a\n") == [
        "plan.yaml:3: not valid YAML: merge keys (<<) are not supported"
    ]


def test_alias_bomb_is_refused_quickly() -> None:
    levels = ['l0: &l0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        levels.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    [problem] = problems("\n".join(levels) + "\n" + MINIMAL)
    assert f"not valid YAML: more than {MAX_VALUES} values (aliases expand)" in problem


def test_deep_nesting_is_a_plan_error() -> None:
    [problem] = problems("[" * 5000 + "]" * 5000)
    assert problem == "plan.yaml:1: not valid YAML: nested more than 64 deep"


# -- field rules -------------------------------------------------------------------------------


@pytest.mark.parametrize("shared", ["/etc", "../up", "a/../../b", "contracts/..", ".", "/", "''"])
def test_shared_must_stay_inside_the_repo(shared: str) -> None:
    assert problems(f"shared: {shared}\n" + MINIMAL) == [
        "plan.yaml:1: shared: must be a directory inside the repo, relative to its root"
    ]


@pytest.mark.parametrize(
    "shared", ["contracts", "contracts/", "./contracts", "contracts/.", "x//y"]
)
def test_shared_is_normalized(shared: str) -> None:
    # The scope check compares path prefixes: "contracts/." must not hide writes to contracts/.
    expected = "x/y" if shared == "x//y" else "contracts"
    assert parse(f"shared: {shared}\n" + MINIMAL).plan.shared == expected


@pytest.mark.parametrize("name", ["ANTHROPIC_API_KEY", "_x", "a1"])
def test_good_env_names(name: str) -> None:
    assert parse(f"tasks: [{{id: a, run: x, env: [{name}]}}]").plan.tasks[0].env == [name]


@pytest.mark.parametrize("name", ["A-B", "1A", "''", "A B", "A=B"])
def test_bad_env_names(name: str) -> None:
    [problem] = problems(f"tasks: [{{id: a, run: x, env: [OK, {name}]}}]")
    assert problem.startswith("plan.yaml:1: tasks[0](a).env[1]: String should match pattern")


@pytest.mark.parametrize("name", ["PATH", "HOME", "RUNNER_OUT", "GIT_CONFIG_COUNT"])
def test_env_names_the_runner_sets_are_refused(name: str) -> None:
    # Passing them through would override the sandbox's own HOME, RUNNER_OUT or git config.
    [problem] = problems(f"tasks: [{{id: a, run: x, env: [{name}]}}]")
    assert problem == (
        f"plan.yaml:1: tasks[0](a).env: {name} is set by the runner in every sandbox; "
        "pick another name"
    )


@pytest.mark.parametrize("glob", ["''", "'  '"])
def test_empty_glob_is_refused(glob: str) -> None:
    assert problems(f"tasks: [{{id: a, run: x, scope: [{glob}]}}]") == [
        "plan.yaml:1: tasks[0](a).scope: a glob must not be empty"
    ]


@pytest.mark.parametrize("glob", ["../x", "src/../../x", "..", "src/..", "!../x"])
def test_glob_climbing_out_is_refused(glob: str) -> None:
    assert problems(f"tasks: [{{id: a, run: x, deny: ['{glob}']}}]") == [
        f"plan.yaml:1: tasks[0](a).deny: glob '{glob}' climbs out of the repo"
    ]


@pytest.mark.parametrize("value", ["0", "65", "-1"])
def test_concurrency_bounds(value: str) -> None:
    [problem] = problems(f"concurrency: {value}\n" + MINIMAL)
    assert problem.startswith("plan.yaml:1: concurrency: Input should be")


# -- PlanDoc: locating problems found later ----------------------------------------------------

LOCATED = """\
base: main
tasks:
  - id: a
    run: echo a
  - id: b
    run: echo b
    depends_on:
      - a
      - z
"""


def test_problem_locates_a_field_by_task_id() -> None:
    doc = parse(LOCATED)
    loc = doc.task_loc("b", "depends_on", 1)
    assert loc == ("tasks", 1, "depends_on", 1)
    assert doc.problem(loc, "unknown task 'z'") == (
        "plan.yaml:9: tasks[1](b).depends_on[1]: unknown task 'z'"
    )


def test_problem_for_an_absent_field_points_at_its_task() -> None:
    doc = parse(LOCATED)
    assert doc.problem(doc.task_loc("a", "scope"), "overlaps b") == (
        "plan.yaml:3: tasks[0](a).scope: overlaps b"
    )
    assert doc.problem(("base",), "not a commit") == "plan.yaml:1: base: not a commit"


def test_problem_without_lines_names_the_source() -> None:
    doc = PlanDoc(Plan(tasks=[Task(id="a", run="x")]), "plan.yaml")
    assert doc.problem(("shared",), "gone") == "plan.yaml: shared: gone"


def test_task_loc_of_an_unknown_task_raises() -> None:
    with pytest.raises(StopIteration):
        parse(LOCATED).task_loc("nope")


@pytest.mark.parametrize(
    ("loc", "data", "expected"),
    [
        ((), None, "(plan)"),
        (("tasks", 2, "scope", 0), None, "tasks[2].scope[0]"),
        (("tasks", 0, "scope"), {"tasks": [{"id": "api"}]}, "tasks[0](api).scope"),
        (("tasks", 5, "id"), {"tasks": [{"id": "api"}]}, "tasks[5].id"),
        (("tasks", 0), {"tasks": [{"id": 3}]}, "tasks[0]"),
        (("verify", "run"), {"verify": "x"}, "verify.run"),
    ],
)
def test_field_name(loc: tuple[str | int, ...], data: Any, expected: str) -> None:
    assert field_name(loc, data) == expected


# -- load_plan ---------------------------------------------------------------------------------


def test_load_plan_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    doc = load_plan(path)
    assert doc.source == str(path)
    assert doc.plan.tasks[0].id == "a"


def test_load_plan_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("tasks:\n  - id: a\n    run: x\n    scpe: []\n", encoding="utf-8")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert info.value.problems == [f"{path}:4: tasks[0](a).scpe: {UNKNOWN}"]
    assert info.value.exit_code == 2


def test_load_plan_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as info:
        load_plan(tmp_path / "nope.yaml")
    assert info.value.problems == [f"{tmp_path / 'nope.yaml'}: no such plan file"]


@pytest.mark.parametrize("kind", ["directory", "binary"])
def test_load_plan_unreadable(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "plan.yaml"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    [problem] = info.value.problems
    if kind == "directory":
        assert problem == f"{path}: cannot read: Is a directory"
    else:
        assert problem == f"{path}:1: not UTF-8 text (byte 0xff at column 1)"


# -- fuzz: any input is a PlanDoc or a PlanError, never another exception --------------------


def _parse_or_plan_error(text: str) -> None:
    try:
        doc = _parse_plan(text, "fuzz.yaml")
    except PlanError as exc:
        assert isinstance(exc, InputError)
        assert exc.problems
        assert all(p.startswith("fuzz.yaml") for p in exc.problems)
    else:
        assert isinstance(doc.plan, Plan)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_fuzz_arbitrary_text(text: str) -> None:
    _parse_or_plan_error(text)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "tasks:",
                "- ",
                "  ",
                "id: a",
                "run: x",
                "[",
                "]",
                "{",
                "}",
                ":",
                "&a",
                "*a",
                "!!int",
                "!foo",
                "<<:",
                "? ",
                "---",
                "\n",
                "'",
                '"',
                "#",
                "|",
                "\t",
                "scope:",
            ]
        ),
        max_size=30,
    )
)
def test_fuzz_yaml_like_text(tokens: list[str]) -> None:
    _parse_or_plan_error("".join(tokens))


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["a", "src/**", "../x", "/abs", "refuse", "HEAD", "..", "a..b"])
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
    ),
    max_leaves=20,
)
_task_fields = ["id", "run", "scope", "deny", "depends_on", "policy", "image", "timeout", "env"]
_plan_fields = ["base", "shared", "concurrency", "image", "policy", "timeout", "on_overlap",
                "on_conflict", "verify"]  # fmt: skip
_tasks = st.lists(
    st.dictionaries(st.sampled_from([*_task_fields, "scpe"]), _values, max_size=9), max_size=3
)
_plans = st.dictionaries(st.sampled_from([*_plan_fields, "bsae"]), _values, max_size=6).flatmap(
    lambda top: _tasks.map(lambda tasks: {**top, "tasks": tasks})
)


@settings(max_examples=200, deadline=None)
@given(_values)
def test_fuzz_arbitrary_data_as_yaml(data: Any) -> None:
    _parse_or_plan_error(yaml.safe_dump(data))


@settings(max_examples=200, deadline=None)
@given(_plans)
def test_fuzz_plan_shaped_data(data: dict[str, Any]) -> None:
    text = yaml.safe_dump(data, sort_keys=False)
    _parse_or_plan_error(text)
    try:
        _parse_plan(text, "fuzz.yaml")
    except PlanError as exc:
        # Every problem of a plan-shaped document is located by line.
        assert all(p.startswith("fuzz.yaml:") for p in exc.problems), exc.problems
