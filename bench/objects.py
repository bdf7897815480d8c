"""Benchmark: what does `objects: reachable` cost against `objects: all`?

On the repository provision.py generates (50,000 commits, 5,000 files; reused with --keep), it
measures medians over --rounds rounds, `all` and `reachable` interleaved:

  store    `workspace.objects_for` for HEAD in a fresh run (cold: `all` is a path, `reachable`
           packs all of HEAD's history)
  old      the same for HEAD~40000 (10,000 commits of history: the cost follows the history)
  wave 2   objects_for(HEAD) when HEAD~10's store is built (a later wave: an ancestor's packs
           are linked, only what the commits since add is packed)
  again    objects_for(HEAD) when HEAD's store exists (every further task of that wave)
  4 at once  four threads asking for HEAD at once in a fresh run (one builds, three wait)
  walk     `git rev-list --count HEAD` on the host in a clone borrowing the store (a walk of
           all history: the repo's commit-graph against the store's)
  sandbox  make_clone + DockerBackend.execute of a task running `git rev-list --count HEAD &&
           git status` on its clone, with the store mounted at /objects (what the task pays
           to read history through each store)

and the size of a store on disk. Everything it makes is removed at the end (containers by
label, stores, clones) unless --keep DIR keeps the generated repo.

Run: .venv/bin/python bench/objects.py [--rounds 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from provision import (
    IMAGE,
    OWNER,
    ROOT,
    describe,
    dir_size,
    fs_type,
    generate,
    machine_notes,
    reusable,
    run_git,
)

from runner import workspace
from runner.core.policy import load_policy
from runner.sandbox.base import SandboxSpec
from runner.sandbox.docker import DockerBackend, connect

Mode = Literal["all", "reachable"]
MODES: tuple[Mode, ...] = ("all", "reachable")
SCRIPT = "git rev-list --count HEAD >/dev/null && git status --porcelain >/dev/null\n"


def seconds(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def child_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children: the git commands."""
    t = os.times()
    return t.children_user + t.children_system


class Bench:
    def __init__(self, repo: Path, scratch: Path, backend: DockerBackend, run_id: str) -> None:
        self.repo, self.scratch, self.backend, self.run_id = repo, scratch, backend, run_id
        self.head = run_git(repo, "rev-parse", "HEAD")
        self.old = run_git(repo, "rev-parse", "HEAD~40000")
        self.near = run_git(repo, "rev-parse", "HEAD~10")
        self.policy = load_policy(ROOT / "policies" / "default.yaml")
        self.samples: dict[str, dict[Mode, list[float]]] = {}
        self.cpu: dict[str, dict[Mode, list[float]]] = {}
        self.count = 0

    def fresh(self) -> Path:
        """A run's empty store directory."""
        self.count += 1
        return self.scratch / f"stores{self.count}"

    def add(self, what: str, mode: Mode, value: float, cpu: float | None = None) -> None:
        self.samples.setdefault(what, {}).setdefault(mode, []).append(value)
        if cpu is not None:
            self.cpu.setdefault(what, {}).setdefault(mode, []).append(cpu)

    def measure(self, what: str, mode: Mode, fn: Callable[[], object]) -> None:
        """Wall time and the CPU time of the git commands fn ran (a load-proof figure)."""
        c0 = child_cpu()
        wall = seconds(fn)
        self.add(what, mode, wall, child_cpu() - c0)

    def round(self, mode: Mode) -> None:
        objects_for = workspace.objects_for
        cold = self.fresh()
        self.measure("store", mode, lambda: objects_for(self.repo, self.head, mode, cold))
        self.measure("again", mode, lambda: objects_for(self.repo, self.head, mode, cold))
        self.walk(mode, objects_for(self.repo, self.head, mode, cold))
        self.sandbox(mode, objects_for(self.repo, self.head, mode, cold))
        old = self.fresh()
        self.measure("old", mode, lambda: objects_for(self.repo, self.old, mode, old))
        wave = self.fresh()
        objects_for(self.repo, self.near, mode, wave)
        self.measure("wave 2", mode, lambda: objects_for(self.repo, self.head, mode, wave))
        self.add("4 at once", mode, self.at_once(mode, self.fresh()))
        for path in (cold, old, wave):
            shutil.rmtree(path, ignore_errors=True)

    def at_once(self, mode: Mode, stores: Path) -> float:
        threads = [
            threading.Thread(
                target=workspace.objects_for, args=(self.repo, self.head, mode, stores)
            )
            for _ in range(4)
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - t0
        shutil.rmtree(stores, ignore_errors=True)
        return took

    def walk(self, mode: Mode, objects: Path) -> None:
        """`git rev-list --count HEAD` (all 50,000 commits) in a clone borrowing objects."""
        self.count += 1
        clone = self.scratch / f"walk{self.count}"
        run_git(self.scratch, "init", "--quiet", str(clone))
        (clone / ".git" / "objects" / "info" / "alternates").write_text(f"{objects}\n")
        run_git(clone, "update-ref", "HEAD", self.head)
        self.measure("walk", mode, lambda: run_git(clone, "rev-list", "--count", "HEAD"))
        shutil.rmtree(clone)

    def sandbox(self, mode: Mode, objects: Path) -> None:
        self.count += 1
        task = f"o{self.count}"
        spec = SandboxSpec(
            run_id=self.run_id,
            task_id=task,
            role="task",
            image=IMAGE,
            policy=self.policy,
            script=SCRIPT,
            timeout=300,
            workspace=self.scratch / "clones" / task,
            objects=objects,
            state=self.scratch / "state" / task,
            start_commit=self.head,
        )
        try:
            t0 = time.perf_counter()
            workspace.make_clone(self.repo, self.head, spec.workspace, f"task/{task}", OWNER)
            result = self.backend.execute(spec)
            took = time.perf_counter() - t0
            if result.exit_code != 0:
                log = result.log_path.read_text(errors="replace")
                raise RuntimeError(f"sandbox {task} exited {result.exit_code}: {log}")
            self.add("sandbox", mode, took, result.cpu_s)
        finally:
            self.backend.destroy(spec)
            workspace.remove(spec.workspace)
            workspace.remove(spec.state)

    def sizes(self) -> dict[str, float]:
        mib = 2**20
        stores = self.fresh()
        head = workspace.objects_for(self.repo, self.head, "reachable", stores)
        old = workspace.objects_for(self.repo, self.old, "reachable", self.fresh())
        repo = workspace.objects_for(self.repo, self.head, "all", stores)
        return {
            "repo objects (all)": dir_size(repo) / mib,
            "store of HEAD": dir_size(head) / mib,
            "store of HEAD~40000": dir_size(old) / mib,
        }


def report(bench: Bench, rounds: int) -> None:
    rows = ("store", "old", "wave 2", "again", "4 at once", "walk", "sandbox")
    print(f"\nmedians of {rounds} rounds, seconds (cpu: of git, or of the sandbox's cgroup)")
    print(f"{'':<12}{'all':>10}{'reachable':>12}{'all cpu':>10}{'reach. cpu':>12}")
    for what in rows:
        wall = [f"{statistics.median(bench.samples[what][m]):.3f}" for m in MODES]
        cpu = [
            f"{statistics.median(c):.3f}" if (c := bench.cpu.get(what, {}).get(m)) else "-"
            for m in MODES
        ]
        print(f"{what:<12}{wall[0]:>10}{wall[1]:>12}{cpu[0]:>10}{cpu[1]:>12}")
    print("\nall samples, reachable (s):")
    for what in rows:
        print(f"  {what:<10} " + " ".join(f"{x:.3f}" for x in bench.samples[what]["reachable"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the generated repo in DIR/repo")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    client = connect()
    notes = machine_notes(client)
    home = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="runner-bench-"))
    # Stores are built where a run builds them: beside the repo (its .git/runner/runs/...).
    scratch = Path(tempfile.mkdtemp(prefix="objects-", dir=home))
    repo = home / "repo"
    run_id = f"bench-{secrets.token_hex(4)}"
    backend = DockerBackend(client, IMAGE)
    try:
        if not reusable(repo, 50_000, 5_000):
            print(f"generating 50000 commits, 5000 files in {repo} ...")
            generate(repo, 50_000, 5_000)
        print("repo: " + describe(repo, "HEAD") + f", on {fs_type(home)}")
        bench = Bench(repo, scratch, backend, run_id)
        print("warm-up (not recorded)")
        for mode in MODES:
            bench.round(mode)
        bench.samples.clear()
        for r in range(args.rounds):
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                bench.round(mode)
            print(f"round {r + 1}/{args.rounds} done", flush=True)
        report(bench, args.rounds)
        print("\nsize on disk, MiB:")
        for what, mib in bench.sizes().items():
            print(f"  {what:<22}{mib:>8.1f}")
        print("\nmachine:")
        for line in notes:
            print(f"  {line}")
    finally:
        backend.cleanup(run_id)
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
