"""Dependency graph: cycles, waves in plan order, and the independence test of a wave."""

from __future__ import annotations

import pytest

from runner.core.scope import Overlap, Scope
from runner.core.waves import Dispatch, dispatch, find_cycle, layers


@pytest.mark.parametrize(
    ("deps", "cycle"),
    [
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c", "a"]),
        ({"a": ["a"]}, ["a", "a"]),
        ({"x": ["a"], "a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
        ({"ok": [], "b": ["c"], "c": ["b"]}, ["b", "c", "b"]),
        ({"a": [], "b": ["a"], "c": ["a", "b"]}, None),
        ({"a": ["unknown"]}, None),
        ({}, None),
    ],
)
def test_find_cycle(deps: dict[str, list[str]], cycle: list[str] | None) -> None:
    assert find_cycle(deps) == cycle


def test_layers_keep_plan_order() -> None:
    assert layers({"c": [], "a": [], "b": []}) == [["c", "a", "b"]]


def test_layers_of_a_chain() -> None:
    assert layers({"c": ["b"], "b": ["a"], "a": []}) == [["a"], ["b"], ["c"]]


def test_layers_of_a_diamond() -> None:
    deps = {"top": [], "left": ["top"], "right": ["top"], "bottom": ["right", "left"]}
    assert layers(deps) == [["top"], ["left", "right"], ["bottom"]]


def test_a_task_waits_for_its_latest_dependency() -> None:
    deps = {"a": [], "b": ["a"], "c": ["b"], "d": ["a"], "e": ["a", "c"]}
    assert layers(deps) == [["a"], ["b", "d"], ["c"], ["e"]]


def test_layers_of_nothing() -> None:
    assert layers({}) == []


def scopes(**globs: list[str] | None) -> dict[str, Scope]:
    return {task: Scope.of(g) for task, g in globs.items()}


BASE = ["README.md", "src/app.py", "src/api/routes.py", "docs/index.md"]


def test_independent_tasks_share_a_wave() -> None:
    deps: dict[str, list[str]] = {"api": [], "docs": []}
    got = dispatch(deps, scopes(api=["src/api/**"], docs=["docs/**"]), BASE, "refuse")
    assert got == Dispatch([["api", "docs"]], {"api": [], "docs": []}, [], [])


def test_refuse_lists_the_overlaps_and_changes_nothing() -> None:
    deps: dict[str, list[str]] = {"core": [], "api": [], "docs": []}
    sc = scopes(core=["src/**"], api=["src/api/**"], docs=["docs/**"])
    got = dispatch(deps, sc, BASE, "refuse")
    assert got.waves == [["core", "api", "docs"]]
    assert got.deps == deps
    assert got.moved == []
    assert got.overlaps == [
        Overlap("core", "api", (("src/**", "src/api/**"),), ("src/api/routes.py",))
    ]


def test_allow_keeps_the_overlaps_listed_in_one_wave() -> None:
    deps: dict[str, list[str]] = {"core": [], "api": []}
    got = dispatch(deps, scopes(core=["src/**"], api=["src/api/**"]), BASE, "allow")
    assert got.waves == [["core", "api"]]
    assert [(o.first, o.second) for o in got.overlaps] == [("core", "api")]
    assert got.moved == []


def test_serialize_orders_the_later_task_after_the_earlier() -> None:
    deps: dict[str, list[str]] = {"core": [], "api": [], "docs": []}
    sc = scopes(core=["src/**"], api=["src/api/**"], docs=["docs/**"])
    got = dispatch(deps, sc, BASE, "serialize")
    assert got.waves == [["core", "docs"], ["api"]]
    assert got.deps == {"core": [], "api": ["core"], "docs": []}
    assert got.moved == [("api", "core")]
    assert got.overlaps == []
    assert deps == {"core": [], "api": [], "docs": []}  # the caller's graph is not touched


def test_serialize_makes_a_chain_of_mutual_overlaps() -> None:
    deps: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    got = dispatch(deps, scopes(a=["src/**"], b=["src/**"], c=["src/**"]), BASE, "serialize")
    assert got.waves == [["a"], ["b"], ["c"]]
    assert got.moved == [("b", "a"), ("c", "a"), ("c", "b")]
    assert got.deps == {"a": [], "b": ["a"], "c": ["a", "b"]}
    assert got.overlaps == []


def test_serialize_rechecks_the_wave_a_task_moved_into() -> None:
    # d overlaps c (same wave): d moves to wave 1, where it meets b and moves again.
    deps: dict[str, list[str]] = {"a": [], "b": ["a"], "c": [], "d": []}
    sc = scopes(a=["lib/**"], b=["src/api/**"], c=["src/app.py"], d=["src/**"])
    got = dispatch(deps, sc, BASE, "serialize")
    assert got.moved == [("d", "c"), ("d", "b")]
    assert got.waves == [["a", "c"], ["b"], ["d"]]
    assert got.deps["d"] == ["c", "b"]
    assert got.overlaps == []


def test_tasks_in_different_waves_are_not_compared() -> None:
    deps: dict[str, list[str]] = {"a": [], "b": ["a"]}
    got = dispatch(deps, scopes(a=None, b=None), BASE, "refuse")
    assert got.waves == [["a"], ["b"]]
    assert got.overlaps == []


def test_a_long_chain_needs_no_recursion() -> None:
    n = 5000  # far past Python's recursion limit
    chain = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(n)}
    assert find_cycle(chain) is None
    assert layers(chain) == [[f"t{i}"] for i in range(n)]
    chain["t0"] = [f"t{n - 1}"]
    cycle = find_cycle(chain)
    assert cycle is not None and cycle[0] == cycle[-1] and len(cycle) == n + 1
