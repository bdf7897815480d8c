"""Agent presets for real: stand-in `claude`, `codex` and `aider` executables in a user image
built FROM runner/sandbox:1 replay recorded outputs (tests/fixtures/agents); `runner run` runs
the presets, `runner costs --json` gives per-task and per-model numbers; a stand-in killed at
its timeout gives an estimated or unknown cost, never 0."""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.conftest import RunPlan, git, runner_cli

FIXTURES = Path(__file__).parent.parent / "fixtures" / "agents"
SONNET, HAIKU = "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"

# Each stand-in checks what the preset must give it (the flags, stdin closed), leaves the
# prompt it got in the repo, then replays its agent's recorded output.
PRELUDE = """\
#!/bin/sh
set -e
if read -r _; then echo "stub: stdin is open" >&2; exit 92; fi
"""
KEEP_PROMPT = 'mkdir -p "out/$RUNNER_TASK" && printf "%s\\n" "$prompt" >"out/$RUNNER_TASK/prompt"\n'
STUBS = {
    "claude": PRELUDE
    + """\
[ "$1" = -p ] || { echo "stub claude: -p first" >&2; exit 90; }
case " $* " in *" --output-format stream-json --verbose "*) ;; *) exit 91 ;; esac
for a; do prompt=$a; done
"""
    + KEEP_PROMPT
    + """\
case $prompt in *hang*) cat /stubs/claude-cut.jsonl; exec sleep 600 ;; esac
cat /stubs/claude-stream.jsonl
""",
    "codex": PRELUDE
    + """\
[ "$1" = exec ] && [ "$2" = --json ] || { echo "stub codex: exec --json" >&2; exit 90; }
for a; do prompt=$a; done
"""
    + KEEP_PROMPT
    + "cat /stubs/codex.jsonl\n",
    "aider": PRELUDE
    + """\
log=
while [ $# -gt 0 ]; do
  case $1 in --analytics-log) log=$2 ;; --message=*) prompt=${1#--message=} ;; esac
  shift
done
[ -n "$log" ] || { echo "stub aider: no --analytics-log" >&2; exit 91; }
"""
    + KEEP_PROMPT
    + """\
cp /stubs/aider.analytics.jsonl "$log"
echo 'Tokens: 18k sent, 1.0k received. Cost: $0.02 message, $0.04 session.'
""",
}

PRICES = """\
models:
  claude-sonnet-4-5*: {input: 3, output: 15, cache_read: 0.30, cache_write: 3.75}
  claude-haiku-4-5*: {input: 1, output: 5, cache_read: 0.10, cache_write: 1.25}
  gpt-5*: {input: 1.25, output: 10, cache_read: 0.125}
  gpt-4.1: {input: 2, output: 8}
"""

PLAN = """\
image: {image}
tasks:
  - id: fix-claude
    agent: claude
    prompt: fix the parser
    scope: [out/fix-claude/**]
  - id: port-codex
    agent: codex
    prompt_file: docs/task.md
    model: gpt-5-codex
    scope: [out/port-codex/**]
  - id: doc-aider
    agent: aider
    prompt: write the docs
    model: gpt-4.1
    args: [--map-tokens, "0"]
    scope: [out/doc-aider/**]
  - id: hang-claude
    agent: claude
    prompt: hang until killed
    timeout: 10
    scope: [out/hang-claude/**]
"""

# What the recordings add up to (see tests/fixtures/agents/README.md).
CLAUDE_COST = 0.0342035
CUT_COST = (9 * 3 + 275 * 15 + 5120 * 0.30 + 5530 * 3.75) / 1e6
CODEX_COST = ((24763 - 24448) * 1.25 + 1122 * 10 + 24448 * 0.125) / 1e6
AIDER_COST = 0.04473


@pytest.fixture
def agent_image(tmp_path: Path, images: None, docker_client: docker.DockerClient) -> Iterator[str]:
    """A user image FROM runner/sandbox:1 with the stand-ins on PATH; removed after."""
    ctx = tmp_path / "image"
    (ctx / "bin").mkdir(parents=True)
    shutil.copytree(FIXTURES, ctx / "stubs")
    for name, text in STUBS.items():
        (ctx / "bin" / name).write_text(text)
        (ctx / "bin" / name).chmod(0o755)
    (ctx / "Dockerfile").write_text(
        "FROM runner/sandbox:1\nCOPY stubs/ /stubs/\nCOPY bin/ /usr/local/bin/\n"
    )
    tag = f"runner-test-agents:{secrets.token_hex(4)}"
    docker_client.images.build(path=str(ctx), tag=tag, pull=False, rm=True, forcerm=True)
    try:
        yield tag
    finally:
        docker_client.images.remove(tag, force=True)


def costs(repo: Path, *args: str, env: dict[str, str]) -> dict[str, Any]:
    proc = runner_cli("costs", *args, "--repo", str(repo), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_presets_run_and_costs_are_reported_estimated_or_unknown_never_zero(
    run_plan: RunPlan, agent_image: str, tmp_path: Path
) -> None:
    run = run_plan(
        PLAN.format(image=agent_image),
        {"README.md": "sample\n", "docs/task.md": "port the module, keep 'quotes' & $VARS\n"},
    )
    statuses = {t["id"]: t["status"] for t in run.result["tasks"]}
    assert statuses == {
        "fix-claude": "merged", "port-codex": "merged", "doc-aider": "merged",
        "hang-claude": "timeout",
    }, run.stderr  # fmt: skip
    # The prompt reached each agent verbatim (a prompt_file read from the task's clone).
    head = run.result["integration_ref"]
    assert run.show(head, "out/port-codex/prompt") == "port the module, keep 'quotes' & $VARS"
    assert run.show(head, "out/fix-claude/prompt") == "fix the parser"
    assert run.show(head, "out/doc-aider/prompt") == "write the docs"
    # The agent's JSON stream is in the task log too (live), and kept whole for usage.
    log = Path(run.task("fix-claude")["log_path"]).read_text()
    assert '"type": "result"' in log

    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES)
    priced = {"RUNNER_PRICES": str(prices)}
    doc = costs(run.repo, env=priced)
    assert doc["runs"] == [run.result["run_id"]] and doc["prices"] == str(prices)
    tasks = {r["task"]: r for r in doc["rows"]}
    assert set(tasks) == set(statuses)

    claude = tasks["fix-claude"]
    assert (claude["cost_usd"], claude["cost_source"], claude["model"], claude["turns"]) == (
        CLAUDE_COST, "reported", SONNET, 4,
    )  # fmt: skip
    assert (claude["input_tokens"], claude["cache_read_tokens"], claude["cache_write_tokens"],
            claude["output_tokens"]) == (425, 10650, 5750, 625)  # fmt: skip
    codex = tasks["port-codex"]
    assert (codex["model"], codex["cost_source"]) == ("gpt-5-codex", "estimated")
    assert codex["cost_usd"] == pytest.approx(CODEX_COST)
    assert (codex["input_tokens"], codex["cache_read_tokens"]) == (315, 24448)
    aider = tasks["doc-aider"]
    assert (aider["model"], aider["cost_source"], aider["turns"]) == ("gpt-4.1", "reported", 2)
    assert aider["cost_usd"] == pytest.approx(AIDER_COST)
    cut = tasks["hang-claude"]
    assert (cut["status"], cut["complete"], cut["cost_source"]) == ("timeout", False, "estimated")
    assert cut["cost_usd"] == pytest.approx(CUT_COST)
    assert (cut["input_tokens"], cut["output_tokens"]) == (9, 275)

    models = {r["model"]: r for r in costs(run.repo, "--by", "model", env=priced)["rows"]}
    assert set(models) == {SONNET, HAIKU, "gpt-5-codex", "gpt-4.1"}
    assert models[SONNET]["tasks"] == 2 and models[SONNET]["cost_source"] == "estimated"
    assert models[SONNET]["cost_usd"] == pytest.approx(0.0336015 + CUT_COST)
    assert (models[HAIKU]["cost_usd"], models[HAIKU]["cost_source"]) == (0.000602, "reported")
    assert models["gpt-4.1"]["cost_usd"] == pytest.approx(AIDER_COST)
    by_run = costs(run.repo, run.result["run_id"][:10], "--by", "run", env=priced)
    total = CLAUDE_COST + CODEX_COST + AIDER_COST + CUT_COST
    assert [r["cost_usd"] for r in by_run["rows"]] == [pytest.approx(total)]
    assert by_run["total"]["cost_usd"] == pytest.approx(total)
    assert by_run["total"]["cost_source"] == "estimated"

    # Without a prices file: what the agents reported stays, the rest is unknown (None).
    no_prices = {"XDG_CONFIG_HOME": str(tmp_path / "no-config")}
    bare_doc = costs(run.repo, "latest", env=no_prices)
    bare = {r["task"]: r for r in bare_doc["rows"]}
    assert (bare_doc["total"]["cost_usd"], bare_doc["total"]["cost_source"]) == (None, "unknown")
    assert bare_doc["total"]["cost_usd_known"] == pytest.approx(CLAUDE_COST + AIDER_COST)
    assert bare["fix-claude"]["cost_usd"] == CLAUDE_COST
    assert bare["doc-aider"]["cost_usd"] == pytest.approx(AIDER_COST)
    for task in ("port-codex", "hang-claude"):
        assert (bare[task]["cost_usd"], bare[task]["cost_source"]) == (None, "unknown")
    assert bare["hang-claude"]["output_tokens"] == 275  # tokens stay known
    table = runner_cli("costs", "--repo", str(run.repo), env=no_prices)
    assert table.returncode == 0 and "unknown" in table.stdout and "some costs are unknown" in (
        table.stdout
    )  # fmt: skip
    git(run.repo, "rev-parse", "--verify", head)  # the run's work is still there
