"""Agent presets: the plan fields, their errors (FILE:LINE: FIELD), and the compiled script as
`sh -e` runs it, against stand-in executables that record their arguments and stdin."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from runner.core.agents import AGENTS, OUTPUT_FILE, compile_preset
from runner.core.plan import Plan, parse_plan
from runner.errors import PlanError

TRICKY = '--help -x: fix "it"; it\'s $HOME `date` \\ \n second line & end'


def problems(text: str) -> list[str]:
    with pytest.raises(PlanError) as info:
        parse_plan(textwrap.dedent(text), "plan.yaml")
    return info.value.problems


def plan(text: str) -> Plan:
    return parse_plan(textwrap.dedent(text), "plan.yaml").plan


# -- plan fields -----------------------------------------------------------------------------
def test_a_preset_compiles_into_the_tasks_run_at_load() -> None:
    p = plan("""\
        tasks:
          - id: fix
            agent: claude
            prompt: fix the parser
            model: sonnet
            args: [--max-turns, "5"]
          - id: plain
            run: echo hi
        """)
    fix = p.task("fix")
    assert fix.agent == "claude" and fix.model == "sonnet" and fix.args == ["--max-turns", "5"]
    assert "claude -p --output-format stream-json --verbose" in fix.run
    assert '--model sonnet --max-turns 5 -- "$prompt" </dev/null' in fix.run
    assert p.task("plain").agent is None and p.task("plain").run == "echo hi"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    run: x\n    agent: claude\n    prompt: y\n",
         "plan.yaml:4: tasks[0](a).agent: give `run` or `agent`, not both"),
        ("    agent: codex\n",
         "plan.yaml:3: tasks[0](a).agent: give exactly one of `prompt` and `prompt_file`"),
        ("    agent: codex\n    prompt: p\n    prompt_file: f.md\n",
         "plan.yaml:3: tasks[0](a).agent: give exactly one of `prompt` and `prompt_file`"),
        ("    agent: gpt\n    prompt: p\n",
         "plan.yaml:3: tasks[0](a).agent: Input should be 'claude', 'codex' or 'aider'"),
        ("    run: x\n    model: m\n",
         "plan.yaml:4: tasks[0](a).model: only with `agent` (claude, codex or aider)"),
        ("    scope: [a]\n",
         "plan.yaml:2: tasks[0](a).run: missing: give `run` (a shell script) or `agent` "
         "(an agent preset)"),
        ("    agent: aider\n    prompt_file: ../secret.md\n",
         "plan.yaml:4: tasks[0](a).prompt_file: '../secret.md' climbs out of the repo (no '..')"),
        ("    agent: aider\n    prompt_file: /etc/passwd\n",
         "plan.yaml:4: tasks[0](a).prompt_file: '/etc/passwd': give a path in the repo "
         "(relative) or under /shared/"),
        ("    agent: aider\n    prompt_file: /shared/task.md\n",
         "plan.yaml:4: tasks[0](a).prompt_file: is under /shared/ but the plan has no "
         "`shared` directory"),
        ("    agent: aider\n    prompt: ''\n",
         "plan.yaml:4: tasks[0](a).prompt: String should have at least 1 character"),
    ],
)  # fmt: skip
def test_preset_errors_name_file_line_and_field(body: str, expected: str) -> None:
    assert problems("tasks:\n  - id: a\n" + body) == [expected]


def test_ill_typed_preset_fields_each_get_their_own_error_and_no_run_error() -> None:
    found = problems("""\
        tasks:
          - id: a
            agent: claude
            prompt: [not, text]
            args: [1, --x]
        """)
    assert found == [
        "plan.yaml:4: tasks[0](a).prompt: Input should be a valid string",
        "plan.yaml:5: tasks[0](a).args[0]: Input should be a valid string",
    ]


def test_a_prompt_file_under_shared_needs_the_plans_shared_dir() -> None:
    p = plan("""\
        shared: contracts
        tasks:
          - id: a
            agent: codex
            prompt_file: /shared/task.md
        """)
    assert "prompt=$(cat -- /shared/task.md)" in p.task("a").run


def test_the_schema_does_not_require_run() -> None:
    task = Plan.model_json_schema()["$defs"]["Task"]
    assert "run" not in task.get("required", []) and "agent" in task["properties"]


# -- the compiled script, run by sh ------------------------------------------------------------
STUB = """\
#!/bin/sh
# Records argv (one per line, NUL-free) and whether stdin had anything, then replays $REPLAY.
out="$STUB_LOG/$(basename "$0")"
: >"$out.argv"
for a; do printf '%s\\0' "$a" >>"$out.argv"; done
if read -r _line; then echo open >"$out.stdin"; else echo closed >"$out.stdin"; fi
while [ $# -gt 0 ]; do
  [ "$1" = --analytics-log ] && cp "$REPLAY" "$2"
  shift
done
[ "$(basename "$0")" = aider ] || cat "$REPLAY"
exit "${STUB_EXIT:-0}"
"""


def run_script(
    tmp_path: Path, script: str, agent: str, *, exit_code: int = 0, stdin: str = "typed\n"
) -> subprocess.CompletedProcess[str]:
    bin_dir, log, out, work = (tmp_path / n for n in ("bin", "log", "out", "work"))
    for d in (bin_dir, log, out, work):
        d.mkdir(exist_ok=True)
    stub = bin_dir / agent
    stub.write_text(STUB)
    stub.chmod(0o755)
    replay = tmp_path / "replay"
    replay.write_text('{"type": "turn.completed"}\n')
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RUNNER_OUT": str(out),
        "STUB_LOG": str(log),
        "REPLAY": str(replay),
        "STUB_EXIT": str(exit_code),
        "HOME": str(tmp_path),
    }
    # As the sandbox runs it (wrap.sh closes stdin too, the preset must not rely on that).
    return subprocess.run(
        ["/bin/sh", "-e", "-c", script], cwd=work, env=env, input=stdin,
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def argv(tmp_path: Path, agent: str) -> list[str]:
    return (tmp_path / "log" / f"{agent}.argv").read_text().split("\0")[:-1]


@pytest.mark.parametrize("agent", AGENTS)
def test_the_script_passes_the_prompt_verbatim_with_stdin_closed(
    tmp_path: Path, agent: str
) -> None:
    script = compile_preset(agent, prompt=TRICKY, model="m-1", args=["--extra", "a b"])
    proc = run_script(tmp_path, script, agent)
    assert proc.returncode == 0, proc.stderr
    args = argv(tmp_path, agent)
    assert (tmp_path / "log" / f"{agent}.stdin").read_text() == "closed\n"
    assert TRICKY in args or f"--message={TRICKY}" in args
    assert args[args.index("--model") :][:2] == ["--model", "m-1"]
    assert args[args.index("--extra") :][:2] == ["--extra", "a b"]
    saved = tmp_path / "out" / "agent" / OUTPUT_FILE[agent]
    assert saved.read_text() == '{"type": "turn.completed"}\n'
    preset = json.loads((tmp_path / "out" / "agent" / "preset.json").read_text())
    assert preset == {"agent": agent, "model": "m-1"}
    if agent != "aider":  # the JSON stream also reaches the task log
        assert proc.stdout == '{"type": "turn.completed"}\n'


def test_each_agent_gets_its_documented_non_interactive_flags(tmp_path: Path) -> None:
    expected = {
        "claude": ["-p", "--output-format", "stream-json", "--verbose",
                   "--dangerously-skip-permissions", "--", "go"],
        "codex": ["exec", "--json", "--dangerously-bypass-approvals-and-sandbox",
                  "--skip-git-repo-check", "--", "go"],
        "aider": ["--message=go", "--yes-always", "--no-pretty", "--no-stream",
                  "--no-check-update", "--no-show-release-notes", "--no-gitignore",
                  "--no-analytics",
                  "--analytics-log", f"{tmp_path}/out/agent/aider.analytics.jsonl",
                  "--chat-history-file", f"{tmp_path}/out/agent/aider.chat.md",
                  "--input-history-file", f"{tmp_path}/out/agent/aider.input.history"],
    }  # fmt: skip
    for agent, flags in expected.items():
        assert run_script(tmp_path, compile_preset(agent, prompt="go"), agent).returncode == 0
        assert argv(tmp_path, agent) == flags


@pytest.mark.parametrize("agent", AGENTS)
def test_the_agents_exit_status_is_the_tasks(tmp_path: Path, agent: str) -> None:
    proc = run_script(tmp_path, compile_preset(agent, prompt="go"), agent, exit_code=7)
    assert proc.returncode == 7
    # and the output is still kept for usage
    assert (tmp_path / "out" / "agent" / OUTPUT_FILE[agent]).exists()


def test_a_prompt_file_is_read_from_the_repo_and_a_missing_one_says_so(tmp_path: Path) -> None:
    script = compile_preset("codex", prompt_file="docs/my task.md")
    proc = run_script(tmp_path, script, "codex")
    assert proc.returncode == 2
    assert "runner: prompt_file docs/my task.md is not there" in proc.stderr
    (tmp_path / "work" / "docs").mkdir()
    (tmp_path / "work" / "docs" / "my task.md").write_text(TRICKY + "\n")
    assert run_script(tmp_path, script, "codex").returncode == 0
    assert argv(tmp_path, "codex")[-1] == TRICKY  # $(...) drops only the trailing newline


def test_compile_refuses_what_validation_would() -> None:
    with pytest.raises(ValueError, match="unknown agent"):
        compile_preset("gpt", prompt="x")
    with pytest.raises(ValueError, match="exactly one"):
        compile_preset("claude")
