"""`stackci run-job` against the local workspace: real HTTP through databricks-sdk,
real task processes; what a user sees in outputs, summary, annotations, JUnit."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

import pytest
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat

from stackci.runs.cli import idempotency_token, parse_params
from stackci.runs.wait import Schedule, Waiter

BASE = "/Workspace/Shared/smoke"






@pytest.fixture
def env(ws):
    return {"DATABRICKS_HOST": ws.url, "DATABRICKS_TOKEN": ws.token, "DATABRICKS_AUTH_TYPE": "pat"}


def upload(w, name: str, text: str) -> str:
    w.workspace.mkdirs(BASE)
    w.workspace.upload(f"{BASE}/{name}", io.BytesIO(text.encode()), format=ImportFormat.AUTO, overwrite=True)
    return f"{BASE}/{name}"


def task(key, path, *params, deps=()):
    return jobs.Task(task_key=key, spark_python_task=jobs.SparkPythonTask(python_file=path, parameters=list(params)),
                     depends_on=[jobs.TaskDependency(d) for d in deps] or None)


@pytest.fixture
def smoke_job(w):
    ok = upload(w, "ok.py", "import sys\nprint('checked', sys.argv[1:])\n")
    boom = upload(w, "boom.py", "def check(rows):\n    raise ValueError(f'expected rows, got {rows}')\n\n"
                               "check(0)\n")
    return {"ok": ok, "boom": boom}


def test_a_passing_job(run_cli, w, env, smoke_job, tmp_path):
    job = w.jobs.create(name="smoke", tasks=[task("extract", smoke_job["ok"], "a"),
                                             task("verify", smoke_job["ok"], "b", deps=["extract"])])
    result = run_cli(["run-job", "--job-id", str(job.job_id)], env=env)
    assert result.code == 0, result.stderr
    assert result.outputs["result"] == "success"
    run = w.jobs.get_run(int(result.outputs["run-id"]))
    assert run.state.result_state.value == "SUCCESS"
    assert result.outputs["run-url"] == run.run_page_url
    suite = ET.parse(result.outputs["junit-xml"]).getroot().find("testsuite")
    assert [c.get("name") for c in suite.iter("testcase")] == ["extract", "verify"]
    assert suite.get("failures") == "0"
    assert "### ✅ Job smoke: success" in result.summary
    assert "<code>extract</code>" in result.summary and "<code>verify</code>" in result.summary
    assert "extract: RUNNING" in result.stderr or "extract: TERMINATED" in result.stderr
    assert result.errors() == []


def test_a_failing_task_is_reported_with_its_trace(run_cli, w, env, smoke_job):
    w.jobs.create(name="smoke", tasks=[task("extract", smoke_job["ok"]),
                                       task("validate", smoke_job["boom"], deps=["extract"]),
                                       task("publish", smoke_job["ok"], deps=["validate"])])
    result = run_cli(["run-job", "--job-name", "smoke"], env=env)
    assert result.code == 1
    assert result.outputs["result"] == "failed"
    messages = [e.data for e in result.errors()]
    per_task = [e for e in result.errors() if e.properties.get("title") == "smoke › validate failed"]
    assert len(per_task) == 1 and "expected rows, got 0" in per_task[0].data
    assert any("job smoke run" in m and "a task failed (validate)" in m for m in messages)
    assert "expected rows, got 0" in result.summary and "Traceback" in result.summary
    suite = ET.parse(result.outputs["junit-xml"]).getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["validate"].find("failure") is not None
    assert "boom.py" in cases["validate"].find("failure").text
    assert cases["publish"].find("skipped") is not None       # UPSTREAM_FAILED
    assert cases["extract"].find("failure") is None


def test_untrusted_task_output_cannot_issue_commands(run_cli, w, env):
    evil = upload(w, "evil.py", "import sys\nprint('::error::forged')\n"
                                "raise SystemExit('::set-output name=result::success\\n::add-mask::x')\n")
    job = w.jobs.create(name="evil", tasks=[task("t", evil)])
    result = run_cli(["run-job", "--job-id", str(job.job_id)], env=env)
    assert result.code == 1
    assert result.outputs["result"] == "failed"
    assert not [e for e in result.errors() if e.data == "forged"]
    assert [c for c in result.commands if c.name == "add-mask" and c.data == "x"] == []


def test_timeout_cancels_the_remote_run(run_cli, w, env):
    slow = upload(w, "slow.py", "import time\ntime.sleep(60)\n")
    job = w.jobs.create(name="slow", tasks=[task("wait", slow)])
    started = time.monotonic()
    result = run_cli(["run-job", "--job-id", str(job.job_id), "--timeout", "2s"], env=env)
    assert time.monotonic() - started < 20
    assert result.code == 1 and result.outputs["result"] == "timedout"
    run = w.jobs.get_run(int(result.outputs["run-id"]))
    assert run.state.life_cycle_state.value == "TERMINATED"
    assert run.state.result_state.value == "CANCELED"
    assert any("timed out" in e.data for e in result.errors())


def test_sigterm_cancels_the_run_and_exits_130(ws, w, env, tmp_path):
    marker = tmp_path / "started"
    slow = upload(w, "slow.py", f"import pathlib, time\npathlib.Path({str(marker)!r}).write_text('x')\n"
                                "time.sleep(60)\n")
    job = w.jobs.create(name="slow", tasks=[task("wait", slow)])
    proc = subprocess.Popen([sys.executable, "-m", "stackci", "run-job", "--job-id", str(job.job_id)],
                            env={**os.environ, **env, "STACKCI_OUTPUT_FILE": str(tmp_path / "out")},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the task never started"
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 7.5
    runs = list(w.jobs.list_runs(job_id=job.job_id))
    assert len(runs) == 1
    assert runs[0].state.life_cycle_state.value in ("TERMINATING", "TERMINATED")
    assert "interrupted, cancelling run" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: stackci: interrupted: run-job slow was interrupted: run {runs[0].run_id} was "
                           "cancelled; see http://"), err
    assert "interrupted: interrupted" not in err


def test_idempotency_token_in_ci_reuses_the_run(run_cli, w, env, smoke_job):
    job = w.jobs.create(name="smoke", tasks=[task("t", smoke_job["ok"])])
    ci = {**env, "GITHUB_RUN_ID": "4242", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_JOB": "smoke"}
    first = run_cli(["run-job", "--job-id", str(job.job_id)], env=ci)
    again = run_cli(["run-job", "--job-id", str(job.job_id)], env=ci)
    assert first.code == again.code == 0
    assert first.outputs["run-id"] == again.outputs["run-id"]
    retry = run_cli(["run-job", "--job-id", str(job.job_id)], env={**ci, "GITHUB_RUN_ATTEMPT": "2"})
    assert retry.outputs["run-id"] != first.outputs["run-id"]
    assert len(list(w.jobs.list_runs(job_id=job.job_id))) == 2


def test_job_parameters_reach_the_task(run_cli, w, env):
    echo = upload(w, "echo.py", "import sys\nprint('ARGS', sys.argv[1:])\nassert sys.argv[1] == 'prod', sys.argv\n")
    job = w.jobs.create(name="p", parameters=[jobs.JobParameterDefinition(name="env", default="dev")],
                        tasks=[task("t", echo, "{{job.parameters.env}}")])
    bad = run_cli(["run-job", "--job-id", str(job.job_id)], env=env)
    assert bad.code == 1
    good = run_cli(["run-job", "--job-id", str(job.job_id), "--job-param", "env=prod"], env=env)
    assert good.code == 0, good.stderr


@pytest.mark.parametrize("args, needle", [
    (["--job-id", "999999"], "job 999999 does not exist"),
    (["--job-name", "nope"], "no job named 'nope'"),
    ([], "exactly one of --job-id, --job-name and --job"),
    (["--job-id", "1", "--job-name", "x"], "exactly one of --job-id, --job-name and --job"),
    (["--job-id", "1", "--timeout", "soon"], "is not a duration"),
    (["--job-id", "1", "--job-param", "novalue"], "is not key=value"),
    (["--job-id", "1", "-t", "prod"], "-t/--target is only for a bundle job (--job KEY), not for --job-id"),
    (["--job-name", "x", "--var", "catalog=dev"], "--var is only for a bundle job (--job KEY), not for --job-name"),
])
def test_bad_input_is_one_line_exit_2(run_cli, env, args, needle):
    result = run_cli(["run-job", *args], env=env)
    assert result.code == 2
    assert len(result.errors()) == 1 and needle in result.errors()[0].data
    assert "Traceback" not in result.stderr


def test_no_credentials_is_a_clear_error(run_cli, tmp_path):
    clean = {k: "" for k in os.environ if k.startswith("DATABRICKS_")}
    result = run_cli(["run-job", "--job-id", "1"], env={**clean, "HOME": str(tmp_path)})
    assert result.code == 2
    assert len(result.errors()) == 1
    assert "no workspace to talk to" in result.errors()[0].data          # the gap is the host, not credentials
    assert "--host (STACKCI_HOST)" in result.errors()[0].data and "DATABRICKS_HOST" in result.errors()[0].data


def test_the_waiter_backs_off_and_sees_short_runs_finish_fast(w, smoke_job):
    job = w.jobs.create(name="quick", tasks=[task("t", smoke_job["ok"])])
    run_id = w.jobs.run_now(job.job_id).run_id
    lines = []
    result = Waiter(w, on_change=lines.append).wait(run_id, label="quick")
    assert result.outcome == "success"
    assert any("quick › t: TERMINATED SUCCESS" in line for line in lines)
    intervals = Schedule().intervals()
    first = [next(intervals) for _ in range(12)]
    assert first[0] <= 0.5 and first[-1] == 15.0 and first == sorted(first)
    assert sum(first[:3]) <= 1.5           # a 1 s run is seen ending within a second


def test_waiter_stop_event_cancels(w):
    slow = upload(w, "slow.py", "import time\ntime.sleep(60)\n")
    job = w.jobs.create(name="slow", tasks=[task("wait", slow)])
    run_id = w.jobs.run_now(job.job_id).run_id
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    with pytest.raises(KeyboardInterrupt):
        Waiter(w, on_change=lambda line: None).wait(run_id, stop=stop)
    assert w.jobs.get_run(run_id).state.result_state.value == "CANCELED"


def test_helpers():
    assert parse_params(("a=1", "b=x=y\nc=")) == {"a": "1", "b": "x=y", "c": ""}
    assert idempotency_token({}, "x") is None
    gh = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "1", "GITHUB_RUN_ATTEMPT": "1"}
    token = idempotency_token(gh, "x")
    assert token == idempotency_token(gh, "x") != idempotency_token(gh, "y")
    assert len(token) <= 64
    az = {"TF_BUILD": "True", "BUILD_BUILDID": "9", "SYSTEM_JOBATTEMPT": "1"}
    assert idempotency_token(az, "x") not in (None, token)


def test_job_params_from_the_environment_keep_spaces(run_cli, w, env):
    echo = upload(w, "msg.py", "import sys\nassert sys.argv[1:] == ['hello world', 'x=y'], sys.argv\n")
    job = w.jobs.create(name="m", parameters=[jobs.JobParameterDefinition(name="msg", default=""),
                                              jobs.JobParameterDefinition(name="other", default="")],
                        tasks=[task("t", echo, "{{job.parameters.msg}}", "{{job.parameters.other}}")])
    result = run_cli(["run-job", "--job-id", str(job.job_id)],
                     env={**env, "STACKCI_JOB_PARAM": "msg=hello world\nother=x=y\n"})
    assert result.code == 0, result.stderr
