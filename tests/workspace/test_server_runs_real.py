"""Job runs executed as real local processes, driven through databricks-sdk.

Files and notebooks are uploaded with the SDK's workspace API, jobs are created
and run with the real client, and results are read back with runs/get and
runs/get-output, as a CI pipeline would do against a real workspace.
"""

from __future__ import annotations

import io
import json
import os
import textwrap
import time
from pathlib import Path

import pytest
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat

from workspace_support import wait_run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "project"
NOTEBOOK_HEADER = "# Databricks notebook source\n"
CELL = "\n# COMMAND ----------\n"


def upload(w, path: str, text: str) -> None:
    w.workspace.mkdirs(os.path.dirname(path))
    w.workspace.upload(path, io.BytesIO(text.encode()), format=ImportFormat.AUTO, overwrite=True)


def notebook(*cells: str) -> str:
    return NOTEBOOK_HEADER + CELL.join(textwrap.dedent(c).strip() + "\n" for c in cells)


def by_key(run):
    return {t.task_key: t for t in run.tasks}


def result(run_or_task):
    return run_or_task.state.life_cycle_state.value, (
        run_or_task.state.result_state.value if run_or_task.state.result_state else None)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def test_notebook_and_python_file_with_task_values(ws, w):
    base = "/Workspace/Shared/proj"
    upload(w, f"{base}/prepare.py", notebook(
        """
        import json
        dbutils.widgets.text("rows", "5")
        dbutils.widgets.text("env", "dev")
        rows = int(dbutils.widgets.get("rows"))
        env = dbutils.widgets.get("env")
        print(f"preparing {rows} rows for {env}")
        dbutils.jobs.taskValues.set("rows", rows)
        dbutils.jobs.taskValues.set("env", env)
        """,
        """
        dbutils.notebook.exit(json.dumps({"rows": rows, "env": env}))
        print("never printed")
        """))
    upload(w, f"{base}/train.py", textwrap.dedent("""
        import sys
        from helpers import double
        print("training on", sys.argv[1:], "->", double(int(sys.argv[2])))
        """))
    upload(w, f"{base}/helpers.py", "def double(x):\n    return 2 * x\n")
    upload(w, f"{base}/check.py", notebook(
        """
        rows = dbutils.jobs.taskValues.get(taskKey="prepare", key="rows")
        assert rows == 3, rows
        dbutils.notebook.exit(f"checked {rows} rows in {dbutils.widgets.get('env')}")
        """))
    job_id = w.jobs.create(name="values", parameters=[jobs.JobParameterDefinition(name="env", default="dev")], tasks=[
        jobs.Task(task_key="prepare", notebook_task=jobs.NotebookTask(
            notebook_path=f"{base}/prepare", base_parameters={"rows": "3", "env": "ignored"})),
        jobs.Task(task_key="train", depends_on=[jobs.TaskDependency("prepare")],
                  spark_python_task=jobs.SparkPythonTask(
                      python_file=f"{base}/train.py",
                      parameters=["--rows", "{{tasks.prepare.values.rows}}", "{{job.parameters.env}}"])),
        jobs.Task(task_key="check", depends_on=[jobs.TaskDependency("train")],
                  notebook_task=jobs.NotebookTask(notebook_path=f"{base}/check")),
    ]).job_id
    run = wait_run(w, w.jobs.run_now(job_id, job_parameters={"env": "staging"}).run_id, timeout=60)
    assert result(run) == ("TERMINATED", "SUCCESS"), run.state
    tasks = by_key(run)

    prepare = w.jobs.get_run_output(tasks["prepare"].run_id)
    assert json.loads(prepare.notebook_output.result) == {"rows": 3, "env": "staging"}  # job parameters win
    assert prepare.notebook_output.truncated is False
    assert "preparing 3 rows for staging" in prepare.logs
    assert "never printed" not in prepare.logs
    train = w.jobs.get_run_output(tasks["train"].run_id)
    assert "training on ['--rows', '3', 'staging'] -> 6" in train.logs
    assert train.notebook_output is None or train.notebook_output.result is None
    check = w.jobs.get_run_output(tasks["check"].run_id)
    assert check.notebook_output.result == "checked 3 rows in staging"


def test_failing_task_reports_error_and_trace(ws, w):
    upload(w, "/Workspace/Shared/fail/job.py", textwrap.dedent("""
        def load(path):
            raise ValueError(f"bad input: {path}")

        print("starting")
        load("/data/x.csv")
        """))
    job_id = w.jobs.create(name="failing", tasks=[
        jobs.Task(task_key="load", spark_python_task=jobs.SparkPythonTask(python_file="/Workspace/Shared/fail/job.py")),
        jobs.Task(task_key="after", depends_on=[jobs.TaskDependency("load")],
                  spark_python_task=jobs.SparkPythonTask(python_file="/Workspace/Shared/fail/job.py")),
    ]).job_id
    run = wait_run(w, w.jobs.run_now(job_id).run_id, timeout=60)
    assert result(run) == ("INTERNAL_ERROR", "FAILED")
    assert run.state.state_message.startswith("Task load failed with message: Workload failed")
    assert result(by_key(run)["after"]) == ("SKIPPED", "UPSTREAM_FAILED")
    out = w.jobs.get_run_output(by_key(run)["load"].run_id)
    assert out.error == "ValueError: bad input: /data/x.csv"
    assert "Traceback (most recent call last)" in out.error_trace
    assert 'load("/data/x.csv")' in out.error_trace and "_runtime" not in out.error_trace
    assert out.logs.startswith("starting\n")


def test_cancel_kills_the_whole_process_tree(ws, w, tmp_path):
    pids = tmp_path / "pids.json"
    upload(w, "/Workspace/Shared/cancel/long.py", textwrap.dedent("""
        import json, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        with open(sys.argv[1] + ".tmp", "w") as fh:
            json.dump([__import__("os").getpid(), child.pid], fh)
        __import__("os").replace(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(120)
        """))
    job_id = w.jobs.create(name="long", tasks=[jobs.Task(task_key="long", spark_python_task=jobs.SparkPythonTask(
        python_file="/Workspace/Shared/cancel/long.py", parameters=[str(pids)]))]).job_id
    run_id = w.jobs.run_now(job_id).run_id
    deadline = time.monotonic() + 30
    while not pids.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    task_pid, child_pid = json.loads(pids.read_text())
    assert alive(task_pid) and alive(child_pid)
    w.jobs.cancel_run(run_id)
    run = wait_run(w, run_id, timeout=20)
    assert result(run) == ("TERMINATED", "CANCELED")
    assert result(run.tasks[0]) == ("TERMINATED", "CANCELED")
    deadline = time.monotonic() + 5
    while (alive(task_pid) or alive(child_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(task_pid) and not alive(child_pid)


def test_task_timeout_with_real_process(ws, w):
    upload(w, "/Workspace/Shared/slow/slow.py", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n")
    sub = w.jobs.submit(run_name="slow", tasks=[jobs.SubmitTask(
        task_key="slow", timeout_seconds=1,
        spark_python_task=jobs.SparkPythonTask(python_file="/Workspace/Shared/slow/slow.py"))])
    started = time.monotonic()
    run = wait_run(w, sub.run_id, timeout=30)
    assert time.monotonic() - started < 20
    assert result(run.tasks[0]) == ("TERMINATED", "TIMEDOUT")
    out = w.jobs.get_run_output(run.tasks[0].run_id)
    assert "timed out" in out.error
    assert "sleeping" in out.logs


def test_notebook_that_needs_spark_fails_clearly(ws, w):
    upload(w, "/Workspace/Shared/spark/nb.py", notebook("df = spark.range(10)\ndisplay(df)"))
    sub = w.jobs.submit(run_name="spark", tasks=[jobs.SubmitTask(
        task_key="nb", notebook_task=jobs.NotebookTask(notebook_path="/Workspace/Shared/spark/nb"))])
    run = wait_run(w, sub.run_id, timeout=30)
    assert result(run.tasks[0]) == ("TERMINATED", "FAILED")
    out = w.jobs.get_run_output(run.tasks[0].run_id)
    assert "spark" in out.error and "Spark is not available" in out.error
    assert result(run) == ("INTERNAL_ERROR", "FAILED")


def test_missing_file_fails_with_resource_not_found(ws, w):
    sub = w.jobs.submit(run_name="missing", tasks=[jobs.SubmitTask(
        task_key="t", spark_python_task=jobs.SparkPythonTask(python_file="/Workspace/Shared/none.py"))])
    run = wait_run(w, sub.run_id, timeout=30)
    task = run.tasks[0]
    assert result(task) == ("TERMINATED", "FAILED")
    assert task.status.termination_details.code == jobs.TerminationCodeCode.RESOURCE_NOT_FOUND
    assert "/Workspace/Shared/none.py" in w.jobs.get_run_output(task.run_id).error


@pytest.mark.skipif(not (EXAMPLE / "training" / "notebooks" / "Train.py").is_file(), reason="example project missing")
def test_example_project_training_workflow(ws, w, tmp_path):
    """Train -> ModelValidation -> ModelDeployment of examples/project, as the bundle would deploy it."""
    me = w.current_user.me().user_name
    root = f"/Workspace/Users/{me}/.bundle/churn_model/test/files"
    for path in sorted(EXAMPLE.rglob("*.py")):
        rel = path.relative_to(EXAMPLE).as_posix()
        if rel.startswith("tests/") or "__pycache__" in rel:
            continue
        upload(w, f"{root}/{rel}", path.read_text(encoding="utf-8"))
    registry = tmp_path / "registry"
    model = "churn_model"
    job_id = w.jobs.create(name="test-churn_model-model-training-job", max_concurrent_runs=1, timeout_seconds=600,
                           tasks=[
        jobs.Task(task_key="Train", notebook_task=jobs.NotebookTask(
            notebook_path=f"{root}/training/notebooks/Train",
            base_parameters={"env": "test", "model_name": model, "registry_dir": str(registry),
                             "training_rows": "300", "epochs": "40", "learning_rate": "0.5",
                             "experiment_name": "/Shared/test-churn"})),
        jobs.Task(task_key="ModelValidation", depends_on=[jobs.TaskDependency("Train")],
                  notebook_task=jobs.NotebookTask(notebook_path=f"{root}/validation/notebooks/ModelValidation",
                                                  base_parameters={"env": "test", "min_auc": "0.5",
                                                                   "min_accuracy": "0.5",
                                                                   "validation_rows": "300"})),
        jobs.Task(task_key="ModelDeployment", depends_on=[jobs.TaskDependency("ModelValidation")],
                  notebook_task=jobs.NotebookTask(notebook_path=f"{root}/deployment/notebooks/ModelDeployment",
                                                  base_parameters={"env": "test", "alias": "champion"})),
    ]).job_id
    run = wait_run(w, w.jobs.run_now(job_id).run_id, timeout=120)
    tasks = by_key(run)
    if result(run) != ("TERMINATED", "SUCCESS"):
        details = {k: (result(t), w.jobs.get_run_output(t.run_id).error) for k, t in tasks.items()}
        pytest.fail(f"example workflow failed: {run.state.state_message} {details}")
    train = json.loads(w.jobs.get_run_output(tasks["Train"].run_id).notebook_output.result)
    assert train["model_version"] == 1
    deployed = json.loads(w.jobs.get_run_output(tasks["ModelDeployment"].run_id).notebook_output.result)
    assert deployed["deployed_version"] == 1
    assert (registry / model / "aliases.json").is_file()
    assert json.loads((registry / model / "aliases.json").read_text())["champion"] == 1
