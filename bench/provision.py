"""Benchmark: what does the runner pay to get a task into a ready sandbox on a large repo?

Generates a repository of --commits commits and --files files with `git fast-import` (one
stream from Python, seconds), packs it once, then measures side by side, interleaved over
--rounds rounds, from the same base commit (HEAD):

  A   the runner's path: `runner.workspace.make_clone` (a clone that borrows the host object
      store, at the task uid) + `DockerBackend.execute` of a "true" task with the default
      policy (hardened options, state dir, log pump, metrics wrapper); no cache volume.
  A+c the same with a named cache volume mounted at /cache (created once, then reused).
  B   the floor: `git worktree add --detach` + `docker run --rm --network none IMAGE true`.
  C   a full copy for reference: `git clone --no-local` (copies the whole pack, checks out)
      + the same container as B; only 2 rounds.

Medians are reported, with the clone and container parts apart, and the ratios A/B and C/B.
Destroying containers and removing clones/worktrees is never timed. Everything the benchmark
makes is removed at the end (containers by label, the cache volume by name, worktrees, the
temporary repo) unless --keep DIR names a directory in which to keep the generated repo.
--scratch DIR puts the clones, worktrees and copies on another file system (e.g. a tmpfs).

Run: .venv/bin/python bench/provision.py [--commits 50000] [--files 5000] [--rounds 7]
                                         [--keep DIR] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import docker
import docker.errors
from docker.models.containers import Container

from runner import git as rgit
from runner import workspace
from runner.core.policy import Policy, load_policy
from runner.sandbox import labels as L
from runner.sandbox.base import SandboxSpec
from runner.sandbox.docker import DockerBackend, connect

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "runner/sandbox:1"
OWNER = "10001:10001"
STAMP = ".bench-params"
# Fixed identity and dates: the generated repo is the same bytes on every machine.
IDENT = "bench <bench@bench.invalid>"
EPOCH = 1_700_000_000


# -- the repository -------------------------------------------------------------------------


class Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return env | {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}


def run_git(repo: Path, *args: str) -> str:
    """`git -C repo ARGS` with hooks and auto-gc off; the stdout, stripped. Raises on failure."""
    argv = ["git", "-c", "gc.auto=0", "-c", "core.hooksPath=/dev/null", "-C", str(repo), *args]
    proc = subprocess.run(argv, capture_output=True, env=_env(), check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {err}")
    return proc.stdout.decode("utf-8", "replace").strip()


def file_path(i: int) -> str:
    """Nested layout: 20 top dirs x 10 subdirs x 25 files = 5,000 files for the default size."""
    return f"src/pkg{i % 20:02d}/mod{(i // 20) % 10}/file{i:05d}.py"


def _blob(f: Writer, mark: int, data: bytes) -> None:
    f.write(b"blob\nmark :%d\ndata %d\n%b\n" % (mark, len(data), data))


def _content(i: int, rev: int) -> bytes:
    body = "".join(f"def f{i}_{k}():\n    return {rev * 31 + k}\n\n" for k in range(30))
    return f"# file {i}, revision {rev}\n{body}".encode()


def _commit(f: Writer, n: int, message: str, parent: bool, changes: list[tuple[int, int]]) -> None:
    when = f"{EPOCH + n * 60} +0000".encode()
    msg = message.encode()
    f.write(b"commit refs/heads/main\nmark :%d\n" % (1_000_000_000 + n))
    f.write(b"author %b %b\ncommitter %b %b\n" % (IDENT.encode(), when, IDENT.encode(), when))
    f.write(b"data %d\n%b\n" % (len(msg), msg))
    if parent:
        f.write(b"from :%d\n" % (1_000_000_000 + n - 1))
    for i, blob_mark in changes:
        f.write(b"M 100644 :%d %b\n" % (blob_mark, file_path(i).encode()))
    f.write(b"\n")


def fast_import_stream(f: Writer, commits: int, files: int) -> None:
    """An initial commit adding `files` files, then commits changing 1-3 files each."""
    rng = _Lcg(42)
    mark = 1
    initial = []
    for i in range(files):
        _blob(f, mark, _content(i, 0))
        initial.append((i, mark))
        mark += 1
    _commit(f, 0, f"initial import of {files} files\n", False, initial)
    revs = [0] * files
    for n in range(1, commits):
        changes = []
        for i in sorted({rng.below(files) for _ in range(1 + rng.below(3))}):
            revs[i] += 1
            _blob(f, mark, _content(i, revs[i]))
            changes.append((i, mark))
            mark += 1
        _commit(f, n, f"change {n}: touch {len(changes)} file(s)\n", True, changes)
    f.write(b"done\n")


class _Lcg:
    """A tiny deterministic generator (the repo must not depend on Python's random)."""

    def __init__(self, seed: int) -> None:
        self.state = seed

    def below(self, n: int) -> int:
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) % 2**64
        return (self.state >> 33) % n


def generate(repo: Path, commits: int, files: int) -> dict[str, float]:
    """Create repo (a normal checkout of main) from scratch; the seconds each step took."""
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    run_git(repo, "init", "--quiet", "--initial-branch", "main")
    t0 = time.monotonic()
    argv = ["git", "-C", str(repo), "fast-import", "--quiet", "--done"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, env=_env())
    assert proc.stdin is not None
    with proc.stdin as stdin:
        buffered = _Buffered(stdin)
        fast_import_stream(buffered, commits, files)
        buffered.flush()
    if proc.wait() != 0:
        raise RuntimeError(f"git fast-import failed ({proc.returncode})")
    t1 = time.monotonic()
    run_git(repo, "gc", "--quiet", "--prune=now")
    t2 = time.monotonic()
    run_git(repo, "reset", "--hard", "--quiet", "main")
    t3 = time.monotonic()
    (repo / ".git" / STAMP).write_text(f"{commits} {files}\n")
    return {"fast-import": t1 - t0, "gc": t2 - t1, "checkout": t3 - t2}


class _Buffered:
    """Collect small writes into 1 MiB chunks for the pipe."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        self.sink.write(b"".join(self.parts))
        self.parts, self.size = [], 0


def reusable(repo: Path, commits: int, files: int) -> bool:
    stamp = repo / ".git" / STAMP
    return stamp.exists() and stamp.read_text().split() == [str(commits), str(files)]


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def fs_type(path: Path) -> str:
    """The file system type of the mount holding path (from /proc/mounts), e.g. 'ext4'."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) < 3:
                continue
            point = fields[1]
            inside = str(path).startswith(point.rstrip("/") + "/") or str(path) == point
            if inside and len(point) >= len(best):
                best, kind = point, fields[2]
    return f"{kind} ({best or '?'})"


def describe(repo: Path, base: str) -> str:
    mib = 2**20
    objects = dir_size(repo / ".git" / "objects")
    tree = dir_size(repo) - dir_size(repo / ".git")
    packs = len(list((repo / ".git" / "objects" / "pack").glob("*.pack")))
    commits = int(run_git(repo, "rev-list", "--count", base))
    files = len(run_git(repo, "ls-files").splitlines())
    return (
        f"{commits} commits, {files} files at HEAD, objects {objects / mib:.1f} MiB "
        f"in {packs} pack(s), work tree {tree / mib:.1f} MiB"
    )


# -- the measurements -----------------------------------------------------------------------


@dataclass
class Samples:
    """Seconds per variant and part ("A" -> {"clone": [...], "container": [...]})."""

    data: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, variant: str, part: str, seconds: float) -> None:
        self.data.setdefault(variant, {}).setdefault(part, []).append(seconds)

    def median(self, variant: str, part: str) -> float:
        return statistics.median(self.data[variant][part])


@contextlib.contextmanager
def timed(samples: Samples | None, variant: str, part: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    if samples is not None:
        samples.add(variant, part, time.perf_counter() - t0)


@dataclass
class Bench:
    repo: Path
    base: str
    scratch: Path
    client: docker.DockerClient
    backend: DockerBackend
    policy: Policy
    run_id: str
    cache_volume: str
    samples: Samples = field(default_factory=Samples)
    counter: int = 0
    probe: tuple[Samples | None, str] = (None, "")

    def _next(self, what: str) -> str:
        self.counter += 1
        return f"{what}{self.counter}"

    def runner_path(self, variant: str, cache: bool, record: bool = True) -> None:
        """A / A+c: make_clone + DockerBackend.execute of `true`, as the coordinator does."""
        task = self._next("a")
        dest = self.scratch / "clones" / task
        state = self.scratch / "state" / task
        spec = SandboxSpec(
            run_id=self.run_id,
            task_id=task,
            role="task",
            image=IMAGE,
            policy=self.policy,
            script="true\n",
            timeout=120,
            workspace=dest,
            objects=rgit.common_dir(self.repo) / "objects",
            state=state,
            start_commit=self.base,
            cache_volume=self.cache_volume if cache else None,
            cache_labels=L.cache_labels(f"bench-{self.run_id}", "task", "bench") if cache else {},
        )
        s = self.samples if record else None
        self.probe = (s, variant)
        try:
            with timed(s, variant, "total"):
                with timed(s, variant, "clone"):
                    workspace.make_clone(self.repo, self.base, dest, f"runner/{task}", OWNER)
                with timed(s, variant, "container"):
                    result = self.backend.execute(spec)
            if result.exit_code != 0:
                log = result.log_path.read_text(errors="replace")
                raise RuntimeError(f"sandbox {task} exited {result.exit_code}: {log}")
        finally:
            self.probe = (None, "")
            with timed(s, variant, "destroy (untimed)"):
                self.backend.destroy(spec)
            workspace.remove(dest)
            workspace.remove(state)
            os.sync()  # the next measurement does not pay for this one's writeback

    def instrument(self) -> None:
        """Time the parts of make_clone and execute, which call these by module attribute."""
        clone, chown = rgit.clone_for_sandbox, workspace.chown_tree
        create = self.backend._create

        def timed_clone(repo: Path, commit: str, dest: Path, branch: str, objects_at: str) -> None:
            with timed(*self.probe, "  git clone_for_sandbox"):
                clone(repo, commit, dest, branch, objects_at)

        def timed_chown(root: Path, owner: str) -> None:
            with timed(*self.probe, "  chown_tree"):
                chown(root, owner)

        def timed_create(spec: SandboxSpec) -> Container:
            with timed(*self.probe, "  containers.create"):
                return create(spec)

        rgit.clone_for_sandbox = timed_clone
        workspace.chown_tree = timed_chown
        self.backend._create = timed_create  # type: ignore[method-assign]

    def floor(self, record: bool = True) -> None:
        """B: git worktree add --detach + docker run --rm --network none IMAGE true."""
        dest = self.scratch / "worktrees" / self._next("b")
        s = self.samples if record else None
        try:
            with timed(s, "B", "total"):
                with timed(s, "B", "clone"):
                    run_git(
                        self.repo, "worktree", "add", "--quiet", "--detach", str(dest), self.base
                    )
                with timed(s, "B", "container"):
                    self._plain_container()
        finally:
            if dest.exists():
                run_git(self.repo, "worktree", "remove", "--force", str(dest))
            run_git(self.repo, "worktree", "prune")
            os.sync()

    def full_copy(self, record: bool = True) -> None:
        """C: git clone --no-local (the whole pack copied, then checkout) + the container of B."""
        dest = self.scratch / "copies" / self._next("c")
        s = self.samples if record else None
        try:
            with timed(s, "C", "total"):
                with timed(s, "C", "clone"):
                    run_git(
                        self.scratch, "clone", "--quiet", "--no-local", str(self.repo), str(dest)
                    )
                with timed(s, "C", "container"):
                    self._plain_container()
        finally:
            workspace.remove(dest)
            os.sync()

    def _plain_container(self) -> None:
        self.client.containers.run(
            IMAGE,
            ["true"],
            remove=True,
            network_mode="none",
            labels=L.labels_for(self.run_id, "floor", "bench"),
        )


def rounds_plan(rounds: int) -> Iterator[list[str]]:
    """Each round runs every variant once, in a rotated order (no variant always goes first)."""
    variants = ["A", "A+c", "B"]
    for r in range(rounds):
        k = r % len(variants)
        order = variants[k:] + variants[:k]
        if r < 2:
            order.insert(r % (len(order) + 1), "C")
        yield order


def machine_notes(client: docker.DockerClient) -> list[str]:
    info = client.info()
    ver = client.version()
    git_ver = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False)
    load = os.getloadavg()
    return [
        f"nproc: {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})",
        f"docker: {ver.get('Version')} (API {ver.get('ApiVersion')}), storage driver "
        f"{info.get('Driver')}, cgroup v{info.get('CgroupVersion')}, "
        f"runtime {info.get('DefaultRuntime')}",
        f"{git_ver.stdout.strip()}; python {sys.version.split()[0]}",
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        f"running containers before: {len(client.containers.list())}",
    ]


PARTS = (
    "clone",
    "  git clone_for_sandbox",
    "  chown_tree",
    "container",
    "  containers.create",
    "destroy (untimed)",
)


def report(samples: Samples) -> None:
    rows = [
        ("A", "runner: make_clone + execute"),
        ("A+c", "runner, with a cache volume"),
        ("B", "floor: worktree add + run true"),
        ("C", "full copy: clone --no-local + run"),
    ]
    print()
    print(f"{'variant':<8}{'what':<34}{'n':>3}{'total':>9}{'clone':>9}{'container':>11}")
    for key, what in rows:
        if key not in samples.data:
            continue
        n = len(samples.data[key]["total"])
        tot, clone, cont = (samples.median(key, p) for p in ("total", "clone", "container"))
        print(f"{key:<8}{what:<34}{n:>3}{tot:>9.3f}{clone:>9.3f}{cont:>11.3f}")
    b = samples.median("B", "total")
    print()
    for key in ("A", "A+c", "C"):
        if key in samples.data:
            ratio = samples.median(key, "total") / b
            target = "  (target <= 1.5)" if key == "A" else ""
            print(f"{key}/B = {ratio:.2f}{target}")
    print("\nwhere the time goes (medians, s):")
    for key, _ in rows:
        parts = samples.data.get(key, {})
        for part in PARTS:
            if part in parts:
                print(f"  {key:<4} {part:<26}{statistics.median(parts[part]):>8.3f}")
    print("\nall samples, total (s):")
    for key, _ in rows:
        if key in samples.data:
            print(f"  {key:<4} " + " ".join(f"{x:.3f}" for x in samples.data[key]["total"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--commits", type=int, default=50_000)
    ap.add_argument("--files", type=int, default=5_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--keep", type=Path, help="keep (and reuse) the generated repo in DIR/repo")
    ap.add_argument(
        "--scratch", type=Path, help="make clones, worktrees and copies under DIR (default: TMPDIR)"
    )
    args = ap.parse_args(argv)
    if args.commits < 1 or args.files < 1 or args.rounds < 1:
        ap.error("--commits, --files and --rounds must be at least 1")

    client = connect()
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        print(f"image {IMAGE} not found: build it with `runner images build`", file=sys.stderr)
        return 2
    notes = machine_notes(client)
    scratch = Path(tempfile.mkdtemp(prefix="runner-bench-", dir=args.scratch))
    home = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="runner-bench-"))
    repo = home / "repo"
    notes.append(f"repo on {fs_type(home)}; clones, worktrees and copies on {fs_type(scratch)}")
    run_id = f"bench-{secrets.token_hex(4)}"
    cache_volume = f"runner-bench-{run_id}"
    backend = DockerBackend(client, IMAGE)
    try:
        if reusable(repo, args.commits, args.files):
            print(f"reusing {repo}")
        else:
            print(f"generating {args.commits} commits, {args.files} files in {repo} ...")
            took = generate(repo, args.commits, args.files)
            print("  " + ", ".join(f"{k} {v:.1f}s" for k, v in took.items()))
        base = run_git(repo, "rev-parse", "HEAD")
        print("repo: " + describe(repo, base))

        bench = Bench(
            repo,
            base,
            scratch,
            client,
            backend,
            load_policy(ROOT / "policies" / "default.yaml"),
            run_id,
            cache_volume,
        )
        bench.instrument()
        actions: dict[str, Callable[[bool], None]] = {
            "A": lambda rec: bench.runner_path("A", cache=False, record=rec),
            "A+c": lambda rec: bench.runner_path("A+c", cache=True, record=rec),
            "B": lambda rec: bench.floor(record=rec),
            "C": lambda rec: bench.full_copy(record=rec),
        }
        print("warm-up (not recorded): A, A+c, B")
        for key in ("A", "A+c", "B"):
            actions[key](False)
        for r, order in enumerate(rounds_plan(args.rounds), 1):
            for key in order:
                actions[key](True)
            done = "  ".join(f"{k} {bench.samples.data[k]['total'][-1]:.3f}" for k in order)
            print(f"round {r}/{args.rounds}: {done}", flush=True)
        report(bench.samples)
        print("\nmachine:")
        for line in notes:
            print(f"  {line}")
        print(f"  date: {dt.date.today().isoformat()}; image {IMAGE}")
    finally:
        _cleanup(client, backend, run_id, cache_volume, home, scratch, keep=args.keep is not None)
    return 0


def _cleanup(
    client: docker.DockerClient,
    backend: DockerBackend,
    run_id: str,
    volume: str,
    home: Path,
    scratch: Path,
    keep: bool,
) -> None:
    """Remove the run's containers (by label), the cache volume, worktrees and temp dirs."""
    removed = backend.cleanup(run_id)
    with contextlib.suppress(docker.errors.NotFound):
        client.volumes.get(volume).remove(force=True)
    shutil.rmtree(scratch, ignore_errors=True)
    if keep:
        if (home / "repo" / ".git").exists():
            with contextlib.suppress(RuntimeError):
                run_git(home / "repo", "worktree", "prune")
    else:
        shutil.rmtree(home, ignore_errors=True)
    left = client.containers.list(all=True, filters={"label": f"{L.RUN}={run_id}"})
    print(
        f"cleanup: {removed} labelled object(s) removed, {len(left)} left; temp dirs removed"
        + (f"; repo kept in {home / 'repo'}" if keep else "")
    )


if __name__ == "__main__":
    sys.exit(main())
