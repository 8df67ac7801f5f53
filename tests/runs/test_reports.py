"""What run-job and integration-test leave for people to read: reports without secrets, local
reports outside the checkout, a "still RUNNING" line while a long run says nothing, and
annotations that say each thing once."""

from __future__ import annotations

import io
import os
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat

from grammar import parse_github_env_file
from stackci.runs.wait import Schedule, Waiter, duration_text, use_schedule

BASE = "/Workspace/Shared/reports"


def upload(w, name: str, text: str) -> str:
    w.workspace.mkdirs(BASE)
    w.workspace.upload(f"{BASE}/{name}", io.BytesIO(text.encode()), format=ImportFormat.AUTO, overwrite=True)
    return f"{BASE}/{name}"


def one_task_job(w, name: str, path: str):
    return w.jobs.create(name=name, tasks=[jobs.Task(task_key="work",
                                                     spark_python_task=jobs.SparkPythonTask(python_file=path))])


def test_a_secret_in_a_task_error_is_redacted_from_the_junit_file_and_summary(run_cli, w, ws, env):
    path = upload(w, "leak.py", f"raise RuntimeError('the workspace refused token {ws.token} & more')\n")
    job = one_task_job(w, "leaky", path)
    result = run_cli(["run-job", "--job-id", str(job.job_id)], env=env)
    assert result.code == 1 and result.outputs["result"] == "failed"
    raw = Path(result.outputs["junit-xml"]).read_text()
    assert ws.token not in raw
    failure = ET.fromstring(raw).find("testsuite/testcase/failure")
    assert "the workspace refused token *** & more" in failure.get("message")
    assert "refused token *** & more" in failure.text and "Traceback" in failure.text
    assert ws.token not in result.summary and "refused token *** &amp; more" in result.summary
    assert all(ws.token not in e.data for e in result.errors())


def test_a_secret_in_an_integration_task_error_is_redacted_from_its_junit_file(run_cli, ws, env, project):
    # the slow job's "wait" task fails naming the file it waited for: here, the workspace token
    result = run_cli(["integration-test", "-t", "staging", "-p", str(project), "--isolation-id", "pr1", "--job",
                      "slow_job", "--job-param", f"wait_for={ws.token}", "--job-param", "seconds=0.1"], env=env)
    assert result.code == 1 and result.outputs["result"] == "failed"
    raw = Path(result.outputs["junit-xml"]).read_text()
    assert ws.token not in raw and "*** never appeared" in raw
    assert ws.token not in result.summary and "*** never appeared" in result.summary


def test_local_reports_go_to_a_temporary_folder_that_is_named(run_cli, w, env, tmp_path):
    job = one_task_job(w, "quick", upload(w, "ok.py", "print('ok')\n"))
    outputs = tmp_path / "outputs"
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    result = run_cli(["run-job", "--job-id", str(job.job_id)], platform="local", cwd=cwd,
                     env={**env, "STACKCI_OUTPUT_FILE": str(outputs)})
    assert result.code == 0, result.stderr
    junit = Path(parse_github_env_file(outputs.read_text())["junit-xml"])
    said = re.search(r"reports go to (\S+) \(a temporary folder; --junit-xml chooses another place\)", result.stderr)
    assert said and junit == Path(said.group(1)) / "run-job.xml" and junit.is_file()
    assert list(cwd.iterdir()) == [], "nothing is written into the current directory (a deploy would upload it)"
    assert not junit.is_relative_to(cwd)
    junit.unlink()
    junit.parent.rmdir()


class FastClock:
    """Sixty seconds pass for every real second: a four-second task looks like a four-minute one."""

    def __init__(self, factor: float = 60.0) -> None:
        self.factor, self.origin = factor, time.monotonic()

    def __call__(self) -> float:
        return (time.monotonic() - self.origin) * self.factor


def heartbeats(lines: list[str]) -> list[tuple[float, str]]:
    found = []
    for line in lines:
        m = re.match(r"^\[\s*(\d+\.\d)s\] (.*still RUNNING.*)$", line)
        if m:
            found.append((float(m.group(1)), m.group(2)))
    return found


def test_a_long_quiet_run_says_it_is_still_running_about_once_a_minute(ws, w, env, monkeypatch, capsys):
    """Through the command: run-job of a task that is silent for 'four minutes'."""
    from stackci.__main__ import main
    from stackci.ci import LocalPlatform
    from stackci.context import App

    job = one_task_job(w, "quiet", upload(w, "quiet.py", "import time\ntime.sleep(4)\n"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app = App(platform=LocalPlatform(dict(os.environ)), environ=dict(os.environ), clock=FastClock())
    with use_schedule(Schedule(ramp=(0.1,), max_interval=0.1)):
        code = main(["run-job", "--job-id", str(job.job_id)], app=app)
    err = capsys.readouterr().err
    assert code == 0, err
    beats = heartbeats(err.splitlines())
    assert len(beats) >= 2, err
    assert all(re.fullmatch(r"quiet: still RUNNING \(task work, \d+m \d\ds\)", text) for _, text in beats), beats
    times = [t for t, _ in beats]
    assert times[0] >= 60 and all(b - a >= 60 for a, b in zip(times, times[1:])), times   # bounded: ≤ 1 a minute


def test_after_half_an_hour_the_still_running_lines_thin_out(w):
    job = one_task_job(w, "long", upload(w, "long.py", "import time\ntime.sleep(5)\n"))
    run_id = w.jobs.run_now(job.job_id).run_id
    lines: list[str] = []
    # 1 real second = 200 s: the run looks over sixteen minutes long; after two, one line per five minutes
    waiter = Waiter(w, schedule=Schedule(ramp=(0.1,), max_interval=0.1), clock=FastClock(200.0),
                    on_change=lines.append, heartbeat=60.0, quiet_after=120.0, quiet_interval=300.0)
    assert waiter.wait(run_id, label="long").outcome == "success"
    times = [t for t, _ in heartbeats(lines)]
    late = [t for t in times if t >= 120.0]
    assert times[0] >= 60.0 and len(late) >= 2, times
    assert all(b - a >= 300.0 for a, b in zip(late, late[1:])), times


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (45.9, "45s"), (60, "1m 00s"), (300, "5m 00s"),
                                           (3599, "59m 59s"), (3600, "1h 00m"), (3900, "1h 05m")])
def test_duration_text(seconds, text):
    assert duration_text(seconds) == text


def test_a_timed_out_task_is_annotated_once_with_what_happened(run_cli, w, env):
    job = one_task_job(w, "sleep", upload(w, "sleep.py", "import time\ntime.sleep(60)\n"))
    result = run_cli(["run-job", "--job-id", str(job.job_id), "--timeout", "2s"], env=env)
    assert result.code == 1 and result.outputs["result"] == "timedout"
    task = [e for e in result.errors() if e.properties.get("title") == "sleep › work timedout"]
    assert len(task) == 1 and task[0].data.startswith("cancelled after --timeout 2s"), task
    assert "timedout: " not in task[0].data
    done = re.search(r"run-job sleep: timedout after (\d+) status call(s?) ", result.stderr)
    assert done and (done.group(2) == "s") == (int(done.group(1)) != 1)
    case = ET.parse(result.outputs["junit-xml"]).getroot().find("testsuite/testcase/failure")
    assert case.get("message").startswith("cancelled after --timeout 2s")
