"""Agent presets: `agent: claude | codex | aider` in a task becomes the shell script it runs.

Pure: a preset compiles, at plan load, into a POSIX sh script (the task's `run`) that starts
the agent non-interactively with stdin closed, asks for its machine-readable output where it
has one, and keeps that output under $RUNNER_OUT/agent/ for runner.core.usage to read.

The flags, as their projects document them (checked 2026-11):
- Claude Code, "CLI reference" and "Headless mode" pages: `-p/--print` runs one prompt and
  exits; `--output-format stream-json` prints one JSON event per line, ending with a `result`
  event carrying `total_cost_usd`, `usage`, `modelUsage` and `num_turns` (in print mode
  stream-json needs `--verbose`); `--model`; `--dangerously-skip-permissions` (no prompts: the
  container is the sandbox). Stream rather than `json`: a run killed mid-way still leaves the
  per-message `usage` of what it did.
- Codex CLI, "Non-interactive mode" (`codex exec`): `--json` prints JSONL events, each
  `turn.completed` with `usage: {input_tokens, cached_input_tokens, output_tokens}` (cached is
  part of input; no cost); `-m/--model`; `--dangerously-bypass-approvals-and-sandbox` for an
  externally sandboxed environment; `--skip-git-repo-check`.
- aider, "Scripting aider" and "Options reference": `--message` sends one message and exits,
  `--yes-always`, `--no-pretty`, `--no-stream`, `--model`; it has no JSON output, but
  `--analytics-log FILE` writes JSONL events (`message_send` with `main_model`,
  `prompt_tokens`, `completion_tokens`, `cost`), also with `--no-analytics`. Its history
  files go to $RUNNER_OUT and `--no-gitignore` keeps it off .gitignore, so the repo sees
  only the agent's own edits.
"""

from __future__ import annotations

import json
import shlex
from pathlib import PurePosixPath
from typing import Literal, get_args

AgentName = Literal["claude", "codex", "aider"]
AGENTS: tuple[str, ...] = get_args(AgentName)
AGENT_DIR = "agent"
"""Under $RUNNER_OUT: the agent's own output, preset.json, exit_code."""
PRESET_FILE = "preset.json"
OUTPUT_FILE = {
    "claude": "claude.jsonl",
    "codex": "codex.jsonl",
    "aider": "aider.analytics.jsonl",
}
"""The file of each agent that usage is parsed from (under $RUNNER_OUT/agent/)."""
SHARED_PREFIX = "/shared/"


def check_prompt_file(path: str) -> str:
    """A repo-relative path or one under /shared/; raises ValueError otherwise."""
    pure = PurePosixPath(path)
    if ".." in pure.parts:
        raise ValueError(f"{path!r} climbs out of the repo (no '..')")
    if pure.is_absolute() and not path.startswith(SHARED_PREFIX):
        raise ValueError(f"{path!r}: give a path in the repo (relative) or under /shared/")
    if not pure.parts or path.endswith("/"):
        raise ValueError(f"{path!r} names a directory, not a file")
    return path


def compile_preset(
    agent: str,
    *,
    prompt: str | None = None,
    prompt_file: str | None = None,
    model: str | None = None,
    args: list[str] | tuple[str, ...] = (),
) -> str:
    """The shell script (run with `sh -e` at the repo root) that runs the agent.

    Exactly one of prompt and prompt_file. Raises ValueError for an unknown agent.
    """
    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r} (one of {', '.join(AGENTS)})")
    if (prompt is None) == (prompt_file is None):
        raise ValueError("give exactly one of prompt and prompt_file")
    q = shlex.quote
    preset = json.dumps({"agent": agent, "model": model})
    lines = [
        f"# runner agent preset: {agent} (the plan's `agent:`, compiled by runner.core.agents)",
        f'out="$RUNNER_OUT/{AGENT_DIR}"',
        'mkdir -p "$out" && rm -f "$out/exit_code"',
        f"printf '%s\\n' {q(preset)} >\"$out/{PRESET_FILE}\"",
    ]
    if prompt_file is not None:
        path = q(prompt_file)
        lines += [
            f"[ -r {path} ] || {{ echo {q(f'runner: prompt_file {prompt_file} is not there')}"
            " >&2; exit 2; }",
            f"prompt=$(cat -- {path})",
        ]
    else:
        lines.append(f"prompt={q(prompt or '')}")
    extra = "".join(f" {q(a)}" for a in args)
    with_model = f" --model {q(model)}" if model else ""
    out_file = f'"$out/{OUTPUT_FILE[agent]}"'
    if agent == "claude":
        cmd = (
            "claude -p --output-format stream-json --verbose --dangerously-skip-permissions"
            f'{with_model}{extra} -- "$prompt"'
        )
    elif agent == "codex":
        cmd = (
            "codex exec --json --dangerously-bypass-approvals-and-sandbox --skip-git-repo-check"
            f'{with_model}{extra} -- "$prompt"'
        )
    else:
        # aider prints text; its usage comes from the analytics log, so no pipe is needed.
        # `--message=` joined: argparse would take a prompt beginning with '-' for an option.
        lines.append(
            'aider --message="$prompt" --yes-always --no-pretty --no-stream --no-check-update'
            " --no-show-release-notes --no-gitignore --no-analytics"
            f" --analytics-log {out_file}"
            ' --chat-history-file "$out/aider.chat.md"'
            ' --input-history-file "$out/aider.input.history"'
            f"{with_model}{extra} </dev/null"
        )
        return "\n".join(lines) + "\n"
    # Output to the log (live) and to the file; POSIX sh has no pipefail, so the agent's own
    # exit status goes through a file (`||` also keeps `sh -e` from stopping before it).
    lines += [
        f'{{ {cmd} </dev/null || echo $? >"$out/exit_code"; }} | tee {out_file}',
        '[ ! -s "$out/exit_code" ] || exit "$(cat "$out/exit_code")"',
    ]
    return "\n".join(lines) + "\n"
