"""The overhead benchmark runs end to end in its tiny configuration (issue 8): every ratio and
the where-the-time-goes tables are printed. It asserts no timing; the machine is shared."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parents[2]


def test_overhead_benchmark_quick_prints_every_ratio_and_leaves_nothing(
    images: None, docker_client: docker.DockerClient
) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "overhead.py"), "--quick"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for row in ("no-op tasks, concurrency 4", "x sleep 1, concurrency 8", "1 file, big repo"):
        line = next((ln for ln in out.splitlines() if row in ln), None)
        assert line is not None and "<=" in line, row  # a ratio against its goal
    assert "where the time goes: noop run" in out and "where the time goes: big run" in out
    for phase in ("clone", "sandbox_start", "collect", "fetch"):
        assert f"    {phase} " in out  # the result's own phases
    assert "coordinator peak RSS" in out
    assert "runs that did not end success" not in out
    # The raw loops' containers carry the benchmark's own label.
    flt: dict[str, str | list[str] | bool] = {"label": "runner.bench"}
    assert docker_client.containers.list(all=True, filters=flt) == []
