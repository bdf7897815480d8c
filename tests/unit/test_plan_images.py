"""`runner plan` names, at their lines, the images the daemon lacks (the daemon's answer given)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.core.plan import load_plan
from runner.errors import PlanError
from runner.images import PROXY_TAG, SANDBOX_TAG, check_plan_images

PLAN = """\
base: HEAD
image: mine/base:1
tasks:
  - id: a
    image: mine/special:2
    run: "true"
  - id: b
    run: "true"
"""


def test_every_absent_image_is_named_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN)
    doc = load_plan(tmp_path / "plan.yaml")
    have = {SANDBOX_TAG}

    with pytest.raises(PlanError) as caught:
        check_plan_images(doc, [SANDBOX_TAG, PROXY_TAG], have.__contains__)

    assert caught.value.problems == [
        f"{doc.source}:2: image: image mine/base:1 is not on this Docker daemon",
        f"{doc.source}:5: tasks[0](a).image: image mine/special:2 is not on this Docker daemon",
        f"{doc.source}: the runner's image {PROXY_TAG} is not on this Docker daemon",
    ]
    assert "runner images build --from" in str(caught.value)


def test_all_present_is_quiet(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(PLAN)
    have = {"mine/base:1", "mine/special:2", SANDBOX_TAG}

    check_plan_images(load_plan(tmp_path / "plan.yaml"), [SANDBOX_TAG], have.__contains__)
