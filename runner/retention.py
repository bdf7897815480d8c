"""What runs leave behind and when it goes: run refs and state (`rm`, `prune`), cache volumes'
last use (`gc --caches --older-than`), and the user's object store after a run (issue 9, 10).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runner import git, names
from runner.errors import GitError, InputError, RunnerError
from runner.gc import run_alive
from runner.journal import JournalError, read_journal
from runner.sandbox.caches import parse_time

LATEST = "latest"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> timedelta:
    """`7d`, `12h`, `2w`, `30m`, `90s` as a duration. Raises InputError."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*([smhdw])\s*", text)
    if not m:
        raise InputError(
            f"--older-than {text!r}: not an age", hint="a number and a unit: 30m, 12h, 7d, 2w"
        )
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


# -- the user's object store ----------------------------------------------------------------


@dataclass(frozen=True)
class Store:
    """What `git count-objects -v` says of the repo's own object store."""

    loose: int
    packs: int


@dataclass(frozen=True)
class Tidied:
    """What tidy_objects did to the repo's object store."""

    before: Store
    after: Store
    ran: bool
    """It ran (the roll-up when needed, then git's maintenance, which decides by its own
    thresholds); False: turned off by the user's config, or git failed (see note)."""
    note: str
    """Why not, or what failed (a failure never fails the run: the store is only untidy)."""


def store(repo: Path) -> Store:
    fields = dict(
        line.split(": ", 1)
        for line in git.out(repo, "count-objects", "-v").splitlines()
        if ": " in line
    )
    return Store(int(fields.get("count", 0)), int(fields.get("packs", 0)))


def _user_config(repo: Path, key: str, default: str) -> str:
    """The user's own value of a key, ignoring the runner's `-c` overrides (command scope)."""
    proc = git.git(repo, "config", "--show-scope", "--get-all", key, check=False)
    values = [
        line.split("\t", 1)[1]
        for line in proc.stdout.decode("utf-8", "replace").splitlines()
        if "\t" in line and not line.startswith("command\t")
    ]
    return values[-1] if values else default


def tidy_objects(repo: Path) -> Tidied:
    """Leave the repo's object store as tidy as one `git fetch` of the run's work would:
    what the run added rolled into one pack, then git's own automatic maintenance.

    1. When the store holds more than two packs or at least `fetch.unpackLimit` (100) loose
       objects: `git repack -d -l --geometric=2`, which rolls the small packs and the loose
       objects into one pack and leaves the large ones alone (its cost follows what the run
       added, not the repo: measured in bench/README.md). A run adds a pack per task (intake
       fetches with fsck, which keeps every fetch as a pack) and a commit and a few trees
       per merge.
    2. `git maintenance run --auto` (`gc --auto` unless the user chose another strategy),
       as `git fetch` runs it after every fetch.

    Both under the user's own settings: nothing when `maintenance.auto` is false or
    `gc.auto` is 0; in the foreground. Call it once a run's sandboxes are gone, while
    holding the repo lock: sandboxes borrow this object store read-only, and a repack under
    them would remove packs they read (why every other git call of the runner has automatic
    gc off). A failing git is a `note`, not an error; raises GitError only when the store
    cannot be counted.
    """
    before = store(repo)
    if _user_config(repo, "maintenance.auto", "true").lower() in ("false", "no", "off", "0"):
        return Tidied(before, before, False, "maintenance.auto is off in your git config")
    gc_auto = _user_config(repo, "gc.auto", "6700")
    if gc_auto.strip() == "0":
        return Tidied(before, before, False, "gc.auto is 0 in your git config")
    limit = _user_config(repo, "fetch.unpackLimit", _user_config(repo, "transfer.unpackLimit", ""))
    try:
        if before.packs > 2 or before.loose >= (int(limit) if limit.isdigit() else 100):
            git.git(repo, "repack", "-d", "-l", "-q", "--geometric=2")
        git.git(
            repo,
            *("-c", f"gc.auto={gc_auto}", "-c", "gc.autoDetach=false"),
            *("maintenance", "run", "--auto", "--no-detach", "--quiet"),
        )
    except GitError as exc:
        tail = (exc.stderr or exc.stdout).strip().splitlines()[-1:] or [f"exit {exc.code}"]
        return Tidied(before, store(repo), False, f"git failed: {tail[0][:300]}")
    return Tidied(before, store(repo), True, "")


# -- runs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunEntry:
    """A run as the repo and the state dir know it."""

    run_id: str
    dir: Path | None
    """Its state dir (logs, journal, result); None: only its refs are left."""
    refs: tuple[str, ...]
    alive: bool
    """Its coordinator still runs."""
    status: str
    """How it ended (success, partial, error, interrupted), or running, died, unknown."""
    ended: datetime | None
    started: datetime | None
    unhomed: tuple[Path, ...] = ()
    """Task workspaces still on disk whose task's work is not under its ref: the only copy."""

    @property
    def age_from(self) -> datetime | None:
        """The time prune measures age from: its end; a run known only by refs, its start."""
        return self.ended if self.dir is not None else self.started


def _started(run_id: str) -> datetime | None:
    # Run ids begin with their start in local time (coordinator.new_run_id).
    try:
        return datetime.strptime(run_id[:15], "%Y%m%d-%H%M%S").astimezone()
    except ValueError:
        return None


def _events(run_dir: Path) -> list[dict[str, Any]]:
    try:
        return read_journal(names.journal_path(run_dir)).events
    except (JournalError, OSError, ValueError):
        return []


def _ending(run_dir: Path, events: list[dict[str, Any]]) -> tuple[str, datetime | None]:
    """How and when a run ended: its journal's `run_ended`, else its result document."""
    for ev in reversed(events):
        if ev.get("event") == "run_ended":
            return str(ev.get("status", "unknown")), parse_time(str(ev.get("time", "")))
    try:
        doc = json.loads(names.result_path(run_dir).read_text())
    except (OSError, ValueError):
        doc = {}
    ended = parse_time(str(doc.get("finished_at") or "")) if isinstance(doc, dict) else None
    if ended is not None:
        return str(doc.get("status", "unknown")), ended
    return ("running" if events else "unknown"), None


def list_runs(repo: Path, root: Path) -> list[RunEntry]:
    """Every run of the repo: by its state dir under root, or by its refs. Oldest first."""
    refs: dict[str, list[str]] = {}
    listing = git.out(repo, "for-each-ref", "--format=%(refname)", *names.RUN_REF_ROOTS)
    for ref in listing.splitlines():
        if run_id := names.run_of_ref(ref):
            refs.setdefault(run_id, []).append(ref)
    dirs = {p.name: p for p in all_run_dirs(root, repo)}
    entries = []
    for run_id in sorted(refs.keys() | dirs.keys()):
        run_dir = dirs.get(run_id)
        alive = run_dir is not None and run_alive(run_dir)
        status, ended = "unknown", None
        if run_dir is not None:
            status, ended = _ending(run_dir, _events(run_dir))
            if status == "running" and not alive:
                status = "died"
        ours = tuple(refs.get(run_id, ()))
        unhomed = tuple(
            work
            for work in (sorted((run_dir / "tasks").glob("*/work")) if run_dir else [])
            if names.task_ref(run_id, work.parent.name) not in ours
        )
        entries.append(
            RunEntry(run_id, run_dir, ours, alive, status, ended, _started(run_id), unhomed)
        )
    return entries


def find(entries: list[RunEntry], which: str) -> RunEntry:
    """The run named by id, unique prefix or `latest`. Raises InputError."""
    if not entries:
        raise InputError("this repo has no runs", hint="start one: runner run PLAN --repo DIR")
    if which == LATEST:
        return entries[-1]  # run ids begin with their start time: sorted is in order
    found = [e for e in entries if e.run_id == which] or [
        e for e in entries if e.run_id.startswith(which)
    ]
    if len(found) == 1:
        return found[0]
    if found:
        shown = ", ".join(e.run_id for e in found[:5])
        raise InputError(
            f"run {which!r} is ambiguous: it begins {len(found)} runs ({shown})",
            hint="give more of the run id",
        )
    latest = ", ".join(e.run_id for e in entries[-5:])
    raise InputError(f"no run {which!r} in this repo", hint=f"the latest runs: {latest}")


def _checked_out(repo: Path) -> dict[str, str]:
    """Branch ref -> the worktree that has it checked out."""
    out: dict[str, str] = {}
    path = ""
    for line in git.out(repo, "worktree", "list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            path = line.removeprefix("worktree ")
        elif line.startswith("branch "):
            out[line.removeprefix("branch ")] = path
    return out


def refuse_removal(repo: Path, entry: RunEntry) -> str | None:
    """Why a run must not be removed now (None: it may)."""
    if entry.alive:
        return f"run {entry.run_id} is in progress (its coordinator still runs)"
    where = _checked_out(repo).get(names.integration_ref(entry.run_id))
    if where is not None:
        branch = names.integration_ref(entry.run_id).removeprefix("refs/heads/")
        return f"run {entry.run_id}: its branch {branch} is checked out in {where}"
    return None


def describe(entry: RunEntry) -> str:
    """What removing a run takes away, in one line."""
    parts = [f"{len(entry.refs)} ref(s)"]
    if names.integration_ref(entry.run_id) in entry.refs:
        branch = names.integration_ref(entry.run_id).removeprefix("refs/heads/")
        parts[0] += f" (with its branch {branch})"
    if entry.dir is not None:
        parts.append(f"state dir {entry.dir} ({_size(entry.dir) / 2**20:.1f} MiB)")
    if entry.unhomed:
        parts.append(f"{len(entry.unhomed)} workspace(s) with work not under a ref, the only "
                     f"copy ({', '.join(map(str, entry.unhomed[:3]))})")  # fmt: skip
    if entry.dir is None:
        when = entry.started.isoformat(timespec="seconds") if entry.started else "?"
        return f"run {entry.run_id} [only refs left, started {when}]: " + ", ".join(parts)
    when = entry.ended.isoformat(timespec="seconds") if entry.ended else "-"
    return f"run {entry.run_id} [{entry.status}, ended {when}]: " + ", ".join(parts)


def remove_run(repo: Path, root: Path, entry: RunEntry) -> None:
    """Delete a run's refs, integration branch and state dir (logs, journal, results).

    Raises InputError when refuse_removal says no. Its caches' last use is recorded first,
    so removing runs does not make their caches look unused.
    """
    if entry.dir is not None and run_alive(entry.dir):  # resumed since it was listed
        entry = replace(entry, alive=True)
    if why := refuse_removal(repo, entry):
        raise InputError(why, hint="wait for it to end, or switch that checkout to a branch")
    if entry.dir is not None:
        record_cache_use(repo, root, [entry.dir])
    if entry.refs:
        lines = "".join(f"delete {ref}\n" for ref in entry.refs)
        git.git(repo, "update-ref", "--stdin", input=lines.encode())
    if entry.dir is not None:
        try:
            shutil.rmtree(entry.dir)
        except OSError as exc:
            raise RunnerError(
                f"run {entry.run_id}: its refs are gone, but not all of {entry.dir}: {exc}",
                hint=f"remove the rest by hand (sudo rm -r {entry.dir} if a sandbox's uid owns it)",
            ) from None


def prunable(entries: Iterable[RunEntry], cutoff: datetime) -> tuple[list[RunEntry], list[str]]:
    """Runs that ended before cutoff (to remove), and notes on old runs that stay."""
    remove, notes = [], []
    for e in entries:
        when = e.age_from
        if e.unhomed and when is not None and when < cutoff and not e.alive:
            notes.append(
                f"kept run {e.run_id}: {len(e.unhomed)} task workspace(s) hold work that is "
                f"not under a ref ({e.unhomed[0]}); `runner rm` it once you have looked"
            )
            continue
        if e.alive or when is None or when >= cutoff:
            if e.status == "died" and e.started and e.started < cutoff:
                notes.append(
                    f"kept run {e.run_id}: it died without an end (its work may be only in "
                    "its workspaces); `runner rm` it once you have looked"
                )
            continue
        remove.append(e)
    return remove, notes


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


# -- cache volumes' last use ----------------------------------------------------------------


def _used_caches(repo_key: str, run_dir: Path) -> tuple[set[str], datetime | None]:
    """The cache volumes a run mounted (its started tasks', its verify's) and when it ended."""
    events = _events(run_dir)
    used = set()
    for ev in events:
        if ev.get("event") == "task_started":
            used.add(names.cache_volume(repo_key, "task", str(ev.get("task", ""))))
        elif ev.get("event") == "verify_started":
            used.add(names.cache_volume(repo_key, "verify"))
    when = _ending(run_dir, events)[1]
    if when is None and events:
        when = parse_time(str(events[-1].get("time", "")))
    return used, when


def recorded_use(root: Path) -> dict[str, datetime]:
    """Cache volume name -> last use, as recorded in the state root."""
    try:
        raw = json.loads(names.cache_record(root).read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for name, text in (raw.get("last_used") or {}).items() if isinstance(raw, dict) else ():
        if (when := parse_time(str(text))) is not None:
            out[str(name)] = when
    return out


def record_cache_use(repo: Path, root: Path, run_dirs: Iterable[Path]) -> dict[str, datetime]:
    """Fold the cache use of these runs (from their journals) into the record; return it.

    The record outlives the runs (`rm`, `prune`), so a cache keeps its last use after the
    run that used it is gone. Written whole to a temp file, then renamed.
    """
    from runner.coordinator import repo_key

    key = repo_key(repo)
    record = recorded_use(root)
    changed = False
    for run_dir in run_dirs:
        used, when = _used_caches(key, run_dir)
        if when is None:
            continue
        for name in used:
            if name not in record or record[name] < when:
                record[name], changed = when, True
    if changed:
        path = names.cache_record(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        doc = {"last_used": {n: t.astimezone(UTC).isoformat() for n, t in sorted(record.items())}}
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, path)
    return record


def all_run_dirs(root: Path, repo: Path) -> list[Path]:
    """The state dirs of the repo's runs. A state root shared by repos (RUNNER_STATE_DIR)
    holds other repos' runs too: those are left out, by the repo their journal names."""
    runs_dir = names.runs_dir(root)
    found = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    return [p for p in found if _repo_of(p) in (None, repo.resolve())]


def _repo_of(run_dir: Path) -> Path | None:
    """The repo a run's journal names in its first event (`planned`); None if unreadable."""
    try:
        with names.journal_path(run_dir).open(encoding="utf-8") as fh:
            first = json.loads(fh.readline())
    except (OSError, ValueError):
        return None
    repo = first.get("repo") if isinstance(first, dict) else None
    return Path(str(repo)).resolve() if repo and first.get("event") == "planned" else None


def after_run(repo: Path, root: Path, run_dir: Path) -> Tidied:
    """What the coordinator calls once a run has ended and its sandboxes are gone, still
    holding the repo lock: record which caches it used, then tidy the object store
    (tidy_objects). Never raises: a failure leaves the store as it was and says so in `note`.

    repo: the checkout's top level; root: the state root (coordinator.state_root); run_dir:
    the run's state dir (names.run_dir(root, run_id)), whose journal names its caches."""
    # The record is a convenience: gc falls back to the journals and the volumes' dates.
    with contextlib.suppress(OSError, GitError):
        record_cache_use(repo, root, [run_dir])
    try:
        return tidy_objects(repo)
    except (GitError, OSError) as exc:  # the store could not even be counted: leave it
        return Tidied(Store(0, 0), Store(0, 0), False, f"not tidied: {exc}")


def now() -> datetime:
    return datetime.now(UTC)
