"""Tokens and cost of a task, from what its agent wrote, priced honestly.

Cost has a source: `reported` (the agent's own output says it, and the output is complete),
`estimated` (tokens times the user's prices file), or `unknown` (then cost is None, never 0).
Tokens are split as providers bill them: `input_tokens` is input read at full price (neither
read from nor written to the prompt cache), `cache_read_tokens` and `cache_write_tokens` the
rest of the input, `output_tokens` the output (reasoning included).

Sources, by what the task ran (runner.core.agents keeps them under $RUNNER_OUT/agent/):
- claude: Claude Code `--output-format stream-json` (or `json`): the `result` event's
  `total_cost_usd`, `usage`, `modelUsage`, `num_turns`; cut off before it, the `usage` of each
  `assistant` message (Claude Code docs, "Headless mode" / SDK message types).
- codex: `codex exec --json` JSONL, `turn.completed` events' `usage` (Codex docs,
  "Non-interactive mode"; cached_input_tokens is part of input_tokens there).
- aider: the `--analytics-log` JSONL, `message_send` events (aider's analytics.py).
- any task: $RUNNER_OUT/usage.json, `{"tokens": N}` or `{"input_tokens", "output_tokens"}`
  (optionally `cache_read_tokens`, `cache_write_tokens`, `model`, `cost_usd`), as before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runner.core.agents import AGENT_DIR, AGENTS, OUTPUT_FILE, PRESET_FILE
from runner.core.yamlmarks import YamlSyntaxError, line_for, load_with_lines
from runner.errors import InputError

CostSource = Literal["reported", "estimated", "unknown"]
USAGE_FILE = "usage.json"
MAX_READ = 64 * 1024**2  # the policy's default max_out: nothing bigger comes home anyway


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)


class Tokens(_Doc):
    """Tokens and cost of one model (or of everything, in Usage)."""

    model: str | None = None
    input_tokens: int | None = None
    """Input at full price (not read from or written to the prompt cache)."""
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    output_tokens: int | None = None
    tokens: int | None = None
    """All of the above together (or the only number a task reported)."""
    cost_usd: float | None = None
    """None when not known: never 0 for "unknown"."""
    cost_source: CostSource = "unknown"


class Usage(Tokens):
    """What one attempt of a task used."""

    source: str | None = None
    """Where it was read from: claude, codex, aider or usage.json."""
    turns: int | None = None
    """Agent turns (Claude's num_turns, Codex's completed turns, aider's messages)."""
    complete: bool = True
    """False when the output ended early (killed mid-way): the numbers are a lower bound."""
    models: list[Tokens] = []
    """Per model, when the agent used more than one or said which."""


class Price(_Doc):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)


class Prices(_Doc):
    """The user's prices file: `models: {NAME-or-glob: {input, output, cache_read,
    cache_write}}`, USD per million tokens."""

    models: dict[str, Price] = {}

    def lookup(self, model: str | None) -> Price | None:
        """The exact name first, then the longest glob that matches (`claude-sonnet-4*`)."""
        if model is None:
            return None
        if model in self.models:
            return self.models[model]
        globs = sorted((k for k in self.models if fnmatchcase(model, k)), key=len, reverse=True)
        return self.models[globs[0]] if globs else None


NO_PRICES = Prices()


# -- prices ---------------------------------------------------------------------------------
def parse_prices(text: str, source: str) -> Prices:
    """Raises InputError naming FILE:LINE: field."""
    try:
        data, lines = load_with_lines(text)
    except YamlSyntaxError as exc:
        raise InputError(f"{source}:{exc.line or 1}: not valid YAML: {exc.message}") from None
    if data is None:
        return NO_PRICES
    try:
        return Prices.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc) or "(file)"
            problems.append(f"{source}:{line_for(lines, loc) or 1}: {where}: {err['msg']}")
        raise InputError(
            "\n".join(problems),
            hint="prices are `models: {NAME: {input: USD, output: USD, cache_read: USD, "
            "cache_write: USD}}` per million tokens",
        ) from None


def prices_path(setting: Path | None, env: Mapping[str, str]) -> Path:
    """RUNNER_PRICES (Settings.prices), else $XDG_CONFIG_HOME/runner/prices.yaml."""
    if setting is not None:
        return setting
    config = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "runner" / "prices.yaml"


def load_prices(path: Path | None) -> Prices:
    """The prices file at path; none (every cost not reported stays unknown) when path is None
    or names no file."""
    if path is None or not path.is_file():
        return NO_PRICES
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the prices file: {exc}") from None
    return parse_prices(text, str(path))


def price(tokens: Tokens, prices: Prices) -> Tokens:
    """Tokens with an estimated cost when it is not reported and can be computed."""
    if tokens.cost_source == "reported" and tokens.cost_usd is not None:
        return tokens
    rate = prices.lookup(tokens.model)
    cost = _estimate(tokens, rate) if rate else None
    if cost is None:
        return tokens.model_copy(update={"cost_usd": None, "cost_source": "unknown"})
    return tokens.model_copy(update={"cost_usd": cost, "cost_source": "estimated"})


def _estimate(t: Tokens, rate: Price) -> float | None:
    if t.input_tokens is None or t.output_tokens is None:
        return None
    total = t.input_tokens * rate.input + t.output_tokens * rate.output
    for count, per in (
        (t.cache_read_tokens, rate.cache_read),
        (t.cache_write_tokens, rate.cache_write),
    ):
        if count:
            if per is None:
                return None  # tokens of a kind the user has no price for
            total += count * per
    return round(total / 1e6, 10)


def priced(usage: Usage, prices: Prices) -> Usage:
    """Cost for the whole and per model. A cut-off output never counts as `reported`: its
    reported cost (if any) covers only part of the work, so it is estimated or unknown."""
    if not usage.complete:
        usage = _unreport(usage)
    if not usage.models:
        return Usage.model_validate(price(usage, prices).model_dump())
    models = [price(m, prices) for m in usage.models]
    if usage.cost_source == "reported" and usage.cost_usd is not None:
        return usage.model_copy(update={"models": models})
    costs = [m.cost_usd for m in models]
    if all(c is not None for c in costs):
        source: CostSource = "reported"
        if any(m.cost_source == "estimated" for m in models):
            source = "estimated"
        total: float | None = round(sum(c for c in costs if c is not None), 10)
    else:
        source, total = "unknown", None
    return usage.model_copy(update={"models": models, "cost_usd": total, "cost_source": source})


def _unreport(usage: Usage) -> Usage:
    gone = {"cost_usd": None, "cost_source": "unknown"}
    return usage.model_copy(
        update={**gone, "models": [m.model_copy(update=gone) for m in usage.models]}
    )


# -- sums -----------------------------------------------------------------------------------
def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


def total(parts: Iterable[Tokens], model: str | None = None) -> Usage:
    """The sum of several usages (attempts, tasks, a run). Cost is known only when every
    part's is; its source is the weakest of theirs (unknown < estimated < reported)."""
    items = list(parts)
    out = Usage(model=model, cost_source="reported" if items else "unknown")
    cost: float | None = 0.0
    for p in items:
        out.input_tokens = _add(out.input_tokens, p.input_tokens)
        out.cache_read_tokens = _add(out.cache_read_tokens, p.cache_read_tokens)
        out.cache_write_tokens = _add(out.cache_write_tokens, p.cache_write_tokens)
        out.output_tokens = _add(out.output_tokens, p.output_tokens)
        out.tokens = _add(out.tokens, p.tokens)
        if isinstance(p, Usage):
            out.turns = _add(out.turns, p.turns)
            out.complete = out.complete and p.complete
        if p.cost_usd is None or cost is None:
            cost = None
            out.cost_source = "unknown"
        else:
            cost += p.cost_usd
            if p.cost_source == "estimated" and out.cost_source == "reported":
                out.cost_source = "estimated"
    out.cost_usd = round(cost, 10) if cost is not None and items else None
    return out


def run_total(usages: Iterable[Usage | None]) -> Usage | None:
    """RunResult.usage: the sum of the tasks' (or attempts') usage; None when none said any."""
    said = [u for u in usages if u is not None]
    return total(said) if said else None


def by_model(usage: Usage) -> list[Tokens]:
    """The per-model parts of a usage (itself when it has none)."""
    return list(usage.models) if usage.models else [usage]


def _with_total(t: dict[str, Any]) -> dict[str, Any]:
    kinds = [
        t.get(k)
        for k in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")
    ]
    if t.get("tokens") is None and any(k is not None for k in kinds):
        t["tokens"] = sum(k for k in kinds if k is not None)
    return t


# -- parsers (pure: text in, Usage out) -----------------------------------------------------
def _json_lines(text: str) -> Iterator[dict[str, Any]]:
    """JSON objects one per line; a cut-off last line (or any non-JSON line) is skipped."""
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield obj


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _num(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    return float(value) if ok and math.isfinite(value) else None  # no Infinity from a task


def parse_claude(text: str) -> Usage:
    """Claude Code's `stream-json` events or its single `json` result object."""
    try:
        whole = json.loads(text)
        events: list[dict[str, Any]] = [whole] if isinstance(whole, dict) else []
    except ValueError:
        events = list(_json_lines(text))
    result = next((e for e in reversed(events) if e.get("type") == "result"), None)
    init_model = next(
        (
            e["model"]
            for e in events
            if e.get("type") == "system" and isinstance(e.get("model"), str)
        ),
        None,
    )
    if result is not None:
        return _claude_result(result, init_model)
    # Cut off before the result: each assistant message's usage (one message can arrive as
    # several events with the same id and usage; count it once).
    seen: dict[str, Tokens] = {}
    for e in events:
        msg = e.get("message")
        if e.get("type") != "assistant" or not isinstance(msg, dict):
            continue
        u = msg.get("usage")
        if not isinstance(u, dict):
            continue
        key = str(msg.get("id") or len(seen))
        seen[key] = _claude_tokens(
            u, msg.get("model") if isinstance(msg.get("model"), str) else init_model
        )
    models = _merge_models(seen.values())
    top = total(models)
    return Usage(
        **_with_total(top.model_dump(include=_TOKEN_FIELDS)),
        model=_main_model(models) or init_model,
        source="claude",
        turns=len(seen) or None,
        complete=False,
        models=models if len(models) > 1 else [],
    )


_TOKEN_FIELDS = {
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "tokens",
}


def _claude_tokens(u: dict[str, Any], model: str | None) -> Tokens:
    t = {
        "input_tokens": _int(u.get("input_tokens", u.get("inputTokens"))),
        "cache_read_tokens": _int(u.get("cache_read_input_tokens", u.get("cacheReadInputTokens"))),
        "cache_write_tokens": _int(
            u.get("cache_creation_input_tokens", u.get("cacheCreationInputTokens"))
        ),
        "output_tokens": _int(u.get("output_tokens", u.get("outputTokens"))),
    }
    return Tokens(model=model, **_with_total(t))


def _claude_result(result: dict[str, Any], init_model: str | None) -> Usage:
    cost = _num(result.get("total_cost_usd", result.get("cost_usd")))
    models: list[Tokens] = []
    per_model = result.get("modelUsage")
    if isinstance(per_model, dict):
        for name, mu in per_model.items():
            if isinstance(mu, dict):
                t = _claude_tokens(mu, str(name))
                mc = _num(mu.get("costUSD"))
                if mc is not None:
                    t = t.model_copy(update={"cost_usd": mc, "cost_source": "reported"})
                models.append(t)
    # modelUsage covers every model the session called (small side calls too), `usage` only
    # the main loop: the totals come from modelUsage when it is there.
    u = result.get("usage")
    if models:
        top: Tokens = total(models)
    else:
        top = _claude_tokens(u if isinstance(u, dict) else {}, init_model)
    return Usage(
        **_with_total(top.model_dump(include=_TOKEN_FIELDS)),
        model=_main_model(models) or init_model,
        source="claude",
        turns=_int(result.get("num_turns")),
        cost_usd=cost,
        cost_source="reported" if cost is not None else "unknown",
        complete=True,
        models=models,
    )


def _merge_models(parts: Iterable[Tokens]) -> list[Tokens]:
    grouped: dict[str | None, list[Tokens]] = {}
    for p in parts:
        grouped.setdefault(p.model, []).append(p)
    return [
        Tokens(**_with_total(total(ps).model_dump(include=_TOKEN_FIELDS)), model=m)
        for m, ps in grouped.items()
    ]


def _main_model(models: list[Tokens]) -> str | None:
    """The model that cost the most (or, without costs, used the most tokens)."""
    named = [m for m in models if m.model]
    if not named:
        return None
    return max(named, key=lambda m: (m.cost_usd or 0.0, m.tokens or 0)).model


def parse_codex(text: str, model: str | None = None) -> Usage:
    """`codex exec --json` events; its output names no model: the preset's is used."""
    turns = started = 0
    parts: list[Tokens] = []
    for e in _json_lines(text):
        kind = e.get("type")
        if kind == "turn.started":
            started += 1
        elif kind == "turn.completed":
            turns += 1
            u = _dict(e.get("usage"))
            inp, cached = _int(u.get("input_tokens")), _int(u.get("cached_input_tokens"))
            t = {
                "input_tokens": None if inp is None else max(inp - (cached or 0), 0),
                "cache_read_tokens": cached,
                "output_tokens": _int(u.get("output_tokens")),
            }
            parts.append(Tokens(model=model, **_with_total(t)))
    top = total(parts)
    return Usage(
        **top.model_dump(include=_TOKEN_FIELDS),
        model=model,
        source="codex",
        turns=turns or None,
        complete=turns > 0 and turns >= started,
    )


def parse_aider(text: str, model: str | None = None) -> Usage:
    """aider's analytics log: `message_send` events; complete once its `exit` event came."""
    parts: list[Tokens] = []
    complete = False
    for e in _json_lines(text):
        props = _dict(e.get("properties"))
        if e.get("event") == "exit":
            complete = True
        if e.get("event") != "message_send":
            continue
        name = props.get("main_model")
        t = {
            "input_tokens": _int(props.get("prompt_tokens")),
            "output_tokens": _int(props.get("completion_tokens")),
            "tokens": _int(props.get("total_tokens")),
        }
        cost = _num(props.get("cost"))
        parts.append(
            Tokens(
                model=name if isinstance(name, str) else model,
                cost_usd=cost,
                cost_source="reported" if cost is not None else "unknown",
                **_with_total(t),
            )
        )
    models = _merge_models_costed(parts)
    top = total(parts)
    return Usage(
        **top.model_dump(include=_TOKEN_FIELDS | {"cost_usd", "cost_source"}),
        model=_main_model(models) or model,
        source="aider",
        turns=len(parts) or None,
        complete=complete,
        models=models if len(models) > 1 else [],
    )


def _merge_models_costed(parts: list[Tokens]) -> list[Tokens]:
    grouped: dict[str | None, list[Tokens]] = {}
    for p in parts:
        grouped.setdefault(p.model, []).append(p)
    return [total(ps, model=m) for m, ps in grouped.items()]


def parse_usage_json(text: str) -> Usage | None:
    """The $RUNNER_OUT/usage.json convention; None when it says nothing usable."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    u = data.get("usage", data)
    if not isinstance(u, dict):
        return None
    t = {
        "input_tokens": _int(u.get("input_tokens")),
        "cache_read_tokens": _int(u.get("cache_read_tokens", u.get("cache_read_input_tokens"))),
        "cache_write_tokens": _int(
            u.get("cache_write_tokens", u.get("cache_creation_input_tokens"))
        ),
        "output_tokens": _int(u.get("output_tokens")),
        "tokens": _int(u.get("tokens")),
    }
    if all(v is None for v in t.values()):
        return None
    cost = _num(u.get("cost_usd", u.get("total_cost_usd")))
    model = u.get("model")
    return Usage(
        **_with_total(t),
        model=model if isinstance(model, str) else None,
        cost_usd=cost,
        cost_source="reported" if cost is not None else "unknown",
        source="usage.json",
    )


# -- from a task's RUNNER_OUT ----------------------------------------------------------------
def usage_for(out_dir: Path | None, agent: str | None, prices: Prices) -> Usage | None:
    """What one attempt of a task used, read from its copied-out RUNNER_OUT directory.

    agent: the task's preset (None: taken from agent/preset.json if the task ran a preset,
    else the plain usage.json convention). Returns None when the task said nothing about
    usage (no preset, no usage.json); a preset whose output is missing or cut off gives a
    Usage with complete=False and cost estimated or unknown, never 0. Never raises on what
    the task wrote (it is the task's, so untrusted); reads at most MAX_READ bytes per file.
    """
    if out_dir is None or not out_dir.is_dir():
        return None
    preset = _read_json(out_dir / AGENT_DIR / PRESET_FILE)
    if agent is None and isinstance(preset.get("agent"), str) and preset["agent"] in AGENTS:
        agent = preset["agent"]
    if agent is None:
        text = _read(out_dir / USAGE_FILE)
        found = parse_usage_json(text) if text is not None else None
        return priced(found, prices) if found else None
    model = preset.get("model") if isinstance(preset.get("model"), str) else None
    text = _read(out_dir / AGENT_DIR / OUTPUT_FILE.get(agent, ""))
    if agent == "claude":
        usage = parse_claude(text or "")
    elif agent == "codex":
        usage = parse_codex(text or "", model)
    elif agent == "aider":
        usage = parse_aider(text or "", model)
    else:
        return None
    if text is None:
        usage = usage.model_copy(update={"complete": False})
    if usage.model is None and model is not None:
        usage = usage.model_copy(update={"model": model})
    return priced(usage, prices)


def _read(path: Path) -> str | None:
    try:
        # Only regular files come home; a symlink (in a hand-made dir) is not followed.
        if path.is_symlink() or not path.is_file():
            return None
        with path.open("rb") as fh:
            return fh.read(MAX_READ).decode("utf-8", "replace")
    except OSError:
        return None


def _read_json(path: Path) -> dict[str, Any]:
    text = _read(path)
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
