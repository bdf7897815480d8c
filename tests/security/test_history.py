"""Whatever history a task hands back is that task's problem: it ends that task (`rejected`,
with the reason), never the run; an honest sibling still merges and verify still runs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.integration.conftest import git
from tests.security.attacks import attack
from tests.security.conftest import Launch

FILES = {"README.md": "hello\n", "src/app.txt": "app\n"}
LONG = "n" * 300  # git takes a 300-byte path component; the host's file system does not
DEEP = "/".join(["d" * 250] * 20)  # 5000 bytes: past PATH_MAX

CASES = {
    "orphan": (
        "a commit with no history in common with its start (orphan), with a tree that passes "
        "the scope check",
        r"""
        mkdir -p hist && echo orphan > hist/o.txt && git add hist
        c=$(git commit-tree -m orphan "$(git write-tree)")
        git reset -q --hard "$c"
        """,
    ),
    "treeref": (
        "its branch pointing at a tree instead of a commit",
        r"""
        mkdir -p hist && echo tree > hist/t.txt && git add hist && git commit -q -m tree
        git rev-parse 'HEAD^{tree}' > ".git/refs/heads/task/$RUNNER_TASK"
        """,
    ),
    "oversized": (
        "a bundle over the policy's max_bundle (64k)",
        r"""
        mkdir -p hist && head -c 3000000 /dev/urandom > hist/big.bin
        git add hist && git commit -q -m big
        """,
    ),
    "longname": (
        "a committed path component of 300 bytes (git accepts it, the host's file system "
        "refuses it in verify's checkout)",
        rf"""
        blob=$(echo long | git hash-object -w --stdin)
        git update-index --add --cacheinfo "100644,$blob,hist/{LONG}"
        git update-index --skip-worktree "hist/{LONG}"
        git commit -q -m long
        """,
    ),
    "deeppath": (
        "a committed path of 5000 bytes (20 directories of 250 bytes: past PATH_MAX)",
        rf"""
        blob=$(echo deep | git hash-object -w --stdin)
        git update-index --add --cacheinfo "100644,$blob,hist/{DEEP}/f"
        git update-index --skip-worktree "hist/{DEEP}/f"
        git commit -q -m deep
        """,
    ),
}

PLAN = """
verify: test -f src/app.txt
tasks:
  - id: honest
    scope: ["src/**"]
    run: echo "honest change" >> src/app.txt
  - id: odd
    scope: ["hist/**"]
    policy: small.yaml
    timeout: 120
    run: |
"""


def _case(name: str) -> None:
    what, script = CASES[name]

    def case(hostile: Launch) -> None:
        check_rejected(hostile, script)

    case.__name__ = case.__qualname__ = f"test_{name}_is_rejected_and_the_run_goes_on"
    outcome = (
        "that task `rejected` with the reason, the run goes on: sibling merged, verify green, "
        "result on disk `partial`"
    )
    globals()[case.__name__] = attack(what, outcome)(case)


def check_rejected(hostile: Launch, script: str) -> None:
    plan = PLAN + textwrap.indent(textwrap.dedent(script).strip(), " " * 6) + "\n"
    run = hostile(plan, FILES, extra={"small.yaml": "max_bundle: 64k\n"})
    assert run.stdout.startswith("{"), f"exit {run.code}: {run.stderr[-3000:]}"
    odd = run.task("odd")
    assert odd["status"] == "rejected", odd
    assert odd["reason"], odd
    assert run.task("honest")["status"] == "merged", run.task("honest")
    assert run.code == 1 and run.result["status"] == "partial", run.result["error"]
    on_disk = json.loads((Path(run.result["state_dir"]) / "result.json").read_text())
    assert on_disk["status"] == "partial"
    head = run.integration()
    assert run.show(head, "src/app.txt") == "app\nhonest change"
    assert not any(f.startswith("hist/") for f in run.files(head))
    assert [w["verify"] for w in run.result["waves"]] == ["green"]
    assert run.result["isolation"]["unchanged"] is True
    assert git(run.repo, "status", "--porcelain") == ""


for _name in CASES:
    _case(_name)


TAGREF = r"""
mkdir -p hist && echo tagged > hist/t.txt && git add hist && git commit -q -m tagged
git tag -a -m tag t1
git rev-parse t1 > ".git/refs/heads/task/$RUNNER_TASK"
"""


@attack(
    "its branch pointing at an annotated tag of its own commit instead of at the commit",
    "the collector peels it to the commit: only that commit comes home (no tag), and merges",
)
def test_tagref_is_peeled_to_its_own_commit(hostile: Launch) -> None:
    plan = PLAN + textwrap.indent(textwrap.dedent(TAGREF).strip(), " " * 6) + "\n"
    run = hostile(plan, FILES, extra={"small.yaml": "max_bundle: 64k\n"})
    assert run.stdout.startswith("{"), f"exit {run.code}: {run.stderr[-3000:]}"
    odd = run.task("odd")
    assert odd["status"] == "merged", odd
    assert git(run.repo, "cat-file", "-t", odd["ref"]) == "commit"
    assert git(run.repo, "tag", "--list") == ""
    assert run.show(run.integration(), "hist/t.txt") == "tagged"
