"""Task ids that look like the runner's own names (verify, wave-1, ...) are just tasks: their
caches, refs and logs are their own."""

from __future__ import annotations

import docker
import pytest

from runner.coordinator import repo_key
from runner.sandbox import labels
from tests.security.attacks import attack
from tests.security.conftest import Attempt, Launch

FILES = {"README.md": "hello\n", "src/app.txt": "app\n"}
IDS = ["verify", "verify-failed", "wave-1", "verify-wave-1", "integration", "collect", "task"]

# Verify runs what its own cache holds (as a warm tool cache would be used): a task that
# shared that cache could turn verify red, or run anything in it.
PLAN = """
verify: "if [ -f /cache/plant.sh ]; then sh /cache/plant.sh; fi; test -f src/app.txt"
tasks:
""" + "".join(
    f"""  - id: {task_id}
    scope: ["{task_id}/**"]
    run: |
      mkdir {task_id} && echo "{task_id}" > {task_id}/mine.txt
      echo 'echo "planted by {task_id}"; exit 1' > /cache/plant.sh
"""
    for task_id in IDS
)


@pytest.fixture(scope="module")
def run(hostile: Launch) -> Attempt:
    return hostile(PLAN, FILES)


@attack(
    "task ids named like the runner's own things (verify, verify-failed, wave-1, "
    "verify-wave-1, integration, collect, task), planting a script in their caches for verify",
    "each has its own cache volume, ref and log; verify runs on its own cache, stays green; "
    "all merge",
)
def test_runner_names_do_not_collide_with_task_ids(
    run: Attempt, docker_client: docker.DockerClient
) -> None:
    assert run.stdout.startswith("{"), run.stderr[-3000:]
    assert {t["id"]: t["status"] for t in run.result["tasks"]} == dict.fromkeys(IDS, "merged")
    assert [w["verify"] for w in run.result["waves"]] == ["green"]
    prefix = f"refs/runner/{run.result['run_id']}/"
    assert {r for r in run.refs() if r.startswith(prefix)} == {run.ref_of(t) for t in IDS}
    head = run.integration()
    for task_id in IDS:
        assert run.show(head, f"{task_id}/mine.txt") == task_id
    flt: dict[str, str | list[str] | bool] = {"label": f"{labels.CACHE}={repo_key(run.repo)}"}
    volumes = [str(v.name) for v in docker_client.volumes.list(filters=flt)]
    assert len(volumes) == len(set(volumes)) == len(IDS) + 1, volumes  # one each, and verify's
    logs = {run.task(t)["log_path"] for t in IDS} | {run.result["waves"][0]["verify_log"]}
    assert len(logs) == len(IDS) + 1
