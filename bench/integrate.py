"""Benchmark: what does the runner pay to integrate a wave, against bare git plumbing?

Generates a repository whose base commit holds --files files (nested directories, as in
provision.py) and, per wave size in --sizes, that many task branches off the base, each
changing a different file (`git fast-import`, one stream, seconds). Then measures side by
side, interleaved over --rounds rounds (each round runs every variant of every size once, in a
rotated order, after an unrecorded warm-up):

  runner    `runner.integrate.merge_wave` of the wave's task commits onto the base (its
            conflict pre-check, then one merge-tree + commit-tree per task), then
            `git.update_ref` of the integration ref: what the coordinator does per wave
            before verify.
  plumbing  the floor: a bash loop doing the same merges with bare plumbing,
            `git merge-tree --write-tree --merge-base=BASE HEAD TASK` + `git commit-tree` +
            `git update-ref` per task.
  before    (--before SIZES) merge_wave with the pre-check as it was before issue 8: one
            merge-tree per pair of tasks (19,900 for 200). Slow: in the first round only.

Medians are reported with the ratio runner/plumbing (goal: at most 2 for every size) and the
share of the runner's time spent in its pre-check. Resetting the refs between samples is not
timed. The generated repo is removed at the end unless --keep DIR is given.

--store: instead, what a run of the largest size leaves in a fresh copy of the base: the
tasks' work brought home through the runner's intake, merged, then `tidy_objects`.

Run: .venv/bin/python bench/integrate.py [--sizes 20,200] [--files 5000] [--rounds 3]
                                         [--before 20,200] [--keep DIR] [--store]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runner import git as rgit
from runner import integrate

IDENT = b"bench <bench@bench.invalid>"
EPOCH = 1_700_000_000
REF = "refs/heads/bench/integration"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return env | {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"} | rgit.RUNNER_IDENTITY


def run_git(repo: Path, *args: str) -> str:
    argv = ["git", "-c", "gc.auto=0", "-C", str(repo), *args]
    proc = subprocess.run(argv, capture_output=True, env=_env(), check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {err}")
    return proc.stdout.decode("utf-8", "replace").strip()


def file_path(i: int) -> str:
    """Nested layout: 20 top dirs x 10 subdirs x 25 files = 5,000 files for the default size."""
    return f"src/pkg{i % 20:02d}/mod{(i // 20) % 10}/file{i:05d}.py"


def _content(i: int, who: str) -> bytes:
    body = "".join(f"def f{i}_{k}():\n    return {k}\n\n" for k in range(20))
    return f"# file {i}, {who}\n{body}".encode()


def generate(repo: Path, files: int, sizes: list[int]) -> dict[int, list[str]]:
    """The base commit on main and, per size, task branches each changing its own file."""
    if max(sizes) > files:
        raise SystemExit(f"--files ({files}) must be at least the largest size ({max(sizes)})")
    run_git(repo.parent, "init", "--quiet", "--initial-branch", "main", str(repo))
    chunks: list[bytes] = []
    when = b"%d +0000" % EPOCH
    head = b"author %b %b\ncommitter %b %b\n" % (IDENT, when, IDENT, when)
    for i in range(files):
        data = _content(i, "base")
        chunks.append(b"blob\nmark :%d\ndata %d\n%b\n" % (i + 1, len(data), data))
    chunks.append(b"commit refs/heads/main\nmark :999999\n%bdata 5\nbase\n" % head)
    chunks += [b"M 100644 :%d %b\n" % (i + 1, file_path(i).encode()) for i in range(files)]
    chunks.append(b"\n")
    for size in sizes:
        step = files // size  # spread the tasks over the tree
        for t in range(size):
            data = _content(t * step, f"task {t} of {size}")
            msg = b"task %d of %d\n" % (t, size)
            chunks.append(b"commit refs/heads/task/%d/%03d\n%b" % (size, t, head))
            chunks.append(b"data %d\n%bfrom :999999\n" % (len(msg), msg))
            path = file_path(t * step).encode()
            chunks.append(b"M 100644 inline %b\ndata %d\n%b\n\n" % (path, len(data), data))
    chunks.append(b"done\n")
    argv = ["git", "-C", str(repo), "fast-import", "--quiet", "--done"]
    subprocess.run(argv, input=b"".join(chunks), env=_env(), check=True)
    out: dict[int, list[str]] = {}
    for size in sizes:
        listing = run_git(
            repo, "for-each-ref", "--format=%(objectname)", f"refs/heads/task/{size}/"
        )
        out[size] = listing.split()
    return out


# -- the variants ---------------------------------------------------------------------------

LOOP = r"""
set -e
base=$1; shift
head=$base
for c in "$@"; do
  tree=$(git merge-tree --write-tree --merge-base="$base" "$head" "$c")
  head=$(git commit-tree "$tree" -p "$head" -p "$c" -m "merge $c")
  git update-ref refs/heads/bench/plumbing "$head"
done
"""


def plumbing(repo: Path, base: str, commits: list[str]) -> None:
    argv = ["bash", "-c", LOOP, "loop", base, *commits]
    subprocess.run(argv, cwd=repo, env=_env(), check=True, capture_output=True)


def runner_merge(repo: Path, base: str, commits: list[str]) -> None:
    ready = [(f"t{i:03d}", c) for i, c in enumerate(commits)]
    merged = integrate.merge_wave(repo, base, ready, "bench", False, start=base)
    if len(merged.merged) != len(commits):
        raise RuntimeError(f"expected every task merged, conflicts: {merged.conflicts}")
    rgit.update_ref(repo, REF, merged.head)


def _all_pairs(repo: Path, commits: dict[str, str], base: str) -> dict[tuple[str, str], list[str]]:
    """The pre-check before issue 8: one merge-tree per pair."""
    found = {}
    for a, b in itertools.combinations(commits, 2):
        outcome = rgit.merge_tree(repo, commits[a], commits[b], base)
        if not outcome.clean:
            found[(a, b)] = outcome.conflicts
    return found


@contextlib.contextmanager
def pairwise_as(fn: Callable[..., dict[tuple[str, str], list[str]]]) -> Iterator[None]:
    """merge_wave calls pairwise through its module: swap it for the variant (and a timer)."""
    saved = integrate.pairwise
    integrate.pairwise = fn
    try:
        yield
    finally:
        integrate.pairwise = saved


@dataclass
class Samples:
    data: dict[tuple[int, str], list[float]] = field(default_factory=dict)

    def add(self, size: int, variant: str, seconds: float) -> None:
        self.data.setdefault((size, variant), []).append(seconds)

    def median(self, size: int, variant: str) -> float:
        return statistics.median(self.data[(size, variant)])


def measure(
    repo: Path, base: str, tasks: dict[int, list[str]], rounds: int, before: set[int]
) -> Samples:
    samples = Samples()
    precheck = integrate.pairwise

    def timed_precheck(
        repo_: Path, commits: dict[str, str], base_: str
    ) -> dict[tuple[str, str], list[str]]:
        t0 = time.perf_counter()
        try:
            return precheck(repo_, commits, base_)
        finally:
            if recording:
                samples.add(len(commits), "runner: pre-check", time.perf_counter() - t0)

    def run(size: int, variant: str, record: bool) -> None:
        commits = tasks[size]
        t0 = time.perf_counter()
        if variant == "runner":
            with pairwise_as(timed_precheck):
                runner_merge(repo, base, commits)
        elif variant == "plumbing":
            plumbing(repo, base, commits)
        else:
            with pairwise_as(_all_pairs):
                runner_merge(repo, base, commits)
        took = time.perf_counter() - t0
        if record:
            samples.add(size, variant, took)
        run_git(repo, "update-ref", "-d", REF)  # not timed
        with contextlib.suppress(RuntimeError):
            run_git(repo, "update-ref", "-d", "refs/heads/bench/plumbing")

    recording = False
    print("warm-up (not recorded)")
    for size in tasks:
        run(size, "runner", False)
        run(size, "plumbing", False)
    variants = ["runner", "plumbing"]
    recording = True
    for r in range(rounds):
        k = r % len(variants)
        order = variants[k:] + variants[:k]
        done = []
        for size in tasks:
            for variant in order + (["before"] if size in before and r == 0 else []):
                run(size, variant, True)
                done.append(f"{size}/{variant} {samples.data[(size, variant)][-1]:.3f}")
        print(f"round {r + 1}/{rounds}: " + "  ".join(done), flush=True)
    return samples


def report(samples: Samples, sizes: list[int]) -> None:
    print()
    print(f"{'tasks':>5}  {'variant':<20}{'n':>3}{'median s':>10}{'per task ms':>13}")
    for size in sizes:
        for variant in ("runner", "runner: pre-check", "plumbing", "before"):
            if (size, variant) in samples.data:
                n = len(samples.data[(size, variant)])
                med = samples.median(size, variant)
                print(f"{size:>5}  {variant:<20}{n:>3}{med:>10.3f}{med / size * 1000:>13.1f}")
    print()
    for size in sizes:
        floor = samples.median(size, "plumbing")
        ratio = samples.median(size, "runner") / floor
        line = f"{size:>4} tasks: runner/plumbing = {ratio:.2f} (goal <= 2)"
        if (size, "before") in samples.data:
            line += f"; before/plumbing = {samples.median(size, 'before') / floor:.2f}"
        print(line)
    print("\nall samples (s):")
    for (size, variant), xs in samples.data.items():
        print(f"  {size:>4} {variant:<20} " + " ".join(f"{x:.3f}" for x in xs))


def machine_notes() -> list[str]:
    git_ver = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False)
    load = os.getloadavg()
    return [
        f"nproc: {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})",
        f"{git_ver.stdout.strip()}; python {sys.version.split()[0]}",
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    ]


# -- what a run leaves in the user's object store (--store) ----------------------------------


def store_after_run(
    home: Path, src: Path, base: str, commits: list[str], second_fsck: bool = True
) -> None:
    """A run's host side on a fresh copy of the base: each task's work brought home through
    `runner.intake.bring_home` (its bundle fetched into a quarantine, checked, fetched on),
    the wave merged, then `runner.retention.tidy_objects`: the object store at each step."""
    from runner import names
    from runner.intake import bring_home
    from runner.retention import store, tidy_objects

    user = home / ("user" if second_fsck else "user-nofsck")
    if not second_fsck:
        _no_second_fsck()
    run_git(home, "clone", "--quiet", "--no-local", "--single-branch", str(src), str(user))
    how = "" if second_fsck else " (intake's 2nd fetch without fsck)"
    print(f"\nobject store of a fresh clone of the base, then a run of {len(commits)} tasks{how}:")
    print(f"  {'step':<40}{'loose':>8}{'packs':>7}{'s':>8}")

    def show(step: str, took: float) -> None:
        s = store(user)
        print(f"  {step:<40}{s.loose:>8}{s.packs:>7}{took:>8.2f}", flush=True)

    show("before the run", 0)
    scratch = home / "scratch"
    scratch.mkdir()
    ready = []
    t0 = time.perf_counter()
    for i, commit in enumerate(commits):
        bundle = scratch / "task.bundle"
        run_git(src, "update-ref", names.RESULT_REF, commit)
        run_git(src, "bundle", "create", "--quiet", str(bundle), names.RESULT_REF, f"^{base}")
        ref = names.task_ref("bench", f"t{i:03d}")
        got = bring_home(user, base, commit, bundle, ref, scratch, 10**6)
        if got.commit is None:
            raise RuntimeError(f"task {i} refused: {got.problem}")
        ready.append((f"t{i:03d}", got.commit))
    show("tasks' work fetched (intake)", time.perf_counter() - t0)
    t0 = time.perf_counter()
    merged = integrate.merge_wave(user, base, ready, "bench", False, start=base)
    rgit.update_ref(user, names.integration_ref("bench"), merged.head)
    show("wave merged", time.perf_counter() - t0)
    t0 = time.perf_counter()
    tidied = tidy_objects(user)
    show(f"tidy_objects ({tidied.note or 'maintenance asked'})", time.perf_counter() - t0)


def _no_second_fsck() -> None:
    """A proposal, measured: intake's second fetch (quarantine -> user repo) without
    transfer.fsckObjects. The quarantine's fetch from the bundle checked every object it
    took; with fsck on, git keeps every fetch as a pack (index-pack), however small."""

    def fetch(repo: Path, bundle: Path, src_ref: str, dest_ref: str) -> str:
        if bundle.is_dir():
            rgit.git(repo, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                     str(bundle), f"+{src_ref}:{dest_ref}")  # fmt: skip
            return rgit.out(repo, "rev-parse", dest_ref)
        return saved(repo, bundle, src_ref, dest_ref)

    saved = rgit.fetch_bundle
    setattr(rgit, "fetch_bundle", fetch)  # noqa: B010 - intake calls it through the module


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--sizes", default="20,200", help="wave sizes, comma-separated")
    ap.add_argument("--files", type=int, default=5_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before", default="", help="sizes to also run the all-pairs pre-check on")
    ap.add_argument("--keep", type=Path, help="generate the repo in DIR/repo and keep it")
    ap.add_argument(
        "--store", action="store_true", help="instead: what a run of the largest size leaves"
    )
    ap.add_argument(
        "--no-second-fsck", action="store_true", help="with --store: intake's proposal, measured"
    )
    args = ap.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        before = {int(s) for s in args.before.split(",") if s.strip()}
    except ValueError:
        ap.error("--sizes takes numbers, e.g. 20,200")
    if not sizes or min(sizes) < 2 or args.files < 1 or args.rounds < 1:
        ap.error("--sizes must be at least 2 each; --files and --rounds at least 1")
    notes = machine_notes()
    home = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="runner-bench-"))
    repo = home / "repo"
    if repo.exists():
        ap.error(f"{repo} exists: give --keep an empty directory")
    try:
        t0 = time.monotonic()
        tasks = generate(repo, args.files, sizes)
        base = run_git(repo, "rev-parse", "main")
        print(f"generated {args.files} files, {sum(sizes)} task branches in {repo} "
              f"({time.monotonic() - t0:.1f}s)")  # fmt: skip
        if args.store:
            store_after_run(home, repo, base, tasks[max(sizes)], not args.no_second_fsck)
        else:
            report(measure(repo, base, tasks, args.rounds, before), sizes)
        print("\nmachine:")
        for line in notes:
            print(f"  {line}")
        print(f"  date: {dt.date.today().isoformat()}")
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
