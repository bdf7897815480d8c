"""Runtimes: the operator's default under the policy's own, checked against the daemon."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runner.core.plan import PlanDoc, load_plan
from runner.core.policy import Policy
from runner.errors import PlanError
from runner.preflight import _for_this_host
from runner.runtimes import RuntimeAsk, check_runtimes
from runner.settings import Settings

# As `docker info` reports them, with runsc registered the way .ci/gvisor does it.
DAEMON: dict[str, dict[str, Any]] = {
    "runc": {"path": "runc"},
    "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]},
}
PLAN = """\
policy: default
tasks:
  - id: a
    run: 'true'
  - id: b
    policy: gvisor.yaml
    run: 'true'
"""


@pytest.mark.parametrize(
    ("own", "setting", "expected"),
    [
        (None, None, None),  # the daemon's default runtime
        (None, "runsc", "runsc"),  # the operator's, for a policy that names none
        ("runc", "runsc", "runc"),  # a policy's own runtime always wins
        ("runsc", None, "runsc"),
    ],
)
def test_runtime_precedence(own: str | None, setting: str | None, expected: str | None) -> None:
    policy = _for_this_host(Policy(runtime=own), Settings(runtime=setting))
    assert policy.runtime == expected


def test_runtime_setting_keeps_the_rest_of_the_policy() -> None:
    policy = Policy(memory="256m", pids=64)
    applied = _for_this_host(policy, Settings(runtime="runsc"))
    assert applied.model_dump(exclude={"runtime", "user"}) == policy.model_dump(
        exclude={"runtime", "user"}
    )
    if os.geteuid() == 0:
        assert applied.user == policy.user


def test_runtime_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNNER_RUNTIME", "runsc")
    assert Settings().runtime == "runsc"
    monkeypatch.setenv("RUNNER_RUNTIME", "")  # set but empty: the daemon's default
    assert Settings().runtime is None
    monkeypatch.setenv("RUNNER_RUNTIME", "runsc --network=host")
    with pytest.raises(ValidationError, match="runtime"):
        Settings()


def _doc(tmp_path: Path) -> PlanDoc:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    return load_plan(path)


def test_a_runtime_the_daemon_has_passes(tmp_path: Path) -> None:
    asks = [RuntimeAsk("runsc", ("tasks", 1, "policy"), "policy 'gvisor.yaml' (/p/gvisor.yaml)")]
    check_runtimes(_doc(tmp_path), asks, DAEMON)
    check_runtimes(_doc(tmp_path), [], {})


def test_a_missing_runtime_names_plan_line_policy_field_and_the_fix(tmp_path: Path) -> None:
    asks = [
        RuntimeAsk("runsc", ("tasks", 1, "policy"), "policy 'gvisor.yaml' (/p/gvisor.yaml)"),
        RuntimeAsk("kata", ("policy",), "RUNNER_RUNTIME"),  # verify's, then task a's
        RuntimeAsk("kata", ("policy",), "RUNNER_RUNTIME"),
    ]
    with pytest.raises(PlanError) as caught:
        check_runtimes(_doc(tmp_path), asks, {"runc": {"path": "runc"}})
    src = tmp_path / "plan.yaml"
    assert caught.value.problems == [
        f"{src}:6: tasks[1](b).policy: policy 'gvisor.yaml' (/p/gvisor.yaml) sets runtime: "
        "runsc, which this Docker daemon does not have (it has: runc)",
        f"{src}:1: policy: RUNNER_RUNTIME sets runtime: kata, which this Docker daemon "
        "does not have (it has: runc)",
    ]  # one line per place, though two sandboxes share the plan's policy
    assert caught.value.exit_code == 2
    hint = caught.value.hint or ""
    assert "/etc/docker/daemon.json" in hint and "runtimes" in hint and "HUP" in hint


@pytest.mark.parametrize("network", ["open", "allowlist"])
def test_a_network_policy_on_a_runtime_without_network_is_refused(
    tmp_path: Path, network: str
) -> None:
    """Docker would attach the network and runsc --network=none ignore it: no silent offline."""
    ask = RuntimeAsk("runsc", ("tasks", 1, "policy"), "policy 'g.yaml' (/p/g.yaml)", network)
    with pytest.raises(PlanError) as caught:
        check_runtimes(_doc(tmp_path), [ask], DAEMON)
    assert caught.value.problems == [
        f"{tmp_path / 'plan.yaml'}:6: tasks[1](b).policy: policy 'g.yaml' (/p/g.yaml) asks for "
        f"network: {network}, but the daemon runs runtime runsc with --network=none "
        "(no network at all)"
    ]
    assert "without `runtime`" in (caught.value.hint or "")


def test_a_network_policy_on_a_runtime_with_network_passes(tmp_path: Path) -> None:
    asks = [
        RuntimeAsk("runc", ("policy",), "RUNNER_RUNTIME", "open"),
        RuntimeAsk("runsc", ("policy",), "RUNNER_RUNTIME", "none"),
    ]
    check_runtimes(_doc(tmp_path), asks, DAEMON)
    hostnet = {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=host"]}}
    check_runtimes(_doc(tmp_path), [RuntimeAsk("runsc", ("policy",), "x", "open")], hostnet)
