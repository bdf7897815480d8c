"""JUnit XML of a run: a testcase per task and per verify, a testsuite per wave.

A task's status decides its outcome: merged or no changes pass; skipped is `skipped`; a lost
sandbox is an `error` (the machine's fault, not the task's); every other status is a
`failure` whose type is the status. A verify is a testcase too: green passes, red fails,
a plan without verify, or a wave not verified, has none. A run that broke (status error)
adds one testcase `run` with an `error`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from runner.core.results import RunResult, RunStatus, TaskResult, TaskStatus, VerifyRun, WaveResult
from runner.reports.facts import log_tail

ERRORS = frozenset({TaskStatus.SANDBOX_LOST})
# XML 1.0 cannot hold these at all (escaped or not): a log's control bytes are dropped.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def outcome(status: TaskStatus) -> str:
    """passed, skipped, error or failure."""
    if status.ok:
        return "passed"
    if status is TaskStatus.SKIPPED:
        return "skipped"
    return "error" if status in ERRORS else "failure"


@dataclass
class _Counts:
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    time: float = 0.0

    def add(self, kind: str, seconds: float | None) -> None:
        self.tests += 1
        self.failures += kind == "failure"
        self.errors += kind == "error"
        self.skipped += kind == "skipped"
        self.time += seconds or 0.0

    def put(self, el: ET.Element) -> None:
        for key in ("tests", "failures", "errors", "skipped"):
            el.set(key, str(getattr(self, key)))
        el.set("time", f"{self.time:.3f}")


def junit_xml(result: RunResult) -> str:
    root = ET.Element("testsuites", name=f"runner run {result.run_id}")
    total = _Counts()
    waves = {w.index: w for w in result.waves}
    for index in sorted({t.wave for t in result.tasks} | set(waves)):
        suite = ET.SubElement(root, "testsuite", name=f"wave {index}")
        if result.started_at:
            suite.set("timestamp", result.started_at)
        counts = _Counts()
        for t in (t for t in result.tasks if t.wave == index):
            counts.add(*_task_case(suite, t, index))
        for kind, seconds in _verify_cases(suite, waves.get(index), index):
            counts.add(kind, seconds)
        counts.put(suite)
        for key in ("tests", "failures", "errors", "skipped"):
            setattr(total, key, getattr(total, key) + getattr(counts, key))
    if result.status is RunStatus.ERROR:
        suite = ET.SubElement(root, "testsuite", name="run")
        case = ET.SubElement(suite, "testcase", classname="runner", name="run")
        ET.SubElement(case, "error", type="error", message=clean(result.error or "")).text = clean(
            result.error or "the run broke"
        )
        one = _Counts()
        one.add("error", None)
        one.put(suite)
        total.tests, total.errors = total.tests + 1, total.errors + 1
    total.time = result.duration_s or 0.0
    total.put(root)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _task_case(suite: ET.Element, t: TaskResult, wave: int) -> tuple[str, float | None]:
    case = ET.SubElement(suite, "testcase", classname=f"wave{wave}", name=f"task {t.id}")
    if t.duration_s is not None:
        case.set("time", f"{t.duration_s:.3f}")
    kind = outcome(t.status)
    details = [f"status: {t.status.value}"]
    details += [f"reason: {t.reason}"] if t.reason else []
    details += [f"exit code: {t.exit_code}"] if t.exit_code is not None else []
    details += [f"violation: {p}" for p in t.violations]
    for c in t.conflicts:
        details.append(
            f"conflict with {c.with_task or 'the integration head'}: {', '.join(c.files)}"
        )
    details += [f"work kept at: {t.ref}"] if t.ref else []
    details += [f"log: {t.log_path}"] if t.log_path else []
    if kind == "skipped":
        ET.SubElement(case, "skipped", message=clean(t.reason or "not run"))
    elif kind != "passed":
        el = ET.SubElement(case, kind, type=t.status.value, message=clean(t.reason or ""))
        el.text = clean("\n".join(details))
    tail = log_tail(t.log_path)
    if tail:
        ET.SubElement(case, "system-out").text = clean(tail)
    return kind, t.duration_s


def _verify_cases(
    suite: ET.Element, w: WaveResult | None, index: int
) -> list[tuple[str, float | None]]:
    """One testcase per verify that ran (a plan without verify, or a wave not verified: none)."""
    if w is None:
        return []
    runs = w.verify_runs or (
        [VerifyRun(result=w.verify, log=w.verify_log)] if w.verify in ("green", "red") else []
    )
    done = []
    for run in runs:
        name = f"verify wave {index}" + (f" with {run.task} alone" if run.task else "")
        case = ET.SubElement(suite, "testcase", classname=f"wave{index}", name=name)
        if run.duration_s is not None:
            case.set("time", f"{run.duration_s:.3f}")
        kind = "passed" if run.result == "green" else "failure"
        if kind == "failure":
            el = ET.SubElement(case, "failure", type="verify_red", message=f"verify red: {name}")
            el.text = clean(f"verify red; log: {run.log}" if run.log else "verify red")
        tail = log_tail(run.log)
        if tail:
            ET.SubElement(case, "system-out").text = clean(tail)
        done.append((kind, run.duration_s))
    return done


def write_junit(result: RunResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(result), encoding="utf-8")
    return path
