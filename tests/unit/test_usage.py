"""Usage parsers on recorded agent outputs (tests/fixtures/agents), prices, sums, and
`usage_for` on a RUNNER_OUT as it comes home: cost is reported, estimated or unknown, never a
made-up 0."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.cli_costs import TaskUsage, rows
from runner.core.results import RunResult, TaskResult
from runner.core.usage import (
    NO_PRICES,
    Prices,
    Usage,
    load_prices,
    parse_aider,
    parse_claude,
    parse_codex,
    parse_prices,
    parse_usage_json,
    priced,
    prices_path,
    run_total,
    total,
    usage_for,
)
from runner.errors import InputError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "agents"
SONNET, HAIKU = "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"
CLAUDE_COST = 0.0342035
PRICES = parse_prices(
    textwrap.dedent("""\
    models:
      claude-sonnet-4-5*: {input: 3, output: 15, cache_read: 0.30, cache_write: 3.75}
      claude-haiku-4-5*: {input: 1, output: 5, cache_read: 0.10, cache_write: 1.25}
      gpt-5*: {input: 1.25, output: 10, cache_read: 0.125}
      gpt-4.1: {input: 2, output: 8}
    """),
    "prices.yaml",
)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# -- Claude Code ---------------------------------------------------------------------------
def test_claude_stream_result_gives_reported_cost_per_model() -> None:
    u = parse_claude(fixture("claude-stream.jsonl"))
    assert (u.source, u.complete, u.turns, u.model) == ("claude", True, 4, SONNET)
    assert (u.cost_usd, u.cost_source) == (0.0342035, "reported")
    # Totals over modelUsage (Sonnet's loop plus Haiku's side calls).
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens) == (
        425, 10650, 5750, 625,
    )  # fmt: skip
    assert u.tokens == 425 + 10650 + 5750 + 625
    by = {m.model: m for m in u.models}
    assert by[SONNET].cost_usd == 0.0336015 and by[SONNET].output_tokens == 587
    assert by[HAIKU].cost_usd == 0.000602 and by[HAIKU].input_tokens == 412
    assert priced(u, PRICES) == u  # a reported cost is never replaced by an estimate


def test_claude_json_result_object_reads_the_same() -> None:
    a, b = parse_claude(fixture("claude-result.json")), parse_claude(fixture("claude-stream.jsonl"))
    assert a.model_dump() == b.model_dump()


def test_claude_cut_off_counts_each_message_once_and_is_never_reported() -> None:
    u = parse_claude(fixture("claude-cut.jsonl"))
    # msg 1, and msg 2 (two events, one usage); the half-written last line is skipped.
    assert (u.input_tokens, u.cache_write_tokens, u.cache_read_tokens, u.output_tokens) == (
        9, 5530, 5120, 275,
    )  # fmt: skip
    assert (u.complete, u.turns, u.model, u.cost_usd, u.cost_source) == (
        False, 2, SONNET, None, "unknown",
    )  # fmt: skip
    est = priced(u, PRICES)
    assert est.cost_source == "estimated"
    assert est.cost_usd == pytest.approx((9 * 3 + 275 * 15 + 5120 * 0.30 + 5530 * 3.75) / 1e6)
    assert priced(u, NO_PRICES).cost_usd is None


def test_claude_nothing_written_is_unknown_not_zero() -> None:
    u = priced(parse_claude(""), PRICES)
    assert (u.tokens, u.cost_usd, u.cost_source, u.complete) == (None, None, "unknown", False)


# -- Codex -------------------------------------------------------------------------------------
def test_codex_turns_split_cached_input_and_are_estimated_with_the_presets_model() -> None:
    u = parse_codex(fixture("codex.jsonl"), "gpt-5-codex")
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens) == (24763 - 24448, 24448, 1122)
    assert (u.turns, u.complete, u.model, u.cost_source) == (1, True, "gpt-5-codex", "unknown")
    est = priced(u, PRICES)
    assert est.cost_source == "estimated"
    assert est.cost_usd == pytest.approx((315 * 1.25 + 1122 * 10 + 24448 * 0.125) / 1e6)
    assert priced(parse_codex(fixture("codex.jsonl")), PRICES).cost_source == "unknown"


def test_codex_cut_off_before_its_turn_ended_is_unknown() -> None:
    u = priced(parse_codex(fixture("codex-cut.jsonl"), "gpt-5-codex"), PRICES)
    assert (u.complete, u.tokens, u.cost_usd, u.cost_source) == (False, None, None, "unknown")


# -- aider -------------------------------------------------------------------------------------
def test_aider_analytics_sum_messages_with_reported_cost() -> None:
    u = parse_aider(fixture("aider.analytics.jsonl"))
    assert (u.input_tokens, u.output_tokens, u.tokens, u.turns) == (18297, 1017, 19314, 2)
    assert (u.model, u.complete, u.cost_source) == ("gpt-4.1", True, "reported")
    assert u.cost_usd == pytest.approx(0.04473)


def test_aider_without_its_exit_event_is_estimated_or_unknown() -> None:
    u = parse_aider(fixture("aider-cut.analytics.jsonl"))
    assert (u.complete, u.input_tokens, u.output_tokens) == (False, 8421, 612)
    assert priced(u, NO_PRICES).cost_usd is None
    est = priced(u, PRICES)
    assert est.cost_source == "estimated" and est.cost_usd == pytest.approx(0.021738)


# -- usage.json --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "tokens", "source"),
    [
        ('{"tokens": 1200}', 1200, "unknown"),
        ('{"input_tokens": 10, "output_tokens": 5}', 15, "unknown"),
        ('{"usage": {"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.5}}', 15, "reported"),
        ('{"tokens": 0}', 0, "unknown"),
        ('{"tokens": 5, "cost_usd": Infinity}', 5, "unknown"),
    ],
)
def test_usage_json_convention(text: str, tokens: int, source: str) -> None:
    u = parse_usage_json(text)
    assert u is not None and (u.tokens, u.cost_source) == (tokens, source)


@pytest.mark.parametrize("text", ["", "[]", '{"tokens": "many"}', '{"tokens": -3}', "{"])
def test_usage_json_that_says_nothing_usable_is_none(text: str) -> None:
    assert parse_usage_json(text) is None


def test_a_total_without_split_cannot_be_estimated() -> None:
    u = parse_usage_json('{"tokens": 1200, "model": "gpt-4.1"}')
    assert u is not None and priced(u, PRICES).cost_source == "unknown"


# -- prices --------------------------------------------------------------------------------------
def test_prices_exact_name_before_the_longest_glob() -> None:
    p = parse_prices("models:\n  a*: {input: 1, output: 1}\n  ab*: {input: 2, output: 2}\n"
                     "  abc: {input: 3, output: 3}\n", "p.yaml")  # fmt: skip
    assert [p.lookup(m).input for m in ("abc", "abd", "axe")] == [3, 2, 1]  # type: ignore[union-attr]
    assert p.lookup("zzz") is None and p.lookup(None) is None


def test_cache_tokens_without_a_cache_price_are_not_guessed() -> None:
    u = Usage(model="m", input_tokens=1, output_tokens=1, cache_read_tokens=5)
    p = parse_prices("models: {m: {input: 1, output: 1}}", "p.yaml")
    assert priced(u, p).cost_source == "unknown"


def test_bad_prices_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("models:\n  gpt-4.1:\n    input: -2\n    output: 8\n")
    with pytest.raises(InputError, match=r"prices.yaml:3: models.gpt-4.1.input: Input should be"):
        load_prices(path)
    path.write_text("models: {m: {input: .inf, output: 1}}\n")
    with pytest.raises(
        InputError, match=r"prices.yaml:1: models.m.input: Input should be a finite"
    ):
        load_prices(path)
    path.write_text("models: [\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_prices(path)
    assert load_prices(tmp_path / "none.yaml") == NO_PRICES
    assert prices_path(None, {"XDG_CONFIG_HOME": "/c"}) == Path("/c/runner/prices.yaml")
    assert prices_path(path, {}) == path


# -- sums ---------------------------------------------------------------------------------------
def test_a_total_is_known_only_when_every_part_is_and_takes_the_weakest_source() -> None:
    rep = Usage(input_tokens=1, output_tokens=1, cost_usd=0.5, cost_source="reported")
    est = Usage(input_tokens=2, output_tokens=2, cost_usd=0.25, cost_source="estimated")
    unk = Usage(input_tokens=3, output_tokens=3)
    assert (total([rep, rep]).cost_usd, total([rep, rep]).cost_source) == (1.0, "reported")
    assert (total([rep, est]).cost_usd, total([rep, est]).cost_source) == (0.75, "estimated")
    both = total([rep, est, unk])
    assert (both.cost_usd, both.cost_source, both.input_tokens) == (None, "unknown", 6)
    assert (total([]).cost_usd, total([]).cost_source, total([]).tokens) == (None, "unknown", None)


# -- usage_for on a RUNNER_OUT dir ---------------------------------------------------------------
def out_dir(
    tmp_path: Path, name: str, agent: str | None, model: str | None, files: dict[str, str]
) -> Path:
    d = tmp_path / name
    (d / "agent").mkdir(parents=True)
    if agent:
        (d / "agent" / "preset.json").write_text(json.dumps({"agent": agent, "model": model}))
    for rel, text in files.items():
        (d / rel).write_text(text)
    return d


def test_usage_for_reads_the_presets_output_and_its_model(tmp_path: Path) -> None:
    files = {"agent/codex.jsonl": fixture("codex.jsonl")}
    d = out_dir(tmp_path, "c", "codex", "gpt-5-codex", files)
    u = usage_for(d, None, PRICES)
    assert u is not None and (u.source, u.model) == ("codex", "gpt-5-codex")
    assert u.cost_source == "estimated"
    assert usage_for(d, "codex", PRICES) == u


def test_usage_for_a_preset_that_left_nothing_is_unknown_never_zero(tmp_path: Path) -> None:
    d = out_dir(tmp_path, "c", "claude", None, {})
    u = usage_for(d, None, PRICES)
    assert u is not None and (u.complete, u.cost_usd, u.cost_source) == (False, None, "unknown")


def test_usage_for_without_a_preset_uses_usage_json_or_says_nothing(tmp_path: Path) -> None:
    text = '{"input_tokens": 10, "output_tokens": 5, "model": "gpt-4.1"}'
    d = out_dir(tmp_path, "p", None, None, {"usage.json": text})
    u = usage_for(d, None, PRICES)
    assert u is not None and (u.cost_source, u.cost_usd) == ("estimated", (10 * 2 + 5 * 8) / 1e6)
    assert usage_for(out_dir(tmp_path, "q", None, None, {}), None, PRICES) is None
    assert usage_for(None, "claude", PRICES) is None
    assert usage_for(tmp_path / "missing", None, PRICES) is None


def test_usage_for_ignores_a_symlink_the_task_left(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text('{"tokens": 99}')
    d = out_dir(tmp_path, "s", None, None, {})
    (d / "usage.json").symlink_to(secret)
    assert usage_for(d, None, PRICES) is None


# -- costs rows ----------------------------------------------------------------------------------
def test_costs_rows_per_task_model_and_run() -> None:
    claude = parse_claude(fixture("claude-stream.jsonl"))
    codex = priced(parse_codex(fixture("codex.jsonl"), "gpt-5-codex"), PRICES)
    cut = priced(parse_claude(fixture("claude-cut.jsonl")), PRICES)
    usages = [TaskUsage("r1", "a", "merged", claude), TaskUsage("r1", "b", "merged", codex),
              TaskUsage("r2", "c", "timeout", cut)]  # fmt: skip
    per_task = rows(usages, "task")
    assert [(r["task"], r["cost_source"], r["complete"]) for r in per_task] == [
        ("a", "reported", True), ("b", "estimated", True), ("c", "estimated", False),
    ]  # fmt: skip
    per_model = {r["model"]: r for r in rows(usages, "model")}
    assert set(per_model) == {SONNET, HAIKU, "gpt-5-codex"}
    assert per_model[SONNET]["tasks"] == 2 and per_model[SONNET]["cost_source"] == "estimated"
    assert per_model[SONNET]["cost_usd"] == pytest.approx(0.0336015 + cut.cost_usd)  # type: ignore[operator]
    assert per_model[HAIKU]["cost_usd"] == 0.000602
    per_run = {r["run_id"]: r for r in rows(usages, "run")}
    assert per_run["r1"]["cost_usd"] == pytest.approx(0.0342035 + codex.cost_usd)  # type: ignore[operator]
    assert per_run["r1"]["tasks"] == 2 and per_run["r2"]["cost_source"] == "estimated"


def test_task_result_and_run_result_carry_usage() -> None:
    u = parse_claude(fixture("claude-stream.jsonl"))
    t = TaskResult(id="a", wave=1, usage=u)
    doc = RunResult(run_id="r", repo="/r", plan="p", base="HEAD", base_commit="c",
                    integration_ref="i", started_at="t", state_dir="/s", tasks=[t],
                    usage=total([u]))  # fmt: skip
    back = RunResult.model_validate_json(doc.model_dump_json())
    assert back.tasks[0].usage == u and back.usage is not None
    assert back.usage.cost_usd == 0.0342035
    assert isinstance(Prices.model_json_schema(), dict)


def test_costs_rows_say_the_known_part_when_the_total_is_unknown() -> None:
    claude = parse_claude(fixture("claude-stream.jsonl"))
    cut = priced(parse_claude(fixture("claude-cut.jsonl")), NO_PRICES)
    usages = [TaskUsage("r", "a", "merged", claude), TaskUsage("r", "b", "timeout", cut)]
    (run,) = rows(usages, "run")
    assert (run["cost_usd"], run["cost_source"]) == (None, "unknown")
    assert run["cost_usd_known"] == 0.0342035
    (only_cut,) = rows([usages[1]], "run")
    assert only_cut["cost_usd_known"] is None and only_cut["cost_usd"] is None


def test_run_total_sums_what_tasks_said_and_is_none_when_none_did() -> None:
    claude = parse_claude(fixture("claude-stream.jsonl"))
    aider = parse_aider(fixture("aider.analytics.jsonl"))
    both = run_total([claude, None, aider])
    assert both is not None and both.cost_source == "reported"
    assert both.cost_usd == pytest.approx(CLAUDE_COST + 0.04473)
    assert both.turns == 6 and both.input_tokens == 425 + 18297
    assert run_total([None, None]) is None and run_total([]) is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(["type", "usage", "modelUsage", "message", "total_cost_usd", "num_turns",
                        "event", "properties", "model", "tokens", "input_tokens"])  # fmt: skip
EVENT = st.dictionaries(KEYS, JSON | st.sampled_from(["result", "assistant", "turn.completed",
                        "message_send", "exit", "system"]), max_size=5)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENT, max_size=6), st.text(max_size=30))
def test_parsers_take_any_task_output_without_raising(events: list[Any], tail: str) -> None:
    # What a task leaves in RUNNER_OUT is the task's: never trusted, never a traceback.
    text = "\n".join(json.dumps(e) for e in events) + "\n" + tail
    for u in (parse_claude(text), parse_codex(text, "m"), parse_aider(text)):
        p = priced(u, PRICES)
        assert p.cost_source == "unknown" or p.cost_usd is not None
        assert p.cost_source != "unknown" or p.cost_usd is None
    parse_usage_json(text)
