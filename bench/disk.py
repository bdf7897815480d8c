"""Benchmark: how to stop a task that fills the disk, and how far past the limit it gets.

Three ways to hold a task to --limit bytes (default 64 MiB), each against two fast writers,
`dd if=/dev/zero bs=1M` without a count (one big file at full speed) and a Python loop
writing 4 KiB files (many small files); a writer runs until it is stopped:

  tmpfs     a size-capped tmpfs (`mount -t tmpfs -o size=LIMIT`): the writer gets ENOSPC.
            Cost: mount + umount. Holds the workspace in RAM.
  loop      a file system per task: `truncate` an image, `mkfs.ext4`, `mount -o loop`, write,
            `umount`, remove. The writer gets ENOSPC. Cost of the four steps per task.
  watch     runner.sandbox.disk.DiskGuard (what the runner ships) on a directory of the root
            file system that already holds a checkout of --files files; it walks the tree
            every --interval seconds and SIGKILLs the writer once it added more than the limit.
            `watch-statvfs` is the same loop with statvfs of a dedicated mount (a loop file
            system large enough not to stop the writer itself) instead of a walk: O(1) a look.
  watch-docker  the guard as the runner wires it: `dd` in a hardened runner/sandbox:1
            container writing to a bind-mounted directory, killed through the Docker API.

Printed per method and writer: median and worst overshoot (bytes added past the limit when the
writer stopped; negative: stopped short of it), the guard's CPU (seconds of its thread per
second of watching) and the set-up cost per task. Needs root (mount, losetup) and, for
watch-docker, the daemon and runner/sandbox:1. Removes everything it makes.

Run: .venv/bin/python bench/disk.py [--limit 64m] [--rounds 3] [--files 5000]
                                    [--interval 0.05 0.1 0.25 0.5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner.core.policy import parse_size
from runner.sandbox.disk import DiskGuard, fs_used, usage

IMAGE = "runner/sandbox:1"
MiB = 1024**2
# os.write, not a buffered file: a flush error at garbage collection is ignored, and the writer
# would go on creating empty files past ENOSPC for ever.
SMALL = (
    "import os, sys\nd, i, b = sys.argv[1], 0, b'x' * 4096\n"
    "while True:\n"
    "    fd = os.open(f'{d}/f{i}', os.O_WRONLY | os.O_CREAT, 0o644)\n"
    "    os.write(fd, b)\n    os.close(fd)\n    i += 1\n"
)


def writer(kind: str, where: Path) -> subprocess.Popen[bytes]:
    argv = (
        ["dd", "if=/dev/zero", f"of={where}/fill", "bs=1M"]
        if kind == "dd"
        else [sys.executable, "-c", SMALL, str(where)]
    )
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def statvfs_used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


@dataclass
class Row:
    method: str
    writer: str
    overshoot: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    setup_s: list[float] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=dict)

    def line(self) -> str:
        med, worst = statistics.median(self.overshoot), max(self.overshoot)
        cpu = f"{statistics.median(self.cpu):6.1%}" if self.cpu else "     -"
        setup = f"{statistics.median(self.setup_s) * 1000:7.1f}" if self.setup_s else "      -"
        return (
            f"{self.method:<22} {self.writer:<6} {med / MiB:9.1f} {worst / MiB:9.1f} {cpu} {setup}"
        )


# -- (a) tmpfs and (c) loop: a hard bound -----------------------------------------------------
@contextlib.contextmanager
def tmpfs(mnt: Path, size: int, t: dict[str, float]) -> Iterator[Path]:
    t0 = time.perf_counter()
    sh("mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(mnt))
    t["setup"] = time.perf_counter() - t0
    try:
        yield mnt
    finally:
        t0 = time.perf_counter()
        sh("umount", str(mnt))
        t["setup"] += time.perf_counter() - t0


@contextlib.contextmanager
def loopfs(mnt: Path, image: Path, size: int, t: dict[str, float]) -> Iterator[Path]:
    steps = (
        ("truncate", ("truncate", "-s", str(size), str(image))),
        # No reserved blocks: the limit is the task's; ext4's journal and metadata come on top.
        ("mkfs", ("mkfs.ext4", "-q", "-F", "-m", "0", str(image))),
        ("mount", ("mount", "-o", "loop", str(image), str(mnt))),
    )
    for name, argv in steps:
        t0 = time.perf_counter()
        sh(*argv)
        t[name] = time.perf_counter() - t0
    try:
        yield mnt
    finally:
        t0 = time.perf_counter()
        sh("umount", str(mnt))
        image.unlink()
        t["umount+rm"] = time.perf_counter() - t0
        t["setup"] = sum(t.values())


Mount = Callable[[dict[str, float]], contextlib.AbstractContextManager[Path]]


def hard_bound(row: Row, make: Mount, limit: int) -> None:
    t: dict[str, float] = {}
    with make(t) as mnt:
        base = statvfs_used(mnt)
        proc = writer(row.writer, mnt)
        proc.wait()  # ENOSPC ends both writers
        row.overshoot.append(statvfs_used(mnt) - base - limit)
        for p in mnt.iterdir():
            if p.is_file():
                p.unlink()
            elif p.name != "lost+found":
                shutil.rmtree(p)
    row.setup_s.append(t["setup"])
    for name, took in t.items():
        row.steps.setdefault(name, []).append(took)


# -- (b) watchdog --------------------------------------------------------------------------
def checkout(where: Path, files: int) -> None:
    for i in range(files):
        d = where / f"pkg{i % 50:02d}" / f"mod{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i:05d}.py").write_bytes(b"# x\n" * (64 + i % 500))


class Timed:
    """A measure function that adds up the CPU time its (the guard's) thread spends in it."""

    def __init__(self, measure: Callable[[Sequence[Path]], int]) -> None:
        self.measure, self.cpu = measure, 0.0

    def __call__(self, paths: Sequence[Path]) -> int:
        t0 = time.thread_time()
        try:
            return self.measure(paths)
        finally:
            self.cpu += time.thread_time() - t0


def watched(row: Row, where: Path, limit: int, interval: float,
            measure: Callable[[Sequence[Path]], int],
            probe: Callable[[Sequence[Path]], int] | None) -> None:  # fmt: skip
    timed = Timed(measure)
    timed_probe = Timed(probe) if probe else None
    proc = writer(row.writer, where)
    with DiskGuard(
        [where], limit, proc.kill, interval=interval, measure=timed, probe=timed_probe
    ) as guard:
        # The base walk is not part of watching: count the guard's looks only.
        timed.cpu, started = 0.0, time.monotonic()
        proc.wait()
    watched_s = time.monotonic() - started
    row.overshoot.append(measure([where]) - guard.base - limit)
    row.cpu.append((timed.cpu + (timed_probe.cpu if timed_probe else 0)) / watched_s)
    for p in where.glob("f*"):
        p.unlink()


def watched_docker(row: Row, where: Path, limit: int, interval: float) -> None:
    import docker

    client = docker.from_env(timeout=60)
    os.chmod(where, 0o777)
    c = client.containers.create(
        IMAGE,
        ["dd", "if=/dev/zero", "of=/work/fill", "bs=1M"],
        name=f"bench-disk-{secrets.token_hex(3)}",
        labels={"bench": "disk"},
        user="10001:10001",
        volumes={str(where): {"bind": "/work", "mode": "rw"}},
        read_only=True,
        cap_drop=["ALL"],
        network_mode="none",
        mem_limit="1g",
        nano_cpus=int(1e9),
    )
    try:
        base = usage([where])
        with DiskGuard([where], limit, lambda: c.kill(), interval=interval) as guard:
            c.start()
            c.wait(timeout=120)
        row.overshoot.append(usage([where]) - base - limit)
        assert guard.exceeded
    finally:
        c.remove(force=True)
        (where / "fill").unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", default="64m")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--interval", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5])
    ap.add_argument("--no-docker", action="store_true", help="skip watch-docker")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/disk.py needs root (mount, losetup)")
    limit = parse_size(args.limit)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-disk-") as tmp:
        root = Path(tmp)
        mnt, image, tree = root / "mnt", root / "fs.img", root / "tree"
        mnt.mkdir()
        tree.mkdir()
        for kind in ("dd", "small"):
            for name, make in (
                ("tmpfs", lambda t: tmpfs(mnt, limit, t)),
                ("loop ext4", lambda t: loopfs(mnt, image, limit, t)),
            ):
                rows.append(Row(name, kind))
                progress(f"{name} {kind}")
                for _ in range(args.rounds):
                    hard_bound(rows[-1], make, limit)
        t0 = time.perf_counter()
        checkout(tree, args.files)
        base_walk = []
        for _ in range(5):
            t1 = time.perf_counter()
            usage([tree])
            base_walk.append(time.perf_counter() - t1)
        print(f"checkout of {args.files} files written in {time.perf_counter() - t0:.2f} s; "
              f"one walk of it: {statistics.median(base_walk) * 1000:.1f} ms")  # fmt: skip
        for interval in args.interval:
            for name, probe in (("walk", None), ("walk+trig", fs_used)):
                for kind in ("dd", "small"):
                    rows.append(Row(f"watch {name} {interval:g}s", kind))
                    progress(rows[-1].method + " " + kind)
                    for _ in range(args.rounds):
                        watched(rows[-1], tree, limit, interval, usage, probe)
        with loopfs(mnt, image, 4 * limit + 256 * MiB, {}):
            for interval in args.interval:
                for kind in ("dd", "small"):
                    rows.append(Row(f"watch statvfs {interval:g}s", kind))
                    progress(rows[-1].method + " " + kind)
                    for _ in range(args.rounds):
                        watched(rows[-1], mnt, limit, interval, fs_used, None)
        if not args.no_docker:
            for interval in args.interval:
                rows.append(Row(f"watch-docker {interval:g}s", "dd"))
                progress(rows[-1].method)
                for _ in range(args.rounds):
                    watched_docker(rows[-1], tree, limit, interval)
    print(f"\nlimit {limit / MiB:g} MiB, {args.rounds} rounds, overshoot in MiB (past the limit)")
    print(f"{'method':<22} {'writer':<6} {'median':>9} {'worst':>9} {'cpu':>6} {'setup ms':>7}")
    for row in rows:
        print(row.line())
    for row in rows:
        if len(row.steps) > 1:
            each = ", ".join(
                f"{k} {statistics.median(v) * 1000:.1f}"
                for k, v in row.steps.items()
                if k != "setup"
            )
            print(f"{row.method} ({row.writer}), median ms per step: {each}")


if __name__ == "__main__":
    main()
