"""Input keys, definition and policy hashes, reuse lookup and drift: pure (runner.core.inputs)."""

from __future__ import annotations

from runner.core.inputs import (
    Candidate,
    KeyParts,
    RunInputs,
    definition_hash,
    digest,
    drift,
    find_reusable,
    input_key,
    notes,
    policy_hash,
    task_definition,
)
from runner.core.plan import Plan
from runner.core.policy import Policy
from runner.core.usage import Usage


def _plan(**task: object) -> Plan:
    return Plan.model_validate({"tasks": [{"id": "a", "run": "echo a", **task}]})


def test_digest_is_canonical_key_order_and_spacing_do_not_matter() -> None:
    assert digest({"b": 1, "a": [1, 2]}) == digest({"a": [1, 2], "b": 1})
    assert digest({"a": 1}).startswith("sha256:") and len(digest({"a": 1})) == 7 + 64
    assert digest({"a": 1}) != digest({"a": 2})


def test_definition_fills_the_plans_defaults_and_names_env_without_values() -> None:
    plan = _plan(env=["TOKEN", "API"])
    d = task_definition(plan.tasks[0], plan)
    assert d["env"] == ["API", "TOKEN"]
    assert d["image"] == plan.image and d["policy"] == "default" and d["timeout"] == plan.timeout
    # Stated explicitly or by default: the same task, the same hash.
    explicit = _plan(env=["API", "TOKEN"], image=plan.image, policy="default", timeout=1800)
    assert definition_hash(explicit.tasks[0], explicit) == definition_hash(plan.tasks[0], plan)


def test_definition_hash_changes_with_what_the_task_does() -> None:
    base = _plan()
    h = definition_hash(base.tasks[0], base)
    for change in (
        {"run": "echo b"},
        {"scope": ["src/**"]},
        {"deny": ["secret/**"]},
        {"env": ["X"]},
        {"image": "mine:1"},
        {"policy": "open"},
        {"timeout": 5},
        {"retries": 2},
    ):
        other = _plan(**change)
        assert definition_hash(other.tasks[0], other) != h, change
    # The id and the dependencies are not what it does (its start tree says what it got).
    renamed = Plan.model_validate({"tasks": [{"id": "b", "run": "echo a"}]})
    assert definition_hash(renamed.tasks[0], renamed) == h


def test_policy_hash_is_of_the_resolved_content() -> None:
    assert policy_hash(Policy()) == policy_hash(Policy(memory="1g"))  # 1 GiB is the default
    assert policy_hash(Policy()) != policy_hash(Policy(memory="512m"))


def _parts(**change: str | None) -> KeyParts:
    parts = {
        "definition": "sha256:d",
        "start_tree": "t1",
        "shared_tree": None,
        "image_id": "sha256:i",
        "policy": "sha256:p",
    }
    return KeyParts.model_validate(parts | change)


def test_input_key_changes_with_every_part() -> None:
    key = input_key(_parts())
    assert key == input_key(_parts())
    for name, value in (
        ("definition", "sha256:e"),
        ("start_tree", "t2"),
        ("shared_tree", "s"),
        ("image_id", "sha256:j"),
        ("policy", "sha256:q"),
    ):
        assert input_key(_parts(**{name: value})) != key, name


def _cand(run: str, key: str, **more: object) -> Candidate:
    fields = {"run": run, "task": "a", "key": key, "commit": f"c-{run}", "start_commit": "s"}
    return Candidate.model_validate(fields | more)


def test_find_reusable_takes_the_newest_match_still_in_the_repo() -> None:
    cands = [_cand("r1", "k"), _cand("r2", "other"), _cand("r3", "k")]
    found = find_reusable("k", cands, lambda c: True)
    assert found is not None and found.run == "r3" and found.commit == "c-r3"
    gone = find_reusable("k", cands, lambda c: c != "c-r3")
    assert gone is not None and gone.run == "r1"
    assert find_reusable("k", cands, lambda c: c == "s") is None
    assert find_reusable("nope", cands, lambda c: True) is None


def test_reuse_saves_what_the_original_attempts_used_even_through_a_reuse() -> None:
    used = Usage(tokens=100, cost_usd=0.5, cost_source="reported")
    first = _cand("r1", "k", usage=used.model_dump())
    got = find_reusable("k", [first], lambda c: True)
    assert got is not None and got.usage == used
    # r2 reused r1's work (spent nothing): reusing r2 saves what r1 spent.
    second = _cand("r2", "k", reused_from=got.model_dump())
    again = find_reusable("k", [first, second], lambda c: True)
    assert again is not None and again.run == "r2" and again.usage == used


def _inputs(**change: object) -> RunInputs:
    base = {
        "plan": "plan.yaml",
        "base_commit": "b",
        "images": {"runner/sandbox:1": "sha256:aaa", "mine:1": "sha256:bbb"},
        "policies": {"default": "sha256:ppp"},
        "runner_version": "0.1.0",
        "backend": "docker",
        "daemon_version": "27.0",
    }
    return RunInputs.model_validate(base | change)


def test_drift_names_the_image_or_policy_that_changed_or_is_gone() -> None:
    pinned = _inputs()
    assert drift(pinned, _inputs()) == []
    changed = _inputs(images={"runner/sandbox:1": "sha256:aaa", "mine:1": "sha256:ccc"})
    [(kind, what)] = drift(pinned, changed)
    assert kind == "image" and "mine:1 changed" in what
    gone = _inputs(images={"runner/sandbox:1": "sha256:aaa", "mine:1": None})
    assert drift(pinned, gone) == [("image", "image mine:1 is gone (pinned sha256:bbb)")]
    policy = _inputs(policies={"default": "sha256:qqq"})
    assert [k for k, _ in drift(pinned, policy)] == ["policy"]


def test_versions_are_notes_not_drift() -> None:
    newer = _inputs(runner_version="0.2.0", daemon_version="28.0")
    assert drift(_inputs(), newer) == []
    said = notes(_inputs(), newer)
    assert len(said) == 2 and "0.1.0 -> 0.2.0" in said[0]


def _journal() -> list[dict[str, object]]:
    parts = _parts().model_dump()
    used = {"tokens": 1200, "cost_usd": 0.25, "cost_source": "reported"}
    source = {"run": "r1", "task": "a", "commit": "c1", "start_commit": "s1", "usage": used}
    return [
        {
            "seq": 1,
            "event": "planned",
            "time": "2026-11-25T22:00:00+00:00",
            "run_id": "r2",
            "repo": "/repo",
            "plan": "plan.yaml",
            "base": "HEAD",
            "base_commit": "b",
            "integration_ref": "refs/heads/runner/r2/integration",
            "state_dir": "/state",
            "waves": [["a", "b"]],
            "tasks": [{"id": "a", "wave": 1}, {"id": "b", "wave": 1}],
            "inputs": _inputs().model_dump(mode="json"),
            "replays": "r0",
            "reuse": True,
        },
        {
            "seq": 2,
            "event": "wave_started",
            "time": "t",
            "wave": 1,
            "tasks": ["a", "b"],
            "start": "b",
        },
        {
            "seq": 3,
            "event": "task_queued",
            "time": "t",
            "task": "a",
            "wave": 1,
            "start": "b",
            "key": input_key(_parts()),
            "key_parts": parts,
        },
        {
            "seq": 4,
            "event": "reused",
            "time": "t",
            "task": "a",
            "source": source,
            "ref": "refs/runner/r2/task/a",
            "commit": "c2",
            "files_changed": ["a/x"],
        },
        {"seq": 5, "event": "task_queued", "time": "t", "task": "b", "wave": 1, "start": "b"},
    ]


def test_the_result_projects_pins_keys_and_reuse_from_the_journal() -> None:
    from runner.core.projection import replay

    r = replay(_journal())
    res = r.result
    assert res.inputs == _inputs() and res.replays == "r0" and r.reuse
    a, b = res.task("a"), res.task("b")
    assert a.key == input_key(_parts()) and a.key_parts == _parts()
    assert a.reused_from is not None and a.reused_from.run == "r1"
    assert (a.ref, a.commit, a.files_changed, a.attempts) == (
        "refs/runner/r2/task/a",
        "c2",
        ["a/x"],
        0,
    )
    assert b.key is None and b.reused_from is None  # queued by a runner that pinned nothing
    assert res.saved is not None and res.saved.tokens == 1200 and res.saved.cost_usd == 0.25
    assert res.usage is None  # nothing was spent in this run


def test_status_shows_where_reused_work_is() -> None:
    from runner.core.runstate import project

    s = project(_journal())
    a = s.task("a")
    assert (a.reused_from, a.ref, a.commit, a.kept, a.files_changed) == (
        "r1",
        "refs/runner/r2/task/a",
        "c2",
        "refs/runner/r2/task/a",
        1,
    )


def test_show_inputs_prints_one_line_per_pin_with_digests_when_any() -> None:
    from runner.core.inputs import TaskInputs, describe

    pins = _inputs(
        image_digests={"mine:1": ["mine@sha256:feed"]},
        tasks={"a": TaskInputs(definition="sha256:d", image="mine:1", policy="default")},
    )
    lines = describe(pins, {"a": "s1"})
    assert "image: mine:1 sha256:bbb mine@sha256:feed" in lines
    assert "image: runner/sandbox:1 sha256:aaa" in lines
    assert "policy: default sha256:ppp" in lines
    assert "task: a definition sha256:d image mine:1 policy default start s1" in lines
    assert "backend: docker (daemon 27.0)" in lines and "runner: 0.1.0" in lines
