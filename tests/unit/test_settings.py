"""Settings come from RUNNER_* environment variables, with working defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from runner.settings import PROJECT_ROOT, Settings, package_data


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No RUNNER_* variable of the caller's shell reaches the test."""
    for name in list(os.environ):
        if name.upper().startswith("RUNNER_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.state_dir is None
    assert s.policies_dir == package_data("policies")
    assert (s.policies_dir / "default.yaml").is_file()
    assert s.images_dir == package_data("images")
    assert (s.images_dir / "sandbox" / "Dockerfile").is_file()
    assert s.collector_image == "runner/sandbox:1"
    assert s.docker_timeout == 120
    assert s.keep_workspaces is False
    assert s.log_format == "auto"


def test_package_data_is_inside_the_package_and_the_checkout_links_to_it() -> None:
    # The wheel carries runner/data; the checkout's top-level dirs are where people edit it.
    import runner

    package = Path(runner.__file__).resolve().parent
    for name in ("images", "policies"):
        assert package_data(name).resolve() == package / "data" / name
        assert (PROJECT_ROOT / name).is_symlink()
        assert (PROJECT_ROOT / name).resolve() == package_data(name).resolve()


def test_runner_prefix(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("RUNNER_STATE_DIR", str(tmp_path / "state"))
    clean_env.setenv("RUNNER_POLICIES_DIR", str(tmp_path / "policies"))
    clean_env.setenv("RUNNER_COLLECTOR_IMAGE", "mine/collector:2")
    clean_env.setenv("RUNNER_DOCKER_TIMEOUT", "5.5")
    clean_env.setenv("RUNNER_KEEP_WORKSPACES", "true")
    clean_env.setenv("RUNNER_LOG_FORMAT", "json")
    s = Settings()
    assert s.state_dir == tmp_path / "state"
    assert s.policies_dir == tmp_path / "policies"
    assert s.collector_image == "mine/collector:2"
    assert s.docker_timeout == 5.5
    assert s.keep_workspaces is True
    assert s.log_format == "json"


def test_names_without_the_prefix_are_ignored(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("STATE_DIR", "/elsewhere")
    clean_env.setenv("LOG_FORMAT", "json")
    s = Settings()
    assert s.state_dir is None
    assert s.log_format == "auto"


def test_bad_value_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RUNNER_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="log_format"):
        Settings()


def test_arguments_win_over_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RUNNER_DOCKER_TIMEOUT", "5")
    assert Settings(docker_timeout=9).docker_timeout == 9


def test_settings_are_frozen(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="frozen"):
        Settings().keep_workspaces = True  # type: ignore[misc]


def test_egress_settings(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings().egress_network is None
    assert Settings().egress_dns is None
    clean_env.setenv("RUNNER_EGRESS_NETWORK", "my-egress")
    clean_env.setenv("RUNNER_EGRESS_DNS", '["10.0.0.53", "fd00::53"]')
    s = Settings()
    assert (s.egress_network, s.egress_dns) == ("my-egress", ["10.0.0.53", "fd00::53"])


def test_egress_dns_must_be_addresses(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("RUNNER_EGRESS_DNS", '["resolver.example.test"]')
    with pytest.raises(ValidationError, match="is not an IP address"):
        Settings()
