"""Benchmark: what does a whole `runner run` cost against bare `docker run` (and a worktree)?

Side by side, interleaved over --rounds rounds (every round runs each pair once, in a
rotated order), medians, ratios (the goals of issue 8):

  noop    N no-op tasks (`run: "true"`, each its own scope) at concurrency 4, `runner run`
          wall clock, against N x `docker run --rm --network none IMAGE true` under
          `xargs -P4` (goal <= 1.3).
  write   the same N tasks, each writing one file in its scope (so collection, the bundle,
          intake and the merge all work), against the same raw loop (no goal: it does more).
  sleep   8 tasks `sleep 5` at concurrency 8 against 8 x `docker run ... sleep 5`, `-P8`
          (goal <= 1.1).
  big     one task that writes one file, on a generated 50,000-commit / 5,000-file repo
          (bench/provision.py's generator), against `git worktree add` + `docker run --rm
          IMAGE true` (goal <= 1.3).
Then the coordinator's peak RSS (VmHWM of the `runner run` process, polled) for real runs of
--rss task counts (default 50 and 200 no-op tasks) and the slope per task, and a
where-the-time-goes table: per-phase medians of every task of the noop and write runs, from
the run journal's timestamps, next to the raw floor's per-container time.

Everything it makes is removed at the end, also after an error or Ctrl-C: the runs'
containers (by the runner's run label), the raw loops' containers (by the bench's label),
the cache volumes of its repos (by the runner's cache label), the temporary repos.

Run: .venv/bin/python bench/overhead.py [--quick] [--rounds 3] [--tasks 40] [--rss 50,200]
                                         [--keep DIR] [--only noop,write,sleep,big,rss]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

sys.path.insert(0, str(Path(__file__).resolve().parent))
import provision

from runner.sandbox import labels as L
from runner.sandbox.docker import connect

IMAGE = provision.IMAGE
BENCH_LABEL = "runner.bench"


# -- repos and plans ------------------------------------------------------------------------


def small_repo(path: Path) -> Path:
    """A tiny checkout: what no-op tasks start from (the clone is not what is measured)."""
    path.mkdir(parents=True)
    provision.run_git(path, "init", "--quiet", "--initial-branch", "main")
    (path / "README").write_text("bench\n")
    provision.run_git(path, "add", "README")
    provision.run_git(
        path, "-c", "user.name=bench", "-c", "user.email=bench@bench.invalid",
        "commit", "--quiet", "-m", "init",
    )  # fmt: skip
    return path


def plan_text(n: int, run: str, concurrency: int, scoped: bool = True) -> str:
    lines = [f"concurrency: {concurrency}", "timeout: 600", "tasks:"]
    for i in range(n):
        lines.append(f"  - id: t{i:04d}")
        if scoped:
            lines.append(f'    scope: ["t{i:04d}/**"]')
        lines.append(f"    run: {json.dumps(run.replace('{dir}', f't{i:04d}'))}")
    return "\n".join(lines) + "\n"


def repo_key(repo: Path) -> str:
    """The runner's cache key of a repo (sha256 of its common git dir, as the runner names it)."""
    common = provision.run_git(repo, "rev-parse", "--path-format=absolute", "--git-common-dir")
    return hashlib.sha256(common.encode()).hexdigest()[:12]


# -- one measurement ------------------------------------------------------------------------


@dataclass
class RunOutcome:
    seconds: float
    peak_rss: int  # bytes, VmHWM of the runner process
    result: dict[str, Any]
    started: float  # time.time() at the process start


def runner_run(plan: Path, repo: Path, source: Path | None = None) -> RunOutcome:
    """`runner run plan --repo repo --json` as a user types it; wall clock and peak RSS.

    source: a directory holding another `runner` package to measure (e.g. an export of an
    older commit), put first on the path; None: the runner this venv imports."""
    argv = [sys.executable, "-m", "runner", "run", str(plan), "--repo", str(repo), "--json"]
    env = os.environ | {"TESTCONTAINERS_RYUK_DISABLED": "true"}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        wall0, t0 = time.time(), time.perf_counter()
        # cwd: the plan's dir, so that no checkout's `runner` shadows the one measured.
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=plan.parent)
        peak = [0]
        done = threading.Event()
        watcher = threading.Thread(target=_watch_rss, args=(proc.pid, peak, done), daemon=True)
        watcher.start()
        try:
            code = proc.wait()
        except BaseException:  # Ctrl-C, SIGTERM: the run removes its sandboxes, then we clean
            proc.terminate()
            proc.wait()
            raise
        seconds = time.perf_counter() - t0
        done.set()
        watcher.join()
        out.seek(0)
        err.seek(0)
        text = out.read().decode("utf-8", "replace")
        if code not in (0, 1):
            tail = err.read().decode("utf-8", "replace")[-2000:]
            raise RuntimeError(f"runner run exited {code}: {tail}")
    result = json.loads(text)
    if result.get("status") != "success":
        failed = [
            f"{t['id']}: {t['status']}: {t.get('reason')}"
            for t in result.get("tasks", [])
            if t.get("status") not in ("merged", "no_changes")
        ]
        # Said, and counted in the report; a noisy shared daemon fails a sandbox now and then.
        print(
            f"  warning: run {result.get('run_id')} ended {result.get('status')}: "
            + "; ".join(failed[:3] or [str(result.get("error"))]),
            flush=True,
        )
    return RunOutcome(seconds, peak[0], result, wall0)


def _watch_rss(pid: int, peak: list[int], done: threading.Event) -> None:
    # VmHWM is the process's own high-water mark: the last value read is its peak so far.
    status = Path(f"/proc/{pid}/status")
    while not done.is_set():
        with contextlib.suppress(OSError, ValueError):
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        done.wait(0.05)


def raw_loop(n: int, parallel: int, command: str, run_label: str) -> tuple[float, list[float]]:
    """n x `docker run --rm --network none IMAGE command` through `xargs -P`; the wall clock
    and each container's own time (stamped around it by the shell xargs starts)."""
    one = (
        "a=$(date +%s%N); docker run --rm --network none "
        f"--label {BENCH_LABEL}={run_label} {IMAGE} {command} >/dev/null; "
        'b=$(date +%s%N); echo "$a $b"'
    )
    argv = ["xargs", f"-P{parallel}", "-n1", "sh", "-c", one + " #"]
    t0 = time.perf_counter()
    proc = subprocess.run(
        argv, input="".join(f"{i}\n" for i in range(n)), capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"raw loop failed ({proc.returncode}): {proc.stderr[-2000:]}")
    each = [(int(b) - int(a)) / 1e9 for a, b in (ln.split() for ln in proc.stdout.splitlines())]
    return seconds, each


def worktree_floor(repo: Path, scratch: Path, run_label: str) -> float:
    """`git worktree add --detach` + `docker run --rm --network none IMAGE true` (CLI)."""
    dest = scratch / f"wt-{secrets.token_hex(4)}"
    t0 = time.perf_counter()
    try:
        provision.run_git(repo, "worktree", "add", "--quiet", "--detach", str(dest), "HEAD")
        subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "--label",
             f"{BENCH_LABEL}={run_label}", IMAGE, "true"],
            check=True, capture_output=True,
        )  # fmt: skip
        return time.perf_counter() - t0
    finally:
        if dest.exists():
            provision.run_git(repo, "worktree", "remove", "--force", str(dest))
        provision.run_git(repo, "worktree", "prune")


# -- where the time goes ----------------------------------------------------------------------


PHASES = (
    ("queued", "queued -> started (waiting for a worker)"),
    ("clone", "clone + container create/attach (started -> container start)"),
    ("task", "task container, start -> exit (task_ended.duration_s)"),
    ("collect", "collector container (task_ended -> collected)"),
    ("intake", "destroy + bundle checks + fetch (collected -> fetched)"),
    ("judge", "workspace removal + scope + judge (fetched -> judged)"),
    ("total", "one task, started -> judged"),
)
RUN_PHASES = (
    ("startup", "process start -> planned (imports, plan, preflight)"),
    ("prepare", "planned -> first task started"),
    ("tasks", "first task started -> last task judged"),
    ("wave", "last task judged -> wave_ended (merge + verify)"),
    ("finish", "wave_ended -> run_ended (cleanup, isolation check)"),
    ("exit", "run_ended -> process exit (result written, printed)"),
)


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def phases(outcome: RunOutcome) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Per-task phase durations and run-level spans, from the run's journal."""
    journal = Path(outcome.result["state_dir"]) / "journal.jsonl"
    events = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    per: dict[str, dict[str, float]] = {}
    durations: dict[str, float] = {}
    first: dict[str, float] = {}
    for ev in events:
        t, kind = _ts(ev["time"]), ev["event"]
        first.setdefault(kind, t)
        task = ev.get("task")
        if task is None:
            continue
        marks = per.setdefault(task, {})
        marks.setdefault(kind, t)  # a task is judged more than once (ready, then merged)
        if kind == "task_ended" and ev.get("duration_s") is not None:
            durations[task] = float(ev["duration_s"])
    out: dict[str, list[float]] = {k: [] for k, _ in PHASES}
    for task, m in per.items():
        need = ("task_queued", "task_started", "task_ended", "collected", "fetched", "judged")
        if not all(k in m for k in need):
            continue
        run_s = durations.get(task, 0.0)
        out["queued"].append(m["task_started"] - m["task_queued"])
        out["clone"].append(m["task_ended"] - m["task_started"] - run_s)
        out["task"].append(run_s)
        out["collect"].append(m["collected"] - m["task_ended"])
        out["intake"].append(m["fetched"] - m["collected"])
        out["judge"].append(m["judged"] - m["fetched"])
        out["total"].append(m["judged"] - m["task_started"])
    judged = [m["judged"] for m in per.values() if "judged" in m]
    ended = outcome.started + outcome.seconds
    spans = {
        "startup": first["planned"] - outcome.started,
        "prepare": first["task_started"] - first["planned"],
        "tasks": max(judged) - first["task_started"],
        "wave": first["wave_ended"] - max(judged),
        "finish": first["run_ended"] - first["wave_ended"],
        "exit": ended - first["run_ended"],
    }
    return out, spans


# -- the benchmark -----------------------------------------------------------------------------


@dataclass
class Bench:
    scratch: Path
    label: str
    rounds: int
    samples: dict[str, list[float]] = field(default_factory=dict)
    task_phases: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    result_phases: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """key -> phase -> durations, from the result's own `phases` (runners that have them)."""
    run_spans: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    floor_each: dict[str, list[float]] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    unsuccessful: list[str] = field(default_factory=list)

    def add(self, key: str, seconds: float) -> None:
        self.samples.setdefault(key, []).append(seconds)

    def runner(
        self, key: str, plan: Path, repo: Path, record: bool = True, source: Path | None = None
    ) -> RunOutcome:
        outcome = runner_run(plan, repo, source)
        self.run_ids.append(outcome.result["run_id"])
        if outcome.result.get("status") != "success":
            self.unsuccessful.append(f"{key}: {outcome.result['run_id']}")
        if record:
            self.add(key, outcome.seconds)
            if key.split("@")[0] in ("noop", "write", "big"):
                per, spans = phases(outcome)
                dest = self.task_phases.setdefault(key, {})
                for k, v in per.items():
                    dest.setdefault(k, []).extend(v)
                for k, s in spans.items():
                    self.run_spans.setdefault(key, {}).setdefault(k, []).append(s)
                for task in outcome.result["tasks"]:
                    for k, p in (task.get("phases") or {}).items():
                        by = self.result_phases.setdefault(key, {})
                        by.setdefault(k, []).append(float(p["duration_s"]))
        return outcome

    def run_only(
        self, key: str, plan: Path, repo: Path, record: bool, source: Path | None = None
    ) -> None:
        self.runner(key, plan, repo, record, source)

    def raw(self, key: str, n: int, parallel: int, command: str) -> None:
        seconds, each = raw_loop(n, parallel, command, self.label)
        self.add(key, seconds)
        self.floor_each.setdefault(key, []).extend(each)


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def rotated(pairs: list[str], r: int) -> list[str]:
    k = r % len(pairs)
    return pairs[k:] + pairs[:k]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="a small, fast configuration (CI)")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--tasks", type=int, help="tasks of the noop and write runs (default 40)")
    ap.add_argument("--rss", help="task counts of the RSS runs, comma-separated (default 50,200)")
    ap.add_argument("--commits", type=int)
    ap.add_argument("--files", type=int)
    ap.add_argument("--sleep", type=float, help="seconds each sleep task sleeps (default 5)")
    ap.add_argument("--only", help="comma-separated subset of noop,write,sleep,big,rss")
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the big repo in DIR/repo")
    ap.add_argument(
        "--compare",
        type=Path,
        help="also measure the runner package in DIR (e.g. `git archive OLD runner policies`), "
        "interleaved, as KEY@base: before/after in one run",
    )
    args = ap.parse_args(argv)
    quick = args.quick
    rounds = args.rounds or (1 if quick else 3)
    n = args.tasks or (6 if quick else 40)
    rss_counts = [int(x) for x in (args.rss or ("4,8" if quick else "50,200")).split(",")]
    commits = args.commits or (500 if quick else 50_000)
    files = args.files or (200 if quick else 5_000)
    sleep = args.sleep if args.sleep is not None else (1.0 if quick else 5.0)
    only = set((args.only or "noop,write,sleep,big,rss,collect").split(","))
    unknown = only - {"noop", "write", "sleep", "big", "rss", "collect"}
    if unknown or rounds < 1 or n < 1:
        ap.error(f"bad --only {sorted(unknown)}" if unknown else "--rounds/--tasks must be >= 1")

    # SIGTERM as Ctrl-C: the cleanup below runs either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    client = connect()
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        print(f"image {IMAGE} not found: build it with `runner images build`", file=sys.stderr)
        return 2
    notes = provision.machine_notes(client)
    src = os.environ.get("PYTHONPATH") or str(provision.ROOT)
    rev = subprocess.run(
        ["git", "-C", src, "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    notes.append(f"runner measured: {src} {rev or '(not a git checkout)'}")
    if args.compare is not None:
        notes.append(f"runner compared (@base, 'before'): {args.compare.resolve()}")
    scratch = Path(tempfile.mkdtemp(prefix="runner-overhead-"))
    label = f"bench-{secrets.token_hex(4)}"
    bench = Bench(scratch, label, rounds)
    repos: list[Path] = []
    home = args.keep.resolve() if args.keep else scratch / "big"
    try:
        small = small_repo(scratch / "small")
        repos.append(small)
        plans = {
            "noop": (scratch / "noop.yaml", plan_text(n, "true", 4)),
            "write": (
                scratch / "write.yaml",
                plan_text(n, "mkdir -p {dir} && echo x > {dir}/f", 4),
            ),
            "sleep": (scratch / "sleep.yaml", plan_text(8, f"sleep {sleep:g}", 8)),
            "big": (scratch / "big.yaml", plan_text(1, "echo x > bench-out.txt", 1, False)),
        }
        for path, text in plans.values():
            path.write_text(text)
        big = home / "repo"
        if only & {"big", "collect"}:
            if provision.reusable(big, commits, files):
                print(f"reusing {big}")
            else:
                print(f"generating {commits} commits, {files} files in {big} ...", flush=True)
                took = provision.generate(big, commits, files)
                print("  " + ", ".join(f"{k} {v:.1f}s" for k, v in took.items()))
            repos.append(big)
            print("big repo: " + provision.describe(big, "HEAD"))

        pairs: dict[str, Callable[[bool], None]] = {}
        if "noop" in only:
            pairs["noop"] = lambda rec: bench.run_only("noop", plans["noop"][0], small, rec)
            pairs["noop raw"] = lambda rec: bench.raw("noop raw", n, 4, "true") if rec else None
        if "write" in only:
            pairs["write"] = lambda rec: bench.run_only("write", plans["write"][0], small, rec)
        if "sleep" in only:
            pairs["sleep"] = lambda rec: bench.run_only("sleep", plans["sleep"][0], small, rec)
            pairs["sleep raw"] = lambda rec: (
                bench.raw("sleep raw", 8, 8, f"sleep {sleep:g}") if rec else None
            )
        if "big" in only:
            pairs["big"] = lambda rec: bench.run_only("big", plans["big"][0], big, rec)
            pairs["big raw"] = lambda rec: (
                bench.add("big raw", worktree_floor(big, scratch, label)) if rec else None
            )
        if args.compare is not None:
            base = args.compare.resolve()
            for key in [k for k in pairs if "raw" not in k]:
                repo = big if key == "big" else small
                pairs[f"{key}@base"] = functools.partial(
                    _run_base, bench, f"{key}@base", plans[key][0], repo, base
                )
        order = list(pairs)
        if pairs:
            # Warm-up: creates the tasks' cache volumes (they live across runs, as for a user).
            print("warm-up (not recorded): " + ", ".join(k for k in order if "raw" not in k))
            for key in order:
                pairs[key](False)
        for r in range(rounds if order else 0):
            for key in rotated(order, r):
                pairs[key](True)
            done = "  ".join(f"{k} {bench.samples[k][-1]:.2f}" for k in rotated(order, r))
            print(f"round {r + 1}/{rounds}: {done}", flush=True)

        rss: list[tuple[int, int, float]] = []
        if "rss" in only:
            for count in rss_counts:
                plan = scratch / f"rss{count}.yaml"
                plan.write_text(plan_text(count, "true", 4))
                out = bench.runner("rss", plan, small, record=False)
                rss.append((count, out.peak_rss, out.seconds))
                print(f"rss: {count} tasks: {out.peak_rss / 2**20:.1f} MiB, {out.seconds:.1f} s")

        collect: dict[str, list[float]] = {}
        if "collect" in only:
            collect = collect_ab(big, scratch, label, max(3, 2 * rounds), client)

        report(bench, n, sleep, rss, notes, quick)
        if collect:
            report_collect(collect)
    finally:
        _cleanup(client, bench, repos, scratch, home, keep=args.keep is not None)
    return 0


# -- the collector: what it costs, and what the index refresh of make_clone saves ------------


def collect_ab(
    repo: Path, scratch: Path, label: str, rounds: int, client: docker.DockerClient
) -> dict[str, list[float]]:
    """The collection of one task (a `true` task) on the big repo, interleaved:
    refreshed  make_clone as shipped (index refreshed after the chown), then collect()
    stale      the clone as before (clone_for_sandbox + chown_tree, no refresh)
    exec       `docker exec` of the same collect.sh in one long-lived collector container
               (same image and hardening; the run's workspaces read-only): a design option
    """
    from runner import git as rgit
    from runner.core.policy import load_policy
    from runner.sandbox.base import SandboxSpec
    from runner.sandbox.docker import DockerBackend, script_text
    from runner.sandbox.options import bind, container_options

    backend = DockerBackend(client, IMAGE)
    policy = load_policy(provision.ROOT / "policies" / "default.yaml")
    base = provision.run_git(repo, "rev-parse", "HEAD")
    objects = rgit.common_dir(repo) / "objects"
    root = scratch / "collect"
    tasks, out = root / "tasks", root / "scratch"
    for d in (tasks, out, root / "c" / "control", root / "c" / "out"):
        d.mkdir(parents=True)
    uid, gid = (int(x) for x in policy.user.split(":"))
    if os.geteuid() == 0:
        os.chown(out, uid, gid)
    run_id = f"{label}-collect"
    proto = SandboxSpec(
        run_id=run_id, task_id="collector", role="collect", image=IMAGE, policy=policy,
        script="", timeout=300, workspace=tasks, objects=objects, state=root / "c",
        start_commit=base,
    )  # fmt: skip
    opts = container_options(proto)
    opts["mounts"] = [
        bind(tasks, "/tasks", read_only=True),
        bind(objects, "/objects", read_only=True),
        bind(out, "/scratch"),
    ]
    opts["command"], opts["working_dir"] = ["sleep", "infinity"], "/"
    opts["labels"] = opts["labels"] | {BENCH_LABEL: label}
    long = client.containers.create(**opts)
    long.start()
    script = script_text("collect.sh")
    times: dict[str, list[float]] = {"refreshed": [], "stale": [], "exec": []}

    def by_exec(task: str) -> None:
        text = (
            script.replace("task=/work/.git", f"task=/tasks/{task}/work/.git")
            .replace("own=/bundle/git", f"own=/scratch/{task}/git")
            .replace("out=/bundle/out", f"out=/scratch/{task}/out")
            .replace("GIT_WORK_TREE=/work", f"GIT_WORK_TREE=/tasks/{task}/work")
        )
        env = {"RUNNER_TASK": task, "RUNNER_START": base}
        code, output = long.exec_run(["/bin/sh", "-c", text], environment=env, user=policy.user)
        if code != 0:
            raise RuntimeError(f"exec collection failed: {str(output)[-500:]}")
        for path in (f"/scratch/{task}/out", f"/tasks/{task}/out"):
            stream, _ = long.get_archive(path)
            b"".join(stream)

    try:
        _collect_rounds(rounds, tasks, run_id, policy, objects, base, repo, backend, times, by_exec)
    except docker.errors.NotFound as exc:  # seen: a `gc` of another process on a shared daemon
        print(f"  collect rounds stopped, a container went away: {exc}", flush=True)
        n = min(len(v) for v in times.values())
        times = {k: v[:n] for k, v in times.items()}
    finally:
        with contextlib.suppress(docker.errors.APIError):
            long.remove(force=True)
        backend.cleanup(run_id)
    return times


def _collect_rounds(
    rounds: int, tasks: Path, run_id: str, policy: Any, objects: Path, base: str, repo: Path,
    backend: Any, times: dict[str, list[float]], by_exec: Callable[[str], None],
) -> None:  # fmt: skip
    from runner import git as rgit
    from runner import workspace
    from runner.sandbox.base import SandboxSpec

    for r in range(rounds):
        for kind in rotated(["refreshed", "stale", "exec"], r):
            task = f"{kind}{r}"
            state = tasks / task
            spec = SandboxSpec(
                run_id=run_id, task_id=task, role="task", image=IMAGE, policy=policy,
                script="true\n", timeout=300, workspace=state / "work", objects=objects,
                state=state, start_commit=base,
            )  # fmt: skip
            if kind == "stale":
                state.mkdir(parents=True)
                rgit.clone_for_sandbox(repo, base, spec.workspace, "task/t", "/objects")
                workspace.chown_tree(spec.workspace, policy.user)
            else:
                workspace.make_clone(repo, base, spec.workspace, "task/t", policy.user)
            backend.execute(spec)
            t0 = time.perf_counter()
            if kind == "exec":
                by_exec(task)
            else:
                got = backend.collect(spec)
                if got.head != base:
                    raise RuntimeError(f"collection of {task}: {got.problem}")
            times[kind].append(time.perf_counter() - t0)
            backend.destroy(spec)
            workspace.remove(state)
        print(
            f"collect round {r + 1}/{rounds}: "
            + "  ".join(f"{k} {v[-1]:.2f}" for k, v in times.items()),
            flush=True,
        )


def report_collect(times: dict[str, list[float]]) -> None:
    n = len(times["refreshed"])
    print(f"\ncollecting one task on the big repo (medians of {n} interleaved rounds, s)")
    what = {
        "refreshed": "collect() after make_clone as shipped (index refreshed)",
        "stale": "collect() after the clone as before (chown, no refresh)",
        "exec": "docker exec in one long-lived collector (design option)",
    }
    for k, label in what.items():
        print(f"  {label:<60}{med(times[k]):>8.3f}")
    r = med(times["refreshed"])
    print(f"  stale / refreshed: {med(times['stale']) / r:.2f}; exec / refreshed: "
          f"{med(times['exec']) / r:.2f}")  # fmt: skip


def _run_base(bench: Bench, key: str, plan: Path, repo: Path, base: Path, rec: bool) -> None:
    bench.run_only(key, plan, repo, rec, base)


GOALS = {"noop": 1.3, "sleep": 1.1, "big": 1.3}


def report(
    bench: Bench, n: int, sleep: float, rss: list[tuple[int, int, float]],
    notes: list[str], quick: bool,
) -> None:  # fmt: skip
    s = bench.samples
    rows = [
        ("noop", "noop raw", f"{n} no-op tasks, concurrency 4", f"{n} x docker run true, -P4"),
        ("write", "noop raw", f"{n} tasks writing 1 file, conc. 4", f"{n} x docker run true, -P4"),
        ("sleep", "sleep raw", f"8 x sleep {sleep:g}, concurrency 8", "8 x docker run sleep, -P8"),
        ("big", "big raw", "1 task writes 1 file, big repo", "worktree add + docker run true"),
    ]
    print(f"\nside by side (medians of {bench.rounds} interleaved rounds, seconds)")
    print(f"{'work':<36}{'runner':>8}  {'raw floor':<32}{'raw':>7}{'ratio':>7}  goal")
    for key, raw, what, floor_text in rows:
        for variant, label in ((key, what), (f"{key}@base", "  the same, --compare (before)")):
            if variant in s and raw in s:
                a, b = med(s[variant]), med(s[raw])
                goal = f"<= {GOALS[key]}" if key in GOALS and variant == key else "-"
                print(f"{label:<36}{a:>8.2f}  {floor_text:<32}{b:>7.2f}{a / b:>7.2f}  {goal}")
    for key, *_ in rows:
        if key in s and f"{key}@base" in s:
            after, before = med(s[key]), med(s[f"{key}@base"])
            print(f"after / before, {key}: {after / before:.2f}")
    if rss:
        print("\ncoordinator peak RSS (VmHWM of the `runner run` process; real runs, no-op tasks)")
        for count, peak, secs in rss:
            print(f"  {count:>5} tasks: {peak / 2**20:7.1f} MiB  ({secs:.1f} s)")
        if len(rss) >= 2:
            (c0, p0, _), (c1, p1, _) = rss[0], rss[-1]
            slope = (p1 - p0) / max(1, c1 - c0) / 1024
            at = (p1 + (1000 - c1) * slope * 1024) / 2**20
            print(f"  slope: {slope:.1f} KiB per task; at 1,000 tasks by the slope: {at:.0f} MiB")
    for key in ("noop", "write", "big"):
        if key not in bench.task_phases:
            continue
        per = bench.task_phases[key]
        old = bench.task_phases.get(f"{key}@base", {})
        if key == "big":
            floor_what, floor = (
                "raw floor: worktree add + docker run true",
                med(s.get("big raw", [])),
            )
        else:
            floor_what = "raw floor: one `docker run --rm ... true` under -P4"
            floor = med(bench.floor_each.get("noop raw", []))
        print(f"\nwhere the time goes: {key} run, medians over {len(per['total'])} task(s), s")
        print(f"  {'':<62}{'runner':>8}" + (f"{'before':>8}" if old else ""))
        for k, what in PHASES:
            was = f"{med(old[k]):>8.3f}" if old else ""
            print(f"  {what:<62}{med(per[k]):>8.3f}{was}")
        print(f"  {floor_what:<62}{floor:>8.3f}")
        mine, theirs = bench.result_phases.get(key, {}), bench.result_phases.get(f"{key}@base", {})
        if mine:
            print("  the result's own phases (medians over the tasks that reached each):")
            for k in mine:
                was = f"{med(theirs[k]):>8.3f}" if k in theirs else ("       -" if old else "")
                print(f"    {k:<60}{med(mine[k]):>8.3f}{was}")
        print(f"  per run (medians over {bench.rounds} run(s)):")
        old_spans = bench.run_spans.get(f"{key}@base", {})
        for k, what in RUN_PHASES:
            was = f"{med(old_spans[k]):>8.3f}" if old_spans else ""
            print(f"    {what:<60}{med(bench.run_spans[key][k]):>8.3f}{was}")
    if bench.unsuccessful:
        print(f"\nruns that did not end success (timed all the same): {bench.unsuccessful}")
    print("\nall samples (s):")
    for key, xs in s.items():
        print(f"  {key:<10} " + " ".join(f"{x:.2f}" for x in xs))
    print("\nmachine:")
    for line in notes:
        print(f"  {line}")
    load = os.getloadavg()
    print(f"  load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"  date: {dt.date.today().isoformat()}; image {IMAGE}" + ("; --quick" if quick else ""))


def _cleanup(
    client: docker.DockerClient, bench: Bench, repos: list[Path], scratch: Path, home: Path,
    keep: bool,
) -> None:  # fmt: skip
    """Containers by the runs' and the bench's labels, cache volumes by repo key, temp dirs."""
    removed = 0
    flts = [f"{L.RUN}={r}" for r in bench.run_ids] + [f"{BENCH_LABEL}={bench.label}"]
    for flt in flts:
        for c in client.containers.list(all=True, filters={"label": flt}):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                c.remove(force=True)
                removed += 1
    volumes = 0
    for repo in repos:
        if not (repo / ".git").exists():
            continue
        key = repo_key(repo)
        for v in client.volumes.list(filters={"label": f"{L.CACHE}={key}"}):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                v.remove(force=True)
                volumes += 1
    if keep and (home / "repo" / ".git").exists():
        with contextlib.suppress(RuntimeError):
            provision.run_git(home / "repo", "worktree", "prune")
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"cleanup: {removed} container(s), {volumes} cache volume(s) removed; temp dirs removed")


if __name__ == "__main__":
    sys.exit(main())
