"""Turn a finished job run into what people read: a step-summary table of jobs and
tasks, the error and trace of each failed task, notebook outputs, one JUnit test case
per task, and one error annotation per failed task."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import junit, log, markdown as md
from .wait import CANCELED, FAILED, INFRA, SKIPPED, SUCCESS, TIMEDOUT, classify, duration_text, run_state

logger = log.get("runs")

ICON = {SUCCESS: "✅", FAILED: "❌", INFRA: "💥", TIMEDOUT: "⏱️", CANCELED: "🚫", SKIPPED: "⏭️"}
TEXT_LIMIT = 8000


@dataclass
class TaskReport:
    key: str
    run_id: int | None
    life_cycle: str | None
    result: str | None
    outcome: str
    duration: float
    url: str | None
    message: str = ""
    error: str = ""
    error_trace: str = ""
    notebook_result: str | None = None
    logs: str = ""


@dataclass
class JobReport:
    name: str
    run_id: int | None                    # None: the job was not run (see ``message``)
    url: str | None
    outcome: str
    duration: float
    message: str
    tasks: list[TaskReport] = field(default_factory=list)
    note: str = ""                        # shown whatever the outcome (e.g. "after 1 re-run")

    @property
    def failed_tasks(self) -> list[TaskReport]:
        return [t for t in self.tasks if t.outcome in (FAILED, INFRA, TIMEDOUT)]


def _duration(item) -> float:
    for attr in ("run_duration", "execution_duration"):
        value = getattr(item, attr, None)
        if value:
            return value / 1000.0
    start, end = getattr(item, "start_time", None), getattr(item, "end_time", None)
    if start and end and end >= start:
        return (end - start) / 1000.0
    return 0.0


def _clip(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= TEXT_LIMIT else text[-TEXT_LIMIT:]


def collect(client, run, name: str | None = None, *, outcome: str | None = None,
            timeout: float | None = None) -> JobReport:
    """Read the task outputs of a finished run (get-output works on task run ids only).

    ``outcome`` overrides the classification of the run (the waiter knows when it cancelled a
    run because ``--timeout`` passed: the workspace only says CANCELED); then the tasks that
    were cancelled while running are timed out too, with a message naming ``timeout``.
    """
    tasks = []
    for task in getattr(run, "tasks", None) or []:
        life, result = run_state(task)
        outcome_of_task = classify(task)
        message = (task.state.state_message or "") if task.state else ""
        timed_out = outcome == TIMEDOUT and result == "CANCELED"
        if timed_out:
            outcome_of_task = TIMEDOUT
            message = (f"cancelled after --timeout {duration_text(timeout)}" if timeout else "cancelled: timed out") \
                + (f" ({message})" if message else "")
        report = TaskReport(task.task_key, task.run_id, life, result, outcome_of_task, _duration(task),
                            getattr(task, "run_page_url", None), message=message)
        if task.run_id is not None and life not in (None, "SKIPPED") \
                and result not in ("EXCLUDED", None):
            try:
                out = client.jobs.get_run_output(task.run_id)
            except Exception as exc:  # a report must not die on one missing output
                logger.debug("no output for task run %s: %s", task.run_id, exc)
            else:
                report.error = _clip(out.error)
                report.error_trace = _clip(out.error_trace)
                report.logs = _clip(out.logs)
                if out.notebook_output is not None:
                    report.notebook_result = out.notebook_output.result
        if timed_out:   # the task's own error only says it was cancelled: say why
            report.error = message
        tasks.append(report)
    return JobReport(name or getattr(run, "run_name", None) or f"run {run.run_id}", run.run_id,
                     getattr(run, "run_page_url", None), outcome or classify(run), _duration(run),
                     (run.state.state_message or "") if run.state else "", tasks)


def not_run(name: str, reason: str, outcome: str = SKIPPED, run_id: int | None = None) -> JobReport:
    """A job that was never started (an earlier job failed, the timeout passed) or whose run
    was cancelled before it could be reported (an interrupt)."""
    return JobReport(name, run_id, None, outcome, 0.0, reason, [])


def summary(reports: list[JobReport], title: str) -> str:
    ok = all(r.outcome == SUCCESS for r in reports)
    lines = [f"### {'✅' if ok else '❌'} {md.cell(title)}", ""]
    rows = []
    for job in reports:
        link = f"[{job.run_id}]({job.url})" if job.url else ("" if job.run_id is None else str(job.run_id))
        rows.append([f"**{md.cell(job.name)}**", f"{ICON[job.outcome]} {job.outcome}", md.seconds(job.duration), link])
        for task in job.tasks:
            state = "/".join(filter(None, (task.life_cycle, task.result)))
            task_link = f"[{task.run_id}]({task.url})" if task.url else str(task.run_id or "")
            rows.append([f"&nbsp;&nbsp;{md.code(task.key)}", f"{ICON[task.outcome]} {md.cell(state)}",
                         md.seconds(task.duration), task_link])
    lines.append(md.table(["Job / task", "Result", "Duration", "Run"], rows))
    for job in reports:
        if job.note:
            lines += ["", f"**{md.cell(job.name)}**: {md.cell(job.note)}"]
        if job.outcome != SUCCESS and job.message:
            lines += ["", f"**{md.cell(job.name)}**: {md.cell(job.message)}"]
        for task in job.failed_tasks:
            body = task.error_trace or task.error or task.message or "(no error text)"
            lines += ["", md.details(f"{ICON[task.outcome]} {md.code(job.name + ' › ' + task.key)}: "
                                     f"{md.cell(task.error or task.message)}", md.fence(body))]
        outputs = [t for t in job.tasks if t.notebook_result]
        if outputs:
            lines += ["", f"Notebook outputs of **{md.cell(job.name)}**:", ""]
            lines += [f"- {md.code(t.key)}: {md.code(t.notebook_result)}" for t in outputs]
    return "\n".join(lines) + "\n"


def junit_cases(reports: list[JobReport]) -> list[junit.Case]:
    status = {SUCCESS: junit.PASSED, SKIPPED: junit.SKIPPED, CANCELED: junit.SKIPPED, FAILED: junit.FAILED,
              TIMEDOUT: junit.FAILED, INFRA: junit.ERROR}
    cases = []
    for job in reports:
        if not job.tasks:   # not run, or interrupted before its tasks were seen: one case for the job
            cases.append(junit.Case(name="(job)", classname=job.name, time=job.duration,
                                    status=status[job.outcome], message=job.message or job.outcome))
        for task in job.tasks:
            text = "\n\n".join(p for p in (task.error_trace or task.error, task.logs and "logs:\n" + task.logs) if p)
            cases.append(junit.Case(name=task.key, classname=job.name, time=task.duration,
                                    status=status[task.outcome],
                                    message=task.error or task.message or task.outcome, text=text))
    return cases


def write_junit(path: Path, reports: list[JobReport], suite: str, extra: list[junit.Case] = (), *,
                redact) -> Path:
    """The JUnit file, with every secret the platform knows (``redact``: ``platform.redact``) as ``***``."""
    return junit.write(path, suite, [*extra, *junit_cases(reports)], redact=redact)


def annotate(platform, reports: list[JobReport], limit: int = 50) -> None:
    count = 0
    for job in reports:
        for task in job.failed_tasks:
            if count >= limit:
                return
            first = (task.error or task.message or task.outcome).strip().splitlines()
            # the title names the outcome ("train › Train failed"): the message is what went wrong
            platform.error((first[0] if first else task.outcome) + (f" ({task.url})" if task.url else ""),
                           title=f"{job.name} › {task.key} {task.outcome}")
            count += 1
