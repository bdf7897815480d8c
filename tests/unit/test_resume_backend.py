"""`runner resume`/`retry` go on with the backend a run was pinned with (runner.resume)."""

from __future__ import annotations

import pytest

from runner.core.inputs import RunInputs
from runner.core.results import RunResult
from runner.errors import InputError
from runner.resume import resume_backend


def _result(backend: str | None) -> RunResult:
    pins = None
    if backend is not None:
        pins = RunInputs(plan="plan.yaml", base_commit="a" * 40, runner_version="0",
                         backend=backend)  # fmt: skip
    return RunResult(
        run_id="r1", repo="/repo", plan="plan.yaml", base="HEAD", base_commit="a" * 40,
        integration_ref="refs/heads/runner/r1/integration", started_at="now", state_dir="/s",
        inputs=pins,
    )  # fmt: skip


def test_the_pinned_backend_is_used_when_none_is_asked_for() -> None:
    assert resume_backend(_result("swarm"), None) == "swarm"
    assert resume_backend(_result("docker"), None) == "docker"


def test_asking_for_the_pinned_backend_is_fine() -> None:
    assert resume_backend(_result("swarm"), "swarm") == "swarm"


def test_another_backend_than_the_pinned_one_is_refused_in_one_line_naming_both() -> None:
    with pytest.raises(InputError) as caught:
        resume_backend(_result("swarm"), "docker")
    said = str(caught.value)
    assert "\n" not in said
    assert "r1" in said and "swarm" in said and "docker" in said
    assert caught.value.exit_code == 2


def test_a_run_that_pinned_nothing_goes_on_with_what_is_asked() -> None:
    assert resume_backend(_result(None), "swarm") == "swarm"
    assert resume_backend(_result(None), None) is None
