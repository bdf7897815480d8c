"""`runner gc` removes what a dead run left behind (by label), and nothing of live runs."""

from __future__ import annotations

import docker

from runner.sandbox import labels
from tests.integration.conftest import leftovers, runner_cli


def test_gc_reaps_objects_of_a_dead_run(images: None, docker_client: docker.DockerClient) -> None:
    dead = labels.labels_for("gc-test-dead", "t", "task") | {labels.PID: "999999999"}
    alive = labels.labels_for("gc-test-alive", "t", "task")  # this very process: alive
    try:
        for lab in (dead, alive):
            docker_client.containers.create("runner/sandbox:1", "true", labels=lab)
        docker_client.networks.create("runner-gc-test-dead", labels=dead)
        proc = runner_cli("gc")
        assert proc.returncode == 0, proc.stderr
        assert leftovers(docker_client, "gc-test-dead") == []
        assert len(leftovers(docker_client, "gc-test-alive")) == 1
        proc = runner_cli("gc", "--all")
        assert proc.returncode == 0, proc.stderr
        assert leftovers(docker_client, "gc-test-alive") == []
    finally:
        for run in ("gc-test-dead", "gc-test-alive"):
            flt: dict[str, str | list[str] | bool] = {"label": f"{labels.RUN}={run}"}
            for c in docker_client.containers.list(all=True, filters=flt):
                c.remove(force=True)
            for n in docker_client.networks.list(filters=flt):
                n.remove()
