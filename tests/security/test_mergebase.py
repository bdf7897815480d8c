"""The scope check and the merge judge the same change: the diff from the task's start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import git
from tests.security.attacks import attack
from tests.security.conftest import Attempt, Launch

FILES = {"README.md": "hello\n", "src/app.txt": "app\n"}

# The sibling's commit, once the host has fetched it into the object store every task reads.
FIND_SIBLING = r"""
      sibling=""
      for _ in $(seq 1 300); do
        sibling=$(git cat-file --batch-all-objects --batch-check='%(objectname) %(objecttype)' |
          awk '$2 == "commit" {print $1}' |
          while read -r c; do
            [ "$(git log -1 --format=%s "$c")" = "honest work" ] && echo "$c"
          done | head -n 1)
        [ -n "$sibling" ] && break
        sleep 0.2
      done
      [ -n "$sibling" ] || { echo "not seen" > "$RUNNER_OUT/sibling"; exit 1; }
      echo "$sibling" > "$RUNNER_OUT/sibling"
"""

PLAN = r"""
on_overlap: allow
tasks:
  - id: honest
    scope: ["a/**"]
    run: |
      mkdir a && echo honest > a/a.txt
      git add a && git commit -q -m "honest work"
  - id: bypass
    # Waits for the honest sibling's commit to appear in /objects (the host fetched it), then
    # commits its own file with that commit as an extra parent: git's merge base becomes the
    # sibling's commit, and a merge by that base would delete the sibling's merged file.
    scope: ["b/**"]
    timeout: 120
    run: |
@FIND@
      mkdir b && echo attacker > b/b.txt && git add b
      t=$(git commit-tree -p "$RUNNER_START" -p "$sibling" -m bypass "$(git write-tree)")
      git reset -q --hard "$t"
  - id: thief
    # Moves its branch onto the sibling's finished commit: work it did not make.
    scope: ["a/**"]
    timeout: 120
    run: |
@FIND@
      git reset -q --hard "$sibling"
""".replace("@FIND@\n", FIND_SIBLING.lstrip("\n"))


@pytest.fixture(scope="module")
def run(hostile: Launch) -> Attempt:
    return hostile(PLAN, FILES)


@attack(
    "a commit whose extra parent is a sibling's finished commit (seen in /objects), so that "
    "git's own merge base would drop the sibling's merged file",
    "what lands on the integration branch is exactly the start..commit diff that passed the "
    "scope check (or the task is rejected): the sibling's work stays",
)
def test_extra_parent_cannot_steer_the_merge_base(run: Attempt) -> None:
    assert run.stdout.startswith("{"), run.stderr[-3000:]
    bypass = run.task("bypass")
    # The control: the attack was made (the sibling's commit was found and used).
    seen = (Path(bypass["out_path"]) / "sibling").read_text().strip()
    assert seen == run.task("honest")["commit"], bypass
    assert run.task("honest")["status"] == "merged"
    head = run.integration()
    landed = set(git(run.repo, "diff", "--name-only", run.result["base_commit"], head).split())
    expected = {"a/a.txt", "b/b.txt"} if bypass["status"] == "merged" else {"a/a.txt"}
    assert landed == expected, bypass
    assert bypass["status"] in ("merged", "rejected"), bypass
    if bypass["status"] == "merged":
        assert bypass["files_changed"] == ["b/b.txt"]  # what the scope check judged
    assert run.show(head, "a/a.txt") == "honest"


@attack(
    "resetting its branch onto a sibling task's finished commit (found in /objects)",
    "rejected with the reason: another task's work is never taken as this task's",
)
def test_reset_onto_a_siblings_commit_is_rejected(run: Attempt) -> None:
    thief = run.task("thief")
    seen = (Path(thief["out_path"]) / "sibling").read_text().strip()
    assert seen == run.task("honest")["commit"], thief  # the control: the attack was made
    assert thief["status"] == "rejected", thief
    assert thief["reason"], thief
    assert run.task("honest")["status"] == "merged"
