"""Every git call the host makes. argv tuples, never a shell string; inherited GIT_* scrubbed.

Host git never runs inside a task's workspace after the task started (the task controls its
.git/config, hooks and attributes there); it reads only the user's repo and verified bundles.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runner.errors import GitError, InputError

# Identity of commits the runner itself makes (merges); .invalid never resolves.
RUNNER_IDENTITY = {
    "GIT_AUTHOR_NAME": "runner",
    "GIT_AUTHOR_EMAIL": "runner@runner.invalid",
    "GIT_COMMITTER_NAME": "runner",
    "GIT_COMMITTER_EMAIL": "runner@runner.invalid",
}
# gc.auto/maintenance.auto: an automatic repack under running sandboxes, which borrow this
# object store read-only, would delete packs they are reading. Hooks: never run the repo's.
_SAFE_CONFIG = (
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
)


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"
    return env | (extra or {})


def git(
    repo: Path,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `git -C repo ARGS`; raise GitError (command, code, output) unless check=False."""
    argv = ("git", "--no-optional-locks", *_SAFE_CONFIG, "-C", str(repo), *args)
    proc = subprocess.run(argv, capture_output=True, env=_env(env), input=input, check=False)
    if check and proc.returncode != 0:
        shown = ("git", "-C", str(repo), *args)
        raise GitError(shown, proc.returncode, _text(proc.stdout), _text(proc.stderr))
    return proc


def out(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return _text(git(repo, *args, env=env).stdout).strip()


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def toplevel(path: Path) -> Path:
    """The work tree root of the repo containing path. Raises InputError if it is none."""
    if not path.is_dir():
        raise InputError(f"{path}: no such directory", hint="pass --repo DIR of a git checkout")
    proc = git(path, "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise InputError(
            f"{path}: not a git repository (or a bare one)",
            hint="pass --repo DIR of a git checkout with at least one commit",
        )
    return Path(_text(proc.stdout).strip())


def common_dir(repo: Path) -> Path:
    """The .git directory shared by all worktrees (objects, refs)."""
    return Path(out(repo, "rev-parse", "--path-format=absolute", "--git-common-dir"))


def resolve(repo: Path, rev: str) -> str | None:
    proc = git(
        repo,
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        f"{rev}^{{commit}}",
        check=False,
    )
    return _text(proc.stdout).strip() or None if proc.returncode == 0 else None


def tree_paths(repo: Path, commit: str) -> list[str]:
    raw = git(repo, "ls-tree", "-r", "-z", "--name-only", commit).stdout
    return [p for p in _text(raw).split("\0") if p]


def is_dir_at(repo: Path, commit: str, path: str) -> bool:
    proc = git(repo, "cat-file", "-t", f"{commit}:{path}", check=False)
    return proc.returncode == 0 and _text(proc.stdout).strip() == "tree"


def archive_dir(repo: Path, commit: str, path: str) -> bytes:
    """A tar of directory `path` as committed at `commit`, its contents at the tar's root."""
    return git(repo, "archive", "--format=tar", f"{commit}:{path}").stdout


def changed_paths(repo: Path, old: str, new: str) -> list[str]:
    """Paths that differ between two commits; a rename counts as both its paths."""
    raw = git(repo, "diff-tree", "-r", "-z", "--name-only", "--no-renames", old, new).stdout
    return sorted(p for p in _text(raw).split("\0") if p)


def has_object(repo: Path, sha: str) -> bool:
    return git(repo, "cat-file", "-e", f"{sha}^{{commit}}", check=False).returncode == 0


def bundle_verify(repo: Path, bundle: Path) -> None:
    git(repo, "bundle", "verify", "--quiet", str(bundle))


def fetch_bundle(repo: Path, bundle: Path, src: str, dest_ref: str) -> str:
    """Fetch src from a bundle (or a repo path) into dest_ref, checking every object (fsck).

    From a repo, only the objects dest_ref needs travel (unlike a bundle's whole pack)."""
    fetch_checked(repo, bundle, src, dest_ref)
    return out(repo, "rev-parse", dest_ref)


def fetch_checked(repo: Path, source: Path, src: str, dest_ref: str, *, fsck: bool = True) -> None:
    """fetch_bundle without reading dest_ref back (the caller knows what it holds).

    fsck=False only for objects a checked fetch brought already (the quarantine's): with fsck
    git keeps every fetch as a pack of its own, however small (200 tasks, 200 packs)."""
    git(
        repo,
        "-c",
        f"transfer.fsckObjects={'true' if fsck else 'false'}",
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        str(source),
        f"+{src}:{dest_ref}",
    )


def object_format(repo: Path) -> str:
    """sha1 or sha256: a repo that borrows another's objects must name them the same way."""
    return out(repo, "rev-parse", "--show-object-format")


def layout(repo: Path) -> tuple[str, Path]:
    """(object_format, common_dir) from one git process: every clone and intake needs both."""
    fmt, common = out(
        repo, "rev-parse", "--show-object-format", "--path-format=absolute", "--git-common-dir"
    ).splitlines()
    return fmt, Path(common)


def init_quarantine(path: Path, repo: Path) -> None:
    """A bare repo of the runner's own that borrows repo's objects (read-only use)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt, common = layout(repo)
    git(path.parent, "init", "--quiet", "--bare", "--template=", f"--object-format={fmt}",
        str(path))  # fmt: skip
    borrow_from = common / "objects"
    (path / "objects" / "info").mkdir(parents=True, exist_ok=True)
    (path / "objects" / "info" / "alternates").write_text(f"{borrow_from}\n")


def object_type(repo: Path, oid: str) -> str | None:
    proc = git(repo, "cat-file", "-t", "--end-of-options", oid, check=False)
    return _text(proc.stdout).strip() if proc.returncode == 0 else None


def ref_object(repo: Path, ref: str) -> tuple[str, str] | None:
    """(object id, type) of what ref points at (not peeled), or None if it names nothing."""
    proc = git(
        repo, "cat-file", "--batch-check=%(objectname) %(objecttype)", input=f"{ref}\n".encode()
    )
    fields = _text(proc.stdout).split()
    return (fields[0], fields[1]) if len(fields) == 2 and fields[1] != "missing" else None


def object_count(repo: Path) -> int:
    """Objects stored in the repo itself (loose and packed), not those it borrows."""
    fields = dict(
        line.split(": ", 1)
        for line in out(repo, "count-objects", "-v").splitlines()
        if ": " in line
    )
    return int(fields.get("count", 0)) + int(fields.get("in-pack", 0))


def is_ancestor(repo: Path, old: str, new: str) -> bool:
    return git(repo, "merge-base", "--is-ancestor", old, new, check=False).returncode == 0


def descent(repo: Path, start: str, commit: str) -> list[str] | None:
    """The commits of start..commit if commit descends from start (or is it), else None.

    One walk of `start...commit`: start is an ancestor of commit exactly when no commit
    of start's history is missing from commit's (the left side is empty).
    """
    raw = out(repo, "rev-list", "--left-right", f"{start}...{commit}", "--")
    lines = raw.split()
    if any(line.startswith("<") for line in lines):
        return None
    return [line[1:] for line in lines]


def rev_list(repo: Path, *revs: str) -> list[str]:
    return out(repo, "rev-list", *revs, "--").split()


def present(repo: Path, oids: list[str]) -> list[str]:
    """Which of these objects the repo already has."""
    if not oids:
        return []
    data = git(repo, "cat-file", "--batch-check=%(objectname)", input="\n".join(oids).encode())
    lines = _text(data.stdout).splitlines()
    return [line for line in lines if line and not line.endswith(" missing")]


def refs_containing(repo: Path, commit: str, limit: int = 3) -> list[str]:
    raw = out(repo, "for-each-ref", "--format=%(refname)", f"--contains={commit}")
    return raw.split()[:limit]


def changes(repo: Path, old: str, new: str) -> list[tuple[str, str, str]]:
    """(path, old mode, new mode) of every path that differs between two commits."""
    raw = _text(git(repo, "diff-tree", "-r", "-z", "--no-renames", old, new).stdout)
    parts = raw.split("\0")
    found = []
    for meta, path in zip(parts[0::2], parts[1::2], strict=False):
        fields = meta.lstrip(":").split()
        if len(fields) >= 2 and path:
            found.append((path, fields[0], fields[1]))
    return sorted(found)


def update_ref(repo: Path, ref: str, new: str, old: str | None = None) -> None:
    git(repo, "update-ref", ref, new, *([old] if old else []))


def delete_ref(repo: Path, ref: str, old: str | None = None) -> None:
    git(repo, "update-ref", "-d", ref, *([old] if old else []))


@dataclass(frozen=True)
class MergeOutcome:
    tree: str | None
    conflicts: list[str]

    @property
    def clean(self) -> bool:
        return self.tree is not None and not self.conflicts


def merge_tree(repo: Path, ours: str, theirs: str, base: str | None = None) -> MergeOutcome:
    """Merge two commits in memory (no index, no work tree): the tree or the conflicted files.

    base: the merge base to use instead of the one git would pick from the commits' history
    (a task's history is its own to shape; its start commit is the base it was checked on).
    """
    proc = git(
        repo,
        "merge-tree",
        "--write-tree",
        "--name-only",
        "-z",
        "--no-messages",
        *([f"--merge-base={base}"] if base else []),
        ours,
        theirs,
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise GitError(
            ("git", "merge-tree", ours, theirs),
            proc.returncode,
            _text(proc.stdout),
            _text(proc.stderr),
        )
    tree, *files = [p for p in _text(proc.stdout).split("\0") if p]
    return (
        MergeOutcome(tree, []) if proc.returncode == 0 else MergeOutcome(None, sorted(set(files)))
    )


def commit_tree(repo: Path, tree: str, parents: list[str], message: str) -> str:
    args = [a for p in parents for a in ("-p", p)]
    return out(repo, "commit-tree", tree, *args, "-m", message, env=RUNNER_IDENTITY)


def alternates(repo: Path) -> list[str]:
    path = common_dir(repo) / "objects" / "info" / "alternates"
    return path.read_text().split() if path.exists() else []


def clone_for_sandbox(repo: Path, commit: str, dest: Path, branch: str, objects_at: str) -> None:
    """A clone at `commit` on `branch` that borrows the repo's objects (no pack is copied).

    Only the start commit's tree is checked out; history stays in the host object store,
    bind-mounted read-only at `objects_at` in the sandbox. Measured here: about the cost of
    `git worktree add` on a 50,000-commit repo, where copying a full pack costs ~20x.
    """
    fmt, common = layout(repo)
    git(dest.parent, "init", "--quiet", "--initial-branch", branch, f"--object-format={fmt}",
        str(dest))  # fmt: skip
    info = dest / ".git" / "objects" / "info"
    (info / "alternates").write_text(f"{common / 'objects'}\n")
    # The unborn branch made at commit and checked out: one process (was update-ref + reset).
    git(dest, "checkout", "--quiet", "--force", "-B", branch, commit)
    (info / "alternates").write_text(f"{objects_at}\n")


def refresh_index(clone: Path, objects: Path) -> None:
    """Record the work tree's current stat data in a clone_for_sandbox clone's index.

    A file whose content changed stays marked changed (never staged). Comparing a symlink
    needs its blob: the clone borrows `objects` (the host's store) for the refresh, not the
    path it borrows from inside the sandbox.
    """
    alternates = clone / ".git" / "objects" / "info" / "alternates"
    inside = alternates.read_text()
    alternates.write_text(f"{objects}\n")
    try:
        git(clone, "update-index", "-q", "--refresh")
    finally:
        alternates.write_text(inside)


def is_dirty(repo: Path) -> bool:
    """Uncommitted changes (staged, unstaged or untracked, ignoring ignored files)."""
    return bool(git(repo, "status", "--porcelain", "-z").stdout)


def snapshot(repo: Path) -> dict[str, str]:
    """HEAD, current branch, index and work tree (tracked + untracked files).

    The work tree is taken by each file's lstat stamps, not its content: any write, rename or
    chmod moves a file's ctime, which no process can set back, so a file the run touched is
    seen even when its content is the same; reading every file of a large checkout twice per
    run cost seconds (issue 8).
    """
    head = git(repo, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    branch = git(repo, "symbolic-ref", "--quiet", "HEAD", check=False)
    index = hashlib.sha256(git(repo, "ls-files", "--stage", "-z").stdout).hexdigest()
    listing = git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
    tree = hashlib.sha256()
    for name in sorted(set(_text(listing).split("\0")) - {""}):
        tree.update(name.encode(errors="surrogateescape") + b"\0")
        try:
            st = os.lstat(repo / name)
        except OSError:
            tree.update(b"-")  # a deleted tracked file
            continue
        stamp = (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        tree.update(repr(stamp).encode())
    return {
        "head": _text(head.stdout).strip() or "(unborn)",
        "branch": _text(branch.stdout).strip() or "(detached)",
        "index": index,
        "worktree": tree.hexdigest(),
    }
