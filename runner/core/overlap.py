"""Which of a wave's tasks can meet in a merge: the pre-check before any merge-tree (issue 8).

Two commits merged on a fixed base conflict only where both changed something. Comparing
every pair with `git merge-tree` cost one git process per pair (19,900 for 200 tasks, 176 s);
tasks whose changed paths cannot meet need none. Paths meet when they are equal or one lies
under the other (`a` against `a/b`: a file on one side, a directory on the other).

Merge-tree detects renames, also of whole directories: a task that removes directory `d`
(moving its files elsewhere) makes the other side's new files in `d/` follow them. So a task
counts as changing every directory it removed, and anything under it meets that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

_TREE = "040000"
_NONE = "000000"


def _ancestors(path: str) -> Iterable[str]:
    """`a/b/c` -> `a/b`, `a` (the directories above a path, nearest first)."""
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        yield path


def meeting_pairs(paths: Mapping[str, Iterable[str]]) -> set[tuple[str, str]]:
    """Pairs (a, b) of tasks whose changed paths meet, a before b in the mapping's order.

    Indexed by path, not compared pair by pair: the cost grows with the paths and the pairs
    found, so 200 tasks on their own files cost about 200 lookups per path depth.
    """
    order = {task: i for i, task in enumerate(paths)}
    exact: dict[str, set[str]] = {}  # path -> tasks that changed exactly it
    below: dict[str, set[str]] = {}  # directory -> tasks that changed something under it
    sets = {task: set(ps) for task, ps in paths.items()}
    for task, ps in sets.items():
        for p in ps:
            exact.setdefault(p, set()).add(task)
            for d in _ancestors(p):
                below.setdefault(d, set()).add(task)
    found: set[tuple[str, str]] = set()
    for task, ps in sets.items():
        for p in ps:
            others = exact[p] | below.get(p, set())
            for d in _ancestors(p):
                others |= exact.get(d, set())
            for other in others:
                if other != task:
                    a, b = sorted((task, other), key=order.__getitem__)
                    found.add((a, b))
    return found


def paths_from_raw(raw: str) -> dict[str, set[str]]:
    """Changed paths per commit from `git diff-tree --stdin --always -r -t --no-renames -z`.

    The input is one `COMMIT BASE` line per commit; git answers with the commit id, then one
    `:MODE MODE OID OID STATUS` record and its path per change (NUL-separated). Files and
    gitlinks count as changed; of directories (-t) only removed ones do (see the module's
    docstring): a directory that merely holds a changed file would make every task in
    `src/` meet every other.
    """
    out: dict[str, set[str]] = {}
    current: set[str] | None = None
    tokens = raw.split("\0")
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith(":"):
            if token:  # a commit id: the changes of that commit follow
                current = out.setdefault(token.strip(), set())
            i += 1
            continue
        if current is None or i + 1 >= len(tokens):
            raise ValueError(f"unexpected diff-tree output at {token[:60]!r}")
        old_mode, new_mode = token[1:].split(" ", 2)[:2]
        path = tokens[i + 1]
        if not (new_mode == _TREE and old_mode in (_TREE, _NONE)):  # not a directory kept
            current.add(path)
        i += 2
    return out
