"""Fuzzed command lines against the real `runner` app, for the commands that need no daemon.

Every argv ends in exit 0 (help, a valid plan, a schema, a status) or in one clear message and
exit 1, 2 or 3; never a traceback or an "internal error", never a crash log, never a change
to the repo. `gc`, `run`, `demo` and `images build` are only reached with --help, and Docker
is pointed at a port that refuses connections, so nothing here can touch a daemon.
"""

from __future__ import annotations

import json
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from runner.cli import app
from runner.core.runstate import EVENTS
from runner.journal import Journal
from runner.settings import Settings
from tests.unit.test_fuzz_plan import FUZZ, VALID, World, make_world

RUN_IDS = ["20260101-090000-aaaaaa", "20260101-090000-aaaabb", "20260102-100000-cccccc"]
# Never sent bare: they would act (run a plan, remove Docker objects, build images).
ACTING = {"run", "gc", "demo", "images", "build"}
COMMANDS = ["plan", "schema", "status", "--help", "-h", "plan --help", "status --help",
            "schema --help", "run --help", "gc --help", "demo --help", "images --help",
            "images build --help", ""]  # fmt: skip


def _planned(run: str) -> dict[str, object]:
    return {
        "run_id": run, "repo": "/r", "plan": "/p.yaml", "base": "main", "base_commit": "b" * 40,
        "integration_ref": f"refs/heads/runner/{run}/integration", "state_dir": "/s",
        "waves": [["a"]], "tasks": [{"id": "a", "wave": 1, "depends_on": [], "env": []}],
    }  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = make_world(tmp_path_factory.mktemp("cli"))
    (w.plans / "valid.yaml").write_text(yaml.dump(VALID, sort_keys=False))
    (w.plans / "bad.yaml").write_text("tasks:\n  - id: a\n    scpe: [x]\n")
    (w.plans / "runtime.yaml").write_text("runtime: runsc\n")
    (w.plans / "asks.yaml").write_text("policy: runtime.yaml\ntasks: [{id: a, run: x}]\n")
    (w.plans / "binary.yaml").write_bytes(b"\xff\xfe\x00\x01")
    runs = w.repo / ".git" / "runner" / "runs"
    for run in RUN_IDS:
        (runs / run).mkdir(parents=True)
    with Journal.open(runs / RUN_IDS[2] / "journal.jsonl") as journal:  # a run that died
        journal.append("planned", **_planned(RUN_IDS[2]))
        journal.append("task_started", task="a", start="b" * 40, workspace="/ws", container="c")
    (runs / RUN_IDS[1] / "journal.jsonl").write_text('{"seq": 1, "event": "judged"}\n')
    return w


@pytest.fixture(scope="module")
def no_daemon() -> Iterator[str]:
    """A Docker address that refuses connections: a port of ours, bound, never listening.

    (A missing unix socket would do too, but docker-py leaks the socket of that failed
    connect, a ResourceWarning under -W error.)"""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"tcp://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(autouse=True)
def _isolated(world: World, no_daemon: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(tempfile, "tempdir", str(world.tmp))  # where a crash log would go
    monkeypatch.setenv("DOCKER_HOST", no_daemon)
    monkeypatch.delenv("RUNNER_STATE_DIR", raising=False)
    monkeypatch.setenv("PRESENT", "value")  # the env a task of the valid plan passes
    monkeypatch.chdir(world.repo)  # `--repo .` and relative paths mean the fuzz repo
    yield


def invoke(world: World, argv: list[str]) -> str:
    """Run argv through the app; check the outcome and that nothing changed; the output."""
    assert not (set(argv) & ACTING) or "--help" in argv, argv
    before = world.snapshot()
    result = CliRunner().invoke(app, argv, catch_exceptions=True)
    out = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{argv!r} raised {result.exception!r}\n{out}")
    assert result.exit_code in (0, 1, 2, 3), (argv, result.exit_code, out)
    assert "Traceback" not in out and "internal error" not in out, (argv, out)
    if result.exit_code != 0:
        assert out.strip(), f"{argv!r} failed without a word"
    assert world.snapshot() == before, f"{argv!r} changed the repo"
    _nothing_in(world.tmp, argv)
    return out


def _nothing_in(tmp: Path, argv: object) -> None:
    left = sorted(tmp.iterdir())
    for path in left:  # removed, so the next test does not fail for this one's file
        path.unlink()
    assert left == [], f"{argv!r} wrote to the temp dir"


def _paths(world: World) -> list[str]:
    p = world.plans
    return [str(p / n) for n in ("valid.yaml", "bad.yaml", "asks.yaml", "binary.yaml")] + [
        str(world.repo), str(p), "/nonexistent/plan.yaml", "/dev/null", "nope.yaml",
    ]  # fmt: skip


_TOKENS = ["--repo", "--json", "--result", "--help", "-h", "--all", "--caches", "--nope", "-x",
           "--repo=", "--json=1", "--result=no", "--", "-", "", ".", "..", "/", "latest",
           "20260101", "2026", RUN_IDS[0], RUN_IDS[2], "../runs", "[red]x[/]", "\x1b[2J",
           "\udcff", "é", " ", "-" * 3, "a" * 300, "--repo=/", "--repo=..", "--force"]  # fmt: skip
_text = st.text(max_size=10).filter(lambda t: "\x00" not in t and t.strip() not in ACTING)


@st.composite
def _argvs(draw: st.DrawFn, world: World) -> list[str]:
    argv = draw(st.sampled_from(COMMANDS)).split()
    tokens = st.sampled_from(_TOKENS) | st.sampled_from(_paths(world)) | _text
    return argv + draw(st.lists(tokens, max_size=5))


def test_fuzz_command_lines(world: World) -> None:
    # The strategy needs the world's paths, so @given is applied inside.
    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        invoke(world, data.draw(_argvs(world)))

    run()


@FUZZ
@given(
    st.sampled_from(["valid.yaml", "bad.yaml", "asks.yaml", "binary.yaml", "nope.yaml", "."]),
    st.sampled_from([".", "", "..", "/", "src", "/nonexistent", "\udcff", "plans"]),
)
def test_fuzz_plan_command_paths(world: World, plan: str, repo: str) -> None:
    out = invoke(world, ["plan", str(world.plans / plan), "--repo", repo])
    if plan == "valid.yaml" and repo in (".", "src"):
        assert "3 tasks in 2 waves" in out


def test_plan_of_a_valid_plan_prints_its_waves(world: World) -> None:
    out = invoke(world, ["plan", str(world.plans / "valid.yaml")])
    assert "3 tasks in 2 waves" in out and "wave 2:" in out


def test_a_runtime_is_not_checked_without_a_daemon(world: World) -> None:
    out = invoke(world, ["plan", str(world.plans / "asks.yaml")])
    assert "not checked: runtime runsc (no Docker daemon)" in out


def test_schema_is_json(world: World) -> None:
    for argv in (["schema"], ["schema", "--result"]):
        schema: dict[str, Any] = json.loads(invoke(world, argv))
        assert schema["type"] == "object"


@pytest.mark.parametrize(
    ("which", "code", "said"),
    [
        ("latest", 0, "it died"),
        (RUN_IDS[1], 3, "before `planned`"),
        (RUN_IDS[0], 2, "has no journal"),
        ("2026", 2, "ambiguous"),
        ("../runs", 2, "no run"),
    ],
)
def test_status_of_each_kind_of_run(world: World, which: str, code: int, said: str) -> None:
    result = CliRunner().invoke(app, ["status", which])
    assert result.exit_code == code, result.output
    assert said in result.output
    invoke(world, ["status", which, "--json"])


# -- the environment: RUNNER_* settings are read when a command begins -------------------------

_SETTINGS = [f"RUNNER_{name.upper()}" for name in Settings.model_fields]
_env_values = st.sampled_from(
    ["", "abc", "-1", "0", "1e400", "nan", "[", "[]", '["x"]', '["127.0.0.1"]', "{}", "true",
     "maybe", "json", "xml", "runsc", "a b", "/nonexistent", "/dev/null", "\udcff", "é"]
) | st.text(max_size=8).filter(lambda t: "\x00" not in t)  # fmt: skip


@FUZZ
@given(
    st.dictionaries(st.sampled_from(_SETTINGS), _env_values, min_size=1, max_size=3),
    st.sampled_from(["plan valid.yaml", "status", "schema", "plan asks.yaml"]),
)
def test_fuzz_settings_from_the_environment(
    world: World, env: dict[str, str], command: str
) -> None:
    # Was: a bad value (RUNNER_DOCKER_TIMEOUT=abc) was a pydantic ValidationError out of
    # Settings(): "internal error", exit 3, and a crash log in the temp dir.
    name, *rest = command.split()
    argv = [name, *(str(world.plans / r) for r in rest)]
    before = world.snapshot()
    result = CliRunner().invoke(app, argv, env=env)
    out = result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), (env, result.exception)
    assert "Traceback" not in out and "internal error" not in out, (env, out)
    assert result.exit_code in (0, 2, 3), (env, out)
    if "environment variable RUNNER_" in out:
        assert result.exit_code == 2 and "fix or unset it" in out
    assert world.snapshot() == before
    _nothing_in(world.tmp, env)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("abc", "Input should be a valid number"),
        # Was: accepted, then int(inf) in connect(): OverflowError, an internal error.
        ("1e400", "Input should be a finite number"),
        ("nan", "Input should be a finite number"),
        ("0", "Input should be greater than or equal to 1"),
    ],
)
def test_a_bad_setting_names_its_variable(world: World, value: str, said: str) -> None:
    plan = str(world.plans / "asks.yaml")  # a runtime to check: it connects to Docker
    result = CliRunner().invoke(app, ["plan", plan], env={"RUNNER_DOCKER_TIMEOUT": value})
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: environment variable RUNNER_DOCKER_TIMEOUT: {said}")
    _nothing_in(world.tmp, "no crash log")


# -- `status` reads a journal another process wrote: any content, one clear answer -------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8,
)  # fmt: skip
_FIELDS = ["task", "wave", "status", "tasks", "waves", "run_id", "start", "head", "commit",
           "exit_code", "result", "signal", "error", "integration_commit", "reason"]  # fmt: skip


@st.composite
def _journals(draw: st.DrawFn) -> bytes:
    lines = []
    if draw(st.booleans()):
        lines.append(json.dumps({"seq": 1, "time": "t", "event": "planned",
                                 **_planned(RUN_IDS[2])}))  # fmt: skip
    for seq in range(len(lines) + 1, len(lines) + 1 + draw(st.integers(0, 6))):
        name = draw(st.sampled_from([*EVENTS, "new"]))
        seq_said = draw(st.sampled_from([seq, 0, -1, "x", None]))
        event: dict[str, Any] = {"seq": seq_said, "time": "t", "event": name}
        event |= draw(st.dictionaries(st.sampled_from(_FIELDS), _json_values, max_size=4))
        lines.append(json.dumps(event))
    raw = ("\n".join(lines) + "\n").encode()
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\n", b"{", b"\x00", b'"'])) + raw[at:]
    return raw


@FUZZ
@given(_journals(), st.booleans())
def test_fuzz_status_of_any_journal(world: World, raw: bytes, as_json: bool) -> None:
    path = world.repo / ".git" / "runner" / "runs" / RUN_IDS[0] / "journal.jsonl"
    try:
        path.write_bytes(raw)
        invoke(world, ["status", RUN_IDS[0], *(["--json"] if as_json else [])])
    finally:
        path.unlink()
