"""The built-in main job, end to end, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import docker

from runner.coordinator import repo_key
from tests.integration.conftest import git, leftovers, runner_cli


def test_demo_merges_everything_and_leaves_the_checkout_alone(
    tmp_path: Path, images: None, docker_client: docker.DockerClient
) -> None:
    proc = runner_cli("demo", "--keep", str(tmp_path / "demo"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo: OK" in proc.stdout
    repo = tmp_path / "demo" / "repo"
    results = list((repo / ".git" / "runner" / "runs").glob("*/result.json"))
    result = json.loads(results[0].read_text())
    assert result["status"] == "success"
    assert {t["status"] for t in result["tasks"]} == {"merged"}
    assert len(result["waves"]) == 3 and {w["verify"] for w in result["waves"]} == {"green"}
    assert result["isolation"]["unchanged"] is True
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert leftovers(docker_client, result["run_id"]) == []
    assert docker_client.volumes.list(filters={"label": f"runner.cache={repo_key(repo)}"}) == []
