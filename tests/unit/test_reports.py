"""Reports of a run (JUnit, HTML, GitHub Actions) made from result documents, no daemon."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from runner.core.plan import parse_plan
from runner.core.results import (
    Conflict,
    PhaseTime,
    RunResult,
    RunStatus,
    TaskResult,
    TaskStatus,
    VerifyRun,
    WaveResult,
)
from runner.reports import github
from runner.reports.facts import complete, verify_said
from runner.reports.html import render_html, timeline
from runner.reports.junit import junit_xml, outcome

PLAN = """\
tasks:
  - id: ok
    scope: ["a/**"]
    run: "true"
  - id: bad
    scope: ["b/**"]
    env: [TOKEN]
    run: "false"
  - id: wide
    scope: ["c/**"]
    run: "true"
  - id: later
    depends_on: [bad]
    run: "true"
"""


def _result(tmp_path: Path) -> RunResult:
    log = tmp_path / "bad.log"
    log.write_text("line one\n<script>alert(1)</script>\n\x1b[31mred\x1b[0m & done\n")
    return RunResult(
        run_id="20261125-1", repo=str(tmp_path), plan=str(tmp_path / "plan.yaml"), base="HEAD",
        base_commit="a" * 40, integration_ref="refs/heads/runner/20261125-1/integration",
        started_at="2026-11-25T21:00:00+00:00", duration_s=12.0, status=RunStatus.PARTIAL,
        state_dir=str(tmp_path / "state"),
        tasks=[
            TaskResult(id="ok", wave=1, status=TaskStatus.MERGED, duration_s=2.0,
                       started_at="2026-11-25T21:00:01.000+00:00", files_changed=["a/x.py"]),
            TaskResult(id="bad", wave=1, status=TaskStatus.FAILED, exit_code=1, duration_s=3.5,
                       started_at="2026-11-25T21:00:01.500+00:00", reason="exited 1 <b>bold</b>",
                       log_path=str(log)),
            TaskResult(id="wide", wave=1, status=TaskStatus.SCOPE_VIOLATION, duration_s=1.0,
                       started_at="2026-11-25T21:00:02+00:00", violations=["z/outside.txt"],
                       reason="changed 1 path outside its scope",
                       conflicts=[Conflict(with_task="ok", files=["a/x.py"])]),
            TaskResult(id="later", wave=2, reason="dependency bad is failed"),
        ],
        waves=[
            WaveResult(index=1, tasks=["ok", "bad", "wide"], start_commit="a" * 40,
                       verify="green", verify_log="/v/1.log",
                       verify_runs=[VerifyRun(result="green", log="/v/1.log",
                                              started_at="2026-11-25T21:00:06+00:00",
                                              duration_s=2.0)]),
            WaveResult(index=2, tasks=["later"], start_commit="b" * 40),
        ],
    )  # fmt: skip


def test_outcome_of_every_status() -> None:
    passed = {TaskStatus.MERGED, TaskStatus.NO_CHANGES}
    special = {TaskStatus.SKIPPED: "skipped", TaskStatus.SANDBOX_LOST: "error"}
    for status in TaskStatus:
        want = "passed" if status in passed else special.get(status, "failure")
        assert outcome(status) == want, status


def test_junit_parses_and_counts_match_the_result(tmp_path: Path) -> None:
    result = _result(tmp_path)
    root = ET.fromstring(junit_xml(result))
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == [
        "task ok", "task bad", "task wide", "verify wave 1", "task later",
    ]  # fmt: skip
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "5", "2", "0", "1",
    )  # fmt: skip
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert suites["wave 1"].get("tests") == "4" and suites["wave 1"].get("failures") == "2"
    assert suites["wave 2"].get("skipped") == "1"
    bad = cases[1]
    failure = bad.find("failure")
    assert failure is not None and failure.get("type") == "failed"
    assert failure.get("message") == "exited 1 <b>bold</b>"  # escaped by XML, read back as is
    out = bad.findtext("system-out") or ""
    assert "<script>alert(1)</script>" in out and "\x1b" not in out  # no invalid XML chars
    wide = cases[2].find("failure")
    assert wide is not None and "violation: z/outside.txt" in (wide.text or "")
    assert "conflict with ok: a/x.py" in (wide.text or "")


def test_junit_has_an_error_case_for_a_broken_run_and_a_case_per_verify(tmp_path: Path) -> None:
    result = _result(tmp_path)
    result.status, result.error = RunStatus.ERROR, "docker went away"
    result.waves[0].verify_runs = [
        VerifyRun(result="red", log="/v/1.log"),
        VerifyRun(task="ok", result="green"),
        VerifyRun(task="bad", result="red", log="/v/bad.log"),
    ]
    root = ET.fromstring(junit_xml(result))
    names = [c.get("name") for c in root.findall(".//testcase")]
    assert "verify wave 1 with bad alone" in names and names[-1] == "run"
    assert root.get("errors") == "1" and root.get("tests") == "8"
    assert root.get("failures") == str(2 + 2)


def test_html_escapes_everything_and_loads_nothing(tmp_path: Path) -> None:
    page = render_html(_result(tmp_path))
    assert "<script" not in page  # the log's script is text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "exited 1 &lt;b&gt;bold&lt;/b&gt;" in page
    assert "src=" not in page and "http://" not in page and "https://" not in page
    assert "https://" not in page and "@import" not in page
    assert page.count('class="bar task-bar"') == 3  # `later` never ran: a row, no bar
    assert page.count('class="bar verify-bar"') == 1
    assert "z/outside.txt" in page and "not run" in page


def test_facts_fill_start_times_and_verify_runs_from_the_journal(tmp_path: Path) -> None:
    result = _result(tmp_path)
    for t in result.tasks:
        t.started_at = None
    result.waves[0].verify_runs = []
    state = Path(result.state_dir)
    state.mkdir()
    events: list[dict[str, object]] = [
        {"event": "task_started", "task": "ok", "time": "2026-11-25T21:00:01.250+00:00"},
        {"event": "verify_started", "wave": 1, "task": None, "time": "2026-11-25T21:00:05+00:00"},
        {"event": "verify_ended", "wave": 1, "task": None, "result": "red", "log": "/v/1.log",
         "time": "2026-11-25T21:00:07.500+00:00"},
        {"event": "verify_started", "wave": 1, "task": "ok", "time": "2026-11-25T21:00:08+00:00"},
        {"event": "verify_ended", "wave": 1, "task": "ok", "result": "green", "log": "/v/ok.log",
         "time": "2026-11-25T21:00:09+00:00"},
    ]  # fmt: skip
    lines = [json.dumps({"seq": i} | e) for i, e in enumerate(events, start=1)]
    (state / "journal.jsonl").write_text("\n".join(lines) + "\n")
    complete(result)
    assert result.task("ok").started_at == "2026-11-25T21:00:01.250+00:00"
    assert result.task("bad").started_at is None
    runs = result.waves[0].verify_runs
    assert [(v.task, v.result, v.log, v.duration_s) for v in runs] == [
        (None, "red", "/v/1.log", 2.5), ("ok", "green", "/v/ok.log", 1.0),
    ]  # fmt: skip


def test_a_wave_isolated_after_a_red_verify_never_reads_verify_green(tmp_path: Path) -> None:
    result = _result(tmp_path)
    wave = result.waves[0]
    wave.verify, wave.isolated = "green", ["ok", "bad"]
    wave.verify_runs = [
        VerifyRun(result="red", log="/v/wave-1.log"),
        VerifyRun(task="ok", result="green", log="/v/ok.log"),
        VerifyRun(task="bad", result="red", log="/v/bad.log"),
    ]
    said = verify_said(wave, result)
    assert not said.startswith("verify green")
    assert said == (
        "verify red on the wave's merge (log: /v/wave-1.log); then each task alone: "
        "ok green, bad red (log: /v/bad.log); merged: ok"
    )
    assert verify_said(result.waves[1], result) == "verify not reached"


def test_github_masks_annotations_and_summary(tmp_path: Path) -> None:
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(PLAN)
    doc = parse_plan(PLAN, str(plan_path))
    masks = github.mask_commands(doc, {"TOKEN": "s3cr%t\nsecond line\n"})
    assert masks == ["::add-mask::s3cr%25t", "::add-mask::second line"]
    env = {"GITHUB_WORKSPACE": str(tmp_path)}
    errors = github.error_commands(_result(tmp_path), doc, env)
    assert errors == [
        "::error file=plan.yaml,line=5,title=task bad%3A failed::exited 1 <b>bold</b>",
        "::error file=plan.yaml,line=9,title=task wide%3A scope_violation::"
        "changed 1 path outside its scope",
        "::error file=plan.yaml,line=10,title=task wide%3A outside its scope::"
        "wide changed z/outside.txt, outside its scope",
    ]
    md = github.summary_markdown(_result(tmp_path))
    assert "| 1 | `bad` | failed | 1 | 3.5s | 0 | exited 1 &lt;b&gt;bold&lt;/b&gt; |" in md
    assert "- wave 1: verify green" in md and "- wave 2: verify not reached" in md
    summary = tmp_path / "summary.md"
    summary.write_text("before\n")
    github.append_summary(_result(tmp_path), {"GITHUB_STEP_SUMMARY": str(summary)})
    assert summary.read_text().startswith("before\n### ❌ runner run `20261125-1`: partial")
    assert github.append_summary(_result(tmp_path), {}) is None


def test_timeline_bars_are_placed_by_start_and_sized_by_duration(tmp_path: Path) -> None:
    tl = timeline(_result(tmp_path))
    bars = {b.label: b for b in tl.bars}
    assert set(bars) == {"ok", "bad", "wide", "verify 1"}
    scale = bars["ok"].width / 2.0  # ok ran 2 s
    assert abs(bars["bad"].width - 3.5 * scale) < 0.01
    assert abs((bars["bad"].x - bars["ok"].x) - 0.5 * scale) < 0.01  # began 0.5 s after ok
    assert abs((bars["verify 1"].x - bars["ok"].x) - 5.0 * scale) < 0.01
    assert bars["ok"].colour != bars["bad"].colour != bars["wide"].colour
    assert [label for label, _y, _note in tl.rows] == ["later"]  # never ran: no bar


def test_timeline_draws_a_task_s_phases_under_its_bar(tmp_path: Path) -> None:
    result = _result(tmp_path)
    ok = result.task("ok")
    ok.phases = {
        "clone": PhaseTime(start="2026-11-25T21:00:00.800+00:00", duration_s=0.2),
        "task": PhaseTime(start="2026-11-25T21:00:01.000+00:00", duration_s=2.0),
        "collect": PhaseTime(start="2026-11-25T21:00:03.000+00:00", duration_s=0.5),
    }
    tl = timeline(result)
    bar = next(b for b in tl.bars if b.label == "ok")
    scale = bar.width / 2.0
    segs = {p.name: p for p in bar.phases}
    assert list(segs) == ["clone", "task", "collect"]
    assert abs(segs["task"].x - bar.x) < 0.01  # the script's phase starts where the bar does
    assert abs(segs["clone"].x - (bar.x - 0.2 * scale)) < 0.01
    assert abs(segs["collect"].width - 0.5 * scale) < 0.01
    assert "collect 0.50s" in bar.title
    page = render_html(result)
    assert page.count('class="phase phase-') == 3
    assert next(b for b in tl.bars if b.label == "bad").phases == []
