"""Reports and output of real runs: JUnit, HTML in a real browser, GitHub Actions, pipes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest

from tests.integration.conftest import make_repo, runner_cli

LONG = "outside-" + "x" * 120 + ".txt"
SECRET = "s3cret-token-value-for-reports"
PLAN = f"""\
verify: "test ! -e breaker.txt"
on_conflict: skip
tasks:
  - id: ok
    scope: ["ok.txt"]
    run: echo ok > ok.txt
  - id: breaker
    scope: ["breaker.txt"]
    run: echo no > breaker.txt
  - id: bad
    scope: ["bad/**"]
    env: [REPORTS_TEST_TOKEN]
    run: |
      echo '<script>alert(1)</script>'
      echo "token: $REPORTS_TEST_TOKEN"
      exit 3
  - id: wide
    scope: ["wide/**"]
    run: echo x > {LONG}
  - id: later
    depends_on: [bad]
    run: echo later > later.txt
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return env | {
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_WORKSPACE": str(tmp_path),
        "REPORTS_TEST_TOKEN": SECRET,
        "COLUMNS": "80",
    }


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.bars: list[str] = []
        self.scripts = 0
        self.in_log = False
        self.logs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        cls = dict(attrs).get("class") or ""
        if tag == "rect" and "task-bar" in cls.split():
            self.bars.append(dict(attrs).get("data-task") or "")
        self.scripts += tag == "script"
        self.in_log = tag == "pre" and "log" in cls.split()

    def handle_endtag(self, tag: str) -> None:
        self.in_log = self.in_log and tag != "pre"

    def handle_data(self, data: str) -> None:
        if self.in_log:
            self.logs.append(data)


def _dump_dom(page: Path, tmp_path: Path) -> str:
    chromium = shutil.which("chromium")
    assert chromium, "headless Chromium is needed (Debian's `chromium`; .ci/setup installs it)"
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
        env=os.environ | {"HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.usefixtures("images")
def test_a_run_reports_to_junit_html_github_and_a_pipe(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"README.md": "hi\n"})
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    junit, page = tmp_path / "out" / "junit.xml", tmp_path / "out" / "report.html"
    proc = runner_cli(
        "run", "plan.yaml", "--repo", str(repo), "--junit", str(junit), "--html", str(page),
        cwd=tmp_path, env=_env(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    run_dir = max((repo / ".git" / "runner" / "runs").iterdir())
    result = json.loads((run_dir / "result.json").read_text())
    status = {t["id"]: t["status"] for t in result["tasks"]}
    assert status == {"ok": "merged", "breaker": "verify_failed", "bad": "failed",
                      "wide": "scope_violation", "later": "skipped"}  # fmt: skip

    # Piped: no escape codes, no line wrapped, the long reason whole on one line.
    for stream in (proc.stdout, proc.stderr):
        assert "\x1b[" not in stream
    wide = next(t for t in result["tasks"] if t["id"] == "wide")
    assert LONG in wide["reason"] and len(wide["reason"]) > 150
    assert any(wide["reason"] in line for line in proc.stdout.splitlines())
    assert f"wave 1 task wide: scope_violation ({wide['duration_s']:.1f}s): {wide['reason']}" in (
        proc.stderr.splitlines()
    )
    # A red verify is named with its log, never `verify green`, also after isolation.
    wave = result["waves"][0]
    assert wave["isolated"] == ["ok", "breaker"]
    runs = [(v["task"], v["result"]) for v in wave["verify_runs"]]
    assert runs == [(None, "red"), ("ok", "green"), ("breaker", "red")]
    assert all(Path(v["log"]).is_file() for v in wave["verify_runs"])
    said = next(line for line in proc.stdout.splitlines() if line.startswith("wave 1:"))
    assert said.startswith(
        f"wave 1: verify red on the wave's merge (log: {wave['verify_runs'][0]['log']})"
    )
    assert "breaker red (log: " in said and said.endswith("merged: ok")
    assert all(t["started_at"] for t in result["tasks"] if t["id"] != "later")
    progress = proc.stderr.splitlines()
    red_logs = [v["log"] for v in wave["verify_runs"] if v["result"] == "red"]
    assert f"wave 1: verify red (log: {red_logs[0]})" in progress
    assert "wave 1: verify of ok alone green" in progress
    assert f"wave 1: verify of breaker alone red (log: {red_logs[1]})" in progress

    # JUnit: parses, and its counts are the result's.
    root = ET.parse(junit).getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {"task ok", "task breaker", "task bad", "task wide", "task later",
                          "verify wave 1", "verify wave 1 with ok alone",
                          "verify wave 1 with breaker alone"}  # fmt: skip
    failing = [t for t in result["tasks"] if t["status"] not in ("merged", "skipped")]
    red = [v for w in result["waves"] for v in w["verify_runs"] if v["result"] == "red"]
    assert root.get("tests") == str(len(result["tasks"]) + 3)
    assert root.get("failures") == str(len(failing) + len(red))
    assert root.get("skipped") == "1" and root.get("errors") == "0"
    assert "<script>alert(1)</script>" in (cases["task bad"].findtext("system-out") or "")

    # HTML in a real browser: a bar per task that ran, the log's script is text.
    dom = _Dom()
    dom.feed(_dump_dom(page, tmp_path))
    assert sorted(dom.bars) == sorted(t for t in status if t != "later")
    assert dom.scripts == 0
    assert "<script>alert(1)</script>" in "".join(dom.logs)
    text = page.read_text()
    assert "src=" not in text and "https://" not in text and LONG in text

    # GitHub Actions: masks first, annotations on the plan's lines, a job summary.
    lines = proc.stderr.splitlines()
    assert lines[0] == f"::add-mask::{SECRET}"
    assert "::error file=plan.yaml,line=10,title=task bad%3A failed::" in proc.stderr
    assert "::error file=plan.yaml,line=18,title=task wide%3A outside its scope::" in proc.stderr
    assert "::error file=plan.yaml,line=7,title=task breaker%3A verify_failed::" in proc.stderr
    summary = (tmp_path / "summary.md").read_text()
    assert f"runner run `{result['run_id']}`: partial" in summary
    assert "| 1 | `bad` | failed | 3 |" in summary and "&lt;script" not in summary
    assert (
        SECRET not in summary and SECRET not in page.read_text() and SECRET not in junit.read_text()
    )

    # After the fact, from result.json: the same JUnit.
    again = tmp_path / "again.xml"
    made = runner_cli("report", "latest", "--repo", str(repo), "--junit", str(again),
                      "--html", str(tmp_path / "again.html"))  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert again.read_text() == junit.read_text()
    assert (tmp_path / "again.html").read_text() == text


@pytest.mark.usefixtures("images")
def test_json_stdout_is_one_document_while_progress_goes_to_stderr_as_it_happens(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path, {"README.md": "hi\n"})
    (tmp_path / "plan.yaml").write_text(textwrap.dedent("""\
        tasks:
          - id: slow
            run: sleep 4; echo done > slow.txt
    """))  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", "plan.yaml", "--repo", str(repo), "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"},
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if not line or "task slow: running" in line:
            break
    still_running = proc.poll() is None
    out, rest = proc.communicate(timeout=300)
    assert "wave 1 task slow: running\n" in seen, "".join(seen) + rest
    assert still_running  # the line came while the task ran, not at the end
    assert "wave 1 task slow: merged" in rest
    assert proc.returncode == 0, rest
    doc = json.loads(out)  # exactly one document: anything else fails to parse
    schema = json.loads(runner_cli("schema", "--result").stdout)
    jsonschema.validate(doc, schema)
    assert doc["tasks"][0]["status"] == "merged" and doc["tasks"][0]["started_at"]


def _tmux(sock: str, *args: str) -> str:
    proc = subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, check=True)
    return proc.stdout


@pytest.mark.usefixtures("images")
def test_the_live_table_under_a_terminal_shows_rows_queued_running_merged(tmp_path: Path) -> None:
    assert shutil.which("tmux"), "tmux is needed (.ci/setup installs it)"
    sock, done = f"runner-test-{os.getpid()}", tmp_path / "exit-code"
    command = (
        f"cd {tmp_path} && {sys.executable} -m runner demo --keep {tmp_path / 'demo'}; "
        f"echo $? > {done}; sleep 60"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TMUX")}
    subprocess.run(
        ["tmux", "-L", sock, "-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "50",
         command], check=True, env=env,
    )  # fmt: skip
    states: dict[str, list[str]] = {}
    try:
        deadline = time.monotonic() + 300
        while not done.exists() and time.monotonic() < deadline:
            screen = _tmux(sock, "capture-pane", "-p")
            if "state" in screen:  # a frame of the live table (the summary says `status`)
                for line in screen.splitlines():
                    cells = [c.strip() for c in line.split("│")]
                    if len(cells) >= 5 and cells[2] in ("db", "docs", "api", "tests"):
                        seen = states.setdefault(cells[2], [])
                        if not seen or seen[-1] != cells[3]:
                            seen.append(cells[3])
            time.sleep(0.1)
        assert done.exists() and done.read_text().strip() == "0", _tmux(sock, "capture-pane", "-p")
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], check=False, capture_output=True)
    api = states.get("api", [])
    assert [s for s in api if s in ("queued", "running", "merged")] == [
        "queued", "running", "merged",
    ], states  # fmt: skip
    assert all("waiting" not in seen for seen in states.values())


def test_report_refuses_what_it_cannot_make_in_one_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"README.md": "hi\n"})
    nothing = runner_cli("report", "--repo", str(repo))
    assert nothing.returncode == 2 and "no report asked for" in nothing.stderr
    run_dir = repo / ".git" / "runner" / "runs" / "20261125-000000-abcdef"
    run_dir.mkdir(parents=True)
    died = runner_cli("report", "2026", "--repo", str(repo), "--junit", str(tmp_path / "j.xml"))
    assert died.returncode == 2 and "has no result document" in died.stderr, died.stderr
    (run_dir / "result.json").write_text('{"schema_version": 1}')
    bad = runner_cli("report", "--repo", str(repo), "--html", str(tmp_path / "r.html"))
    assert bad.returncode == 2 and "not a result document of this runner" in bad.stderr
    (tmp_path / "plan.yaml").write_text("tasks:\n  - id: a\n    run: 'true'\n")
    into_dir = runner_cli("run", "plan.yaml", "--repo", str(repo), "--junit", str(tmp_path),
                          cwd=tmp_path)  # fmt: skip
    assert into_dir.returncode == 2 and "is a directory" in into_dir.stderr
    for proc in (nothing, died, bad, into_dir):
        assert "Traceback" not in proc.stderr and not (tmp_path / "j.xml").exists()


@pytest.mark.usefixtures("images")
def test_demo_piped_has_no_escape_codes_and_no_wrapped_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "demo", "--keep", str(tmp_path / ("demo-" + "d" * 40))],
        capture_output=True, text=True, timeout=600, check=False, env=env | {"COLUMNS": "80"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout and "\x1b[" not in proc.stderr
    out = proc.stdout.splitlines()
    inspect = next(line for line in out if line.startswith("  inspect: git -C "))
    assert len(inspect) > 80 and inspect.endswith("/integration")  # whole, on one line
    assert next(line for line in out if line.startswith("result: ")).endswith("result.json")
    assert "wave 3 task tests: merged" in proc.stderr
