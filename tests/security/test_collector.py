"""What a task hands back is data: its git config, hooks, attributes, refs and links never act
on the host or in the collector, and only the task's own commits are taken."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import git
from tests.security.attacks import attack
from tests.security.conftest import Attempt, Launch, hash_blob

FILES = {"README.md": "hello\n", "src/app.txt": "app\n", "notes/keep.txt": "keep\n"}
FILES |= {
    f"steer/{v}.txt": "original\n" for v in ("plain", "extraref", "outside", "prereq", "truncated")
}
PLANTED = "PLANTED by a filter: must never reach the host"
UNREACHABLE = "UNREACHABLE object smuggled in a planted bundle"

# Everything a task's repository can define that git might run: hooks (also through
# core.hooksPath and an include), fsmonitor, aliases, filters (config, info/attributes and a
# committed .gitattributes), pager, editor, gpg. Each calls evil.sh, which leaves a marker on
# the host side (@OUTSIDE@, reachable only if it runs on the host) and plants a bundle.
ARM = r"""
    cat > .git/evil.sh <<'SH'
    echo "$1 ran" > @OUTSIDE@/ran-$1 2>/dev/null
    cp /work/.git/evil.bundle /bundle/task.bundle 2>/dev/null
    echo "$RUNNER_START" > /bundle/head 2>/dev/null
    exit 0
    SH
    mkdir -p .git/myhooks
    for h in pre-commit prepare-commit-msg commit-msg post-commit post-index-change \
             reference-transaction pre-auto-gc post-checkout post-rewrite; do
        printf '#!/bin/sh\nsh /work/.git/evil.sh hook-%s\n' "$h" > .git/hooks/$h
        cp .git/hooks/$h .git/myhooks/$h
        chmod +x .git/hooks/$h .git/myhooks/$h
    done
    printf '#!/bin/sh\nsh /work/.git/evil.sh fsmonitor\n' > .git/fsmon && chmod +x .git/fsmon
    printf '[core]\n\thooksPath = /work/.git/myhooks\n' > .git/extra.config
    git config include.path /work/.git/extra.config
    git config core.fsmonitor /work/.git/fsmon
    git config core.pager 'sh /work/.git/evil.sh pager; cat'
    git config core.editor 'sh /work/.git/evil.sh editor'
    git config gpg.program 'sh /work/.git/evil.sh gpg'
    git config commit.gpgSign true
    git config diff.external 'sh /work/.git/evil.sh diff'
    for a in add commit bundle rev-parse update-ref diff rev-list; do
        git config alias.$a '!sh /work/.git/evil.sh alias'
    done
"""


def setup(repo: Path) -> dict[str, str]:
    """A branch `other` of the user's: its commit sits in /objects for every task to see."""
    git(repo, "checkout", "-q", "-b", "other")
    (repo / "other.txt").write_text("from the other branch\n")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-q", "-m", "other branch")
    other = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    return {"OTHER": other}


# Hand-made bundles a steered collector would hand over: $c is a commit of planted.txt on
# top of the start, $extra an object no ref reaches. Each is written to .git/evil.bundle.
PACK = (
    '{ git rev-list --objects "$RUNNER_START..$c" | cut -d" " -f1; echo "$extra"; } '
    "| git pack-objects -q --stdout"
)
HEAD = r"printf '# v2 git bundle\n-%s\n"
BUNDLES = {
    "plain": f'{{ {HEAD}%s refs/runner-result\\n\\n\' "$RUNNER_START" "$c"; {PACK}; }}',
    "extraref": (
        f"{{ {HEAD}%s refs/runner-result\\n%s refs/heads/main\\n%s refs/tags/planted\\n\\n' "
        f'"$RUNNER_START" "$c" "$c" "$c"; {PACK}; }}'
    ),
    "outside": f'{{ {HEAD}%s refs/heads/main\\n\\n\' "$RUNNER_START" "$c"; {PACK}; }}',
    "prereq": f'{{ {HEAD}%s refs/runner-result\\n\\n\' "@OTHER@" "$c"; {PACK}; }}',
    "truncated": (
        f'{{ {HEAD}%s refs/runner-result\\n\\n\' "$RUNNER_START" "$c"; {PACK}; }} > .git/full; '
        "head -c $(($(wc -c < .git/full) / 2)) .git/full"
    ),
}


def steer_task(variant: str) -> str:
    """A task that leaves steer/<variant>.txt changed, uncommitted, with a clean filter that
    hides the change: a collector running it would find nothing to commit, and the planted
    bundle would be what comes home."""
    arm = "\n".join("      " + line.strip() for line in ARM.strip().splitlines())
    return f"""  - id: steer-{variant}
    scope: ["steer/{variant}.txt"]
    run: |
      git checkout -q -b evil
      echo "@PLANTED@ {variant}" > planted.txt
      git add planted.txt
      git commit -q -m planted
      c=$(git rev-parse HEAD)
      extra=$(echo "@UNREACHABLE@ {variant}" | git hash-object -w --stdin)
      {BUNDLES[variant]} > .git/evil.bundle
      git checkout -q "task/$RUNNER_TASK"
      git branch -q -D evil
      cp steer/{variant}.txt .git/orig
{arm}
      printf '#!/bin/sh\\nsh /work/.git/evil.sh filter\\ncat /work/.git/orig\\n' \\
        > .git/clean && chmod +x .git/clean
      git config filter.evil.clean /work/.git/clean
      git config filter.evil.smudge /work/.git/clean
      echo 'steer/{variant}.txt filter=evil' > .git/info/attributes
      echo "changed by steer, raw" > steer/{variant}.txt
"""


PLAN = (
    (
        r"""
verify: "true"
tasks:
  - id: honest
    scope: ["src/**"]
    run: echo "honest change" >> src/app.txt
"""
        + "".join(steer_task(v) for v in BUNDLES)
        + r"""
  - id: filtered
    # A committed .gitattributes names a filter the task's config defines; its leftovers
    # (uncommitted) must be collected as they are, unfiltered.
    scope: ["filtered/**", ".gitattributes"]
    run: |
      mkdir filtered
      echo "own commit" > filtered/own.txt
      git add filtered/own.txt
      git commit -q -m "own work"
"""
        + "\n".join("      " + line.strip() for line in ARM.strip().splitlines())
        + r"""
      echo 'filtered/* filter=evil' > .gitattributes
      git add .gitattributes
      git -c core.hooksPath=/dev/null -c commit.gpgSign=false commit -q -m attributes
      printf '#!/bin/sh\nsh /work/.git/evil.sh filter\nsed s/raw/FILTERED/\n' \
        > .git/clean && chmod +x .git/clean
      git config filter.evil.clean /work/.git/clean
      git config filter.evil.smudge /work/.git/clean
      echo "raw leftover" > filtered/leftover.txt
  - id: reset
    # Moves its branch onto a commit it did not make: the user's branch `other`.
    scope: ["other.txt"]
    run: git reset -q --hard @OTHER@
  - id: refs
    scope: ["refs-task.txt"]
    run: |
      echo mine > refs-task.txt
      git add refs-task.txt && git commit -q -m "refs task"
      git tag planted-light
      git tag -a -m annotated planted-annotated
      git branch -f main HEAD
      git update-ref refs/heads/other HEAD
      git update-ref refs/runner/hijack HEAD
      git update-ref refs/runner-result HEAD
      git update-ref refs/remotes/origin/main HEAD
      git notes add -m note HEAD
      git pack-refs --all
  - id: links
    scope: ["links/**"]
    run: |
      mkdir links
      ln -s /etc/passwd links/passwd
      ln -s @OUTSIDE@ links/outside
      ln -s ../../../../../../../../.. links/up
      git add links && git commit -q -m links
"""
    )
    .replace("@PLANTED@", PLANTED)
    .replace("@UNREACHABLE@", UNREACHABLE)
)


@pytest.fixture(scope="module")
def run(hostile: Launch) -> Attempt:
    return hostile(PLAN, FILES, setup=setup)


def test_run_goes_on_and_honest_work_merges(run: Attempt) -> None:
    assert run.stdout.startswith("{"), run.stderr[-3000:]
    assert run.result["status"] in ("success", "partial"), run.result["error"]
    assert run.task("honest")["status"] == "merged"
    assert run.show(run.integration(), "src/app.txt") == "app\nhonest change"
    assert run.result["isolation"]["unchanged"] is True
    assert git(run.repo, "status", "--porcelain") == ""


@attack(
    "hooks, fsmonitor, aliases, pager/editor/gpg, an include and a clean filter in the task's "
    ".git/config, each planting a hand-made bundle in /bundle (plain, with extra refs, with a "
    "ref outside the namespace, a wrong prerequisite, truncated)",
    "nothing of them runs in the collector or on the host; the change is collected raw; no "
    "planted commit, ref or unreachable object reaches the host",
)
@pytest.mark.parametrize("variant", list(BUNDLES))
def test_task_config_runs_nowhere_and_cannot_plant_a_bundle(run: Attempt, variant: str) -> None:
    steer = run.task(f"steer-{variant}")
    assert list(run.outside.iterdir()) == []  # nothing ran on the host
    assert not run.has_object(hash_blob(f"{PLANTED} {variant}\n"))
    assert not run.has_object(hash_blob(f"{UNREACHABLE} {variant}\n"))
    assert git(run.repo, "log", "-1", "--format=%s", "main") == "initial"
    assert git(run.repo, "tag") == ""
    assert steer["ref"] is not None, steer
    assert run.show(steer["ref"], f"steer/{variant}.txt") == "changed by steer, raw"
    assert "planted.txt" not in run.files(steer["ref"])
    assert steer["files_changed"] == [f"steer/{variant}.txt"]
    assert steer["status"] == "merged", steer
    assert "planted.txt" not in run.files(run.integration())


@attack(
    "a committed .gitattributes naming a filter the task's config defines, with leftovers "
    "for the collector to commit",
    "the leftovers are collected unfiltered, .gitattributes is merged as data, nothing runs "
    "on the host (also not in verify's checkout)",
)
def test_committed_attributes_filter_is_data(run: Attempt) -> None:
    filtered = run.task("filtered")
    assert filtered["status"] == "merged", filtered
    head = run.integration()
    assert run.show(head, "filtered/leftover.txt") == "raw leftover"
    assert run.show(head, "filtered/own.txt") == "own commit"
    assert run.show(head, ".gitattributes") == "filtered/* filter=evil"
    assert list(run.outside.iterdir()) == []
    proc = git_config_filters(run.repo)
    assert proc == "", f"the host repo gained filter settings: {proc}"


def git_config_filters(repo: Path) -> str:
    out = subprocess.run(["git", "-C", str(repo), "config", "--get-regexp", r"^(filter|alias)\."],
                         capture_output=True, text=True, check=False)  # fmt: skip
    return out.stdout.strip()


@attack(
    "resetting its branch onto a commit it did not make (the user's branch `other`, "
    "readable in /objects)",
    "rejected with the reason; the other branch's work is not merged",
)
def test_reset_onto_another_branch_is_rejected(run: Attempt) -> None:
    reset = run.task("reset")
    assert reset["status"] == "rejected", reset
    assert reset["reason"]
    assert "other.txt" not in run.files(run.integration())


@attack(
    "creating tags, branches (main, other), notes, remote refs and refs under refs/runner/",
    "ignored: only the task's branch comes home, under its own ref; the user's refs unchanged",
)
def test_extra_refs_and_tags_are_ignored(run: Attempt) -> None:
    assert run.task("refs")["status"] == "merged"
    run_refs = {r for r in run.refs() if r.startswith(f"refs/runner/{run.result['run_id']}/")}
    tasks_with_refs = {t["id"] for t in run.result["tasks"] if t["ref"]}
    assert run_refs == {run.ref_of(t) for t in tasks_with_refs}
    others = run.refs() - run_refs - {run.result["integration_ref"]}
    assert others == {"refs/heads/main", "refs/heads/other"}
    assert git(run.repo, "log", "-1", "--format=%s", "main") == "initial"
    assert git(run.repo, "log", "-1", "--format=%s", "other") == "other branch"
    assert git(run.repo, "tag") == ""


@attack(
    "committing symlinks to /etc/passwd, to a host directory and up out of the repo",
    "kept as symlink blobs (mode 120000, target as text) and merged; never followed on the "
    "host: the target directory stays empty",
)
def test_symlinks_out_of_the_repo_stay_data(run: Attempt) -> None:
    assert run.task("links")["status"] == "merged"
    head = run.integration()
    tree = git(run.repo, "ls-tree", "-r", head, "links/")
    modes = {line.split("\t")[1]: line.split()[0] for line in tree.splitlines()}
    assert modes == {"links/outside": "120000", "links/passwd": "120000", "links/up": "120000"}
    assert run.show(head, "links/passwd") == "/etc/passwd"
    assert run.show(head, "links/outside") == str(run.outside)
    assert list(run.outside.iterdir()) == []
