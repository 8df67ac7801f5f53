"""Tests of stackci.workspace.tasks: one job task as a local process."""

from __future__ import annotations

import base64
import hashlib
import itertools
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest

from stackci.workspace import tasks
from stackci.workspace.tasks import TaskOutcome, run_task

NB_HEADER = "# Databricks notebook source\n"
SEP = "\n# COMMAND ----------\n"


class Workspace:
    """Files of one run, addressed by workspace paths like /Workspace/Users/me/x."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "files"
        self.root.mkdir()
        self.tmp = tmp_path
        self._n = itertools.count()

    def local(self, ws_path: str) -> Path:
        rel = ws_path[len("/Workspace"):] if ws_path.startswith("/Workspace/") else ws_path
        return self.root / rel.lstrip("/")

    def write(self, ws_path: str, text: str) -> str:
        path = self.local(ws_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return ws_path

    def notebook(self, ws_path: str, *cells: str) -> str:
        return self.write(ws_path, NB_HEADER + SEP.join(textwrap.dedent(c).strip("\n") for c in cells) + "\n")

    def resolve(self, ws_path: str) -> Path:
        path = self.local(ws_path)
        if not path.exists():
            raise FileNotFoundError(ws_path)
        return path

    def run(self, task: dict, *, job_parameters=None, upstream_values=None, timeout=30.0, cancel=None,
            env=None) -> TaskOutcome:
        task = {"task_key": "t", **task}
        return run_task(task, resolve_path=self.resolve, work_dir=self.tmp / f"run{next(self._n)}",
                        job_parameters=job_parameters or {}, upstream_values=upstream_values or {},
                        python=sys.executable, timeout=timeout, cancel=cancel or threading.Event(), env=env)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# --------------------------------------------------------------------------- spark_python_task

def test_python_file_gets_parameters_as_argv_and_runs_in_its_folder(ws):
    ws.write("/Workspace/proj/src/main.py", """
        import os, sys
        import helper
        print("argv", sys.argv[1:])
        print("cwd", os.getcwd())
        print("name", __name__)
        print(helper.VALUE)
        print("oops", file=sys.stderr)
    """)
    ws.write("/Workspace/proj/src/helper.py", "VALUE = 'helper imported'\n")
    out = ws.run({"spark_python_task": {"python_file": "/Workspace/proj/src/main.py", "parameters": ["--n", 3]}})
    assert (out.result_state, out.termination_code) == ("SUCCESS", "SUCCESS")
    assert "argv ['--n', '3']" in out.logs
    assert f"cwd {ws.local('/proj/src')}" in out.logs
    assert "name __main__" in out.logs
    assert "helper imported" in out.logs
    assert "oops" in out.logs
    assert out.error is None and out.notebook_result is None and out.task_values == {}


def test_python_file_failure_reports_error_and_user_traceback(ws):
    ws.write("/Workspace/job.py", """
        def divide(a, b):
            return a / b

        print("before")
        divide(1, 0)
    """)
    out = ws.run({"spark_python_task": {"python_file": "/Workspace/job.py"}})
    assert (out.result_state, out.termination_code) == ("FAILED", "RUN_EXECUTION_ERROR")
    assert out.error == "ZeroDivisionError: division by zero"
    assert out.error_trace.startswith("Traceback (most recent call last):")
    assert str(ws.local("/job.py")) in out.error_trace and "in divide" in out.error_trace
    assert "runpy" not in out.error_trace and "_runtime" not in out.error_trace
    assert "before" in out.logs and "ZeroDivisionError" in out.logs


@pytest.mark.parametrize("code, state, error", [("0", "SUCCESS", None), ("None", "SUCCESS", None),
                                                 ("3", "FAILED", "SystemExit: 3"),
                                                 ("'bad input'", "FAILED", "SystemExit: bad input")])
def test_python_file_sys_exit(ws, code, state, error):
    ws.write("/Workspace/exit.py", f"import sys\nsys.exit({code})\n")
    out = ws.run({"spark_python_task": {"python_file": "/Workspace/exit.py"}})
    assert out.result_state == state
    assert out.error == error


def test_python_file_importing_pyspark_fails_honestly(ws):
    ws.write("/Workspace/spark_job.py", "from pyspark.sql import SparkSession\n")
    out = ws.run({"spark_python_task": {"python_file": "/Workspace/spark_job.py"}})
    assert out.result_state == "FAILED"
    assert out.error.startswith("ModuleNotFoundError: No module named 'pyspark'")


def test_process_killed_without_result_is_a_failure(ws):
    ws.write("/Workspace/die.py", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    out = ws.run({"spark_python_task": {"python_file": "/Workspace/die.py"}})
    assert (out.result_state, out.termination_code) == ("FAILED", "RUN_EXECUTION_ERROR")
    assert "SIGKILL" in out.error


# --------------------------------------------------------------------------- notebook_task

def test_notebook_widgets_base_parameters_and_job_parameter_override(ws):
    nb = ws.notebook("/Workspace/Users/me/proj/notebooks/Train", """
        dbutils.widgets.text("env", "dev")
        dbutils.widgets.dropdown("mode", "fast", ["fast", "slow"], "Mode")
        dbutils.widgets.text("rows", "10")
        dbutils.widgets.combobox("color", "red", ["red", "blue"])
        dbutils.widgets.multiselect("tags", "a,b", ["a", "b", "c"])
        print("env", dbutils.widgets.get("env"))
        print("mode", dbutils.widgets.get("mode"))
        print("rows", dbutils.widgets.get("rows"))
        print("undeclared", dbutils.widgets.get("only_passed"))
        print("all", sorted(dbutils.widgets.getAll().items()))
        print("arg", getArgument("missing", "fallback"))
        dbutils.widgets.removeAll()
    """)
    out = ws.run({"notebook_task": {"notebook_path": nb,
                                    "base_parameters": {"env": "staging", "rows": "20", "only_passed": "x"}}},
                 job_parameters={"env": "prod"})
    assert out.result_state == "SUCCESS", out.error_trace
    assert "env prod" in out.logs          # job parameter wins over base_parameters
    assert "mode fast" in out.logs         # widget default
    assert "rows 20" in out.logs           # base parameter wins over the default
    assert "undeclared x" in out.logs      # passed parameters are readable without a widget
    assert ("all [('color', 'red'), ('env', 'prod'), ('mode', 'fast'), ('only_passed', 'x'), ('rows', '20'), "
            "('tags', 'a,b')]") in out.logs
    assert "arg fallback" in out.logs


def test_missing_widget_fails_with_input_widget_not_defined(ws):
    nb = ws.notebook("/Workspace/nb/Widgets", "x = 1", "print('cell 2')\nvalue = dbutils.widgets.get('nope')")
    out = ws.run({"notebook_task": {"notebook_path": nb}})
    assert (out.result_state, out.termination_code) == ("FAILED", "RUN_EXECUTION_ERROR")
    assert out.error == "InputWidgetNotDefined: No input widget named nope is defined"
    assert "Notebook /Workspace/nb/Widgets, cell 2" in out.error_trace
    assert "<notebook /Workspace/nb/Widgets, cell 2>" in out.error_trace
    assert "dbutils.widgets.get('nope')" in out.error_trace  # source line shown in the traceback
    assert "cell 2" in out.logs


def test_notebook_exit_value_stops_the_notebook(ws):
    nb = ws.notebook("/Workspace/nb/Exit",
                     "import json\nprint('running')",
                     "try:\n    dbutils.notebook.exit(json.dumps({'auc': 0.9}))\n"
                     "except Exception:\n    print('swallowed')",
                     "print('after exit')\nraise RuntimeError('must not run')")
    out = ws.run({"notebook_task": {"notebook_path": nb}})
    assert out.result_state == "SUCCESS", out.error_trace
    assert out.notebook_result == '{"auc": 0.9}'
    assert out.notebook_truncated is False
    assert "running" in out.logs and "after exit" not in out.logs and "swallowed" not in out.logs


def test_notebook_exit_value_is_stringified_and_none_without_exit(ws):
    nb = ws.notebook("/Workspace/nb/Num", "dbutils.notebook.exit(42)")
    assert ws.run({"notebook_task": {"notebook_path": nb}}).notebook_result == "42"
    nb2 = ws.notebook("/Workspace/nb/NoExit", "x = 1")
    assert ws.run({"notebook_task": {"notebook_path": nb2}}).notebook_result is None


def test_task_values_flow_from_one_task_to_the_next(ws):
    train = ws.notebook("/Workspace/nb/Train", """
        dbutils.jobs.taskValues.set(key="model_version", value=3)
        dbutils.jobs.taskValues.set("metrics", {"auc": 0.91, "tags": ["a"]})
    """)
    first = ws.run({"task_key": "Train", "notebook_task": {"notebook_path": train}})
    assert first.result_state == "SUCCESS", first.error_trace
    assert first.task_values == {"model_version": 3, "metrics": {"auc": 0.91, "tags": ["a"]}}

    deploy = ws.notebook("/Workspace/nb/Deploy", """
        v = dbutils.jobs.taskValues.get(taskKey="Train", key="model_version", default=0, debugValue=0)
        m = dbutils.jobs.taskValues.get("Train", "metrics")
        d = dbutils.jobs.taskValues.get("Train", "absent", default="dflt")
        print("got", v, m["auc"], d)
        dbutils.notebook.exit(str(v + 1))
    """)
    second = ws.run({"task_key": "Deploy", "notebook_task": {"notebook_path": deploy}},
                    upstream_values={"Train": first.task_values})
    assert second.result_state == "SUCCESS", second.error_trace
    assert "got 3 0.91 dflt" in second.logs
    assert second.notebook_result == "4"


def test_task_value_errors(ws):
    missing = ws.notebook("/Workspace/nb/Missing", "dbutils.jobs.taskValues.get('Train', 'absent')")
    out = ws.run({"notebook_task": {"notebook_path": missing}}, upstream_values={"Train": {"x": 1}})
    assert out.result_state == "FAILED"
    assert out.error.startswith("ValueError: Could not find the task value with key 'absent' for task 'Train'")

    too_big = ws.notebook("/Workspace/nb/Big", "dbutils.jobs.taskValues.set('ok', 1)",
                          "dbutils.jobs.taskValues.set('big', 'x' * 50000)")
    out = ws.run({"notebook_task": {"notebook_path": too_big}})
    assert out.result_state == "FAILED" and "48 KiB" in out.error
    assert out.task_values == {"ok": 1}  # values set before the failure are kept

    not_json = ws.notebook("/Workspace/nb/NotJson", "dbutils.jobs.taskValues.set('s', {1, 2})")
    out = ws.run({"notebook_task": {"notebook_path": not_json}})
    assert out.result_state == "FAILED" and "not JSON-serialisable" in out.error


def test_markdown_title_and_magic_cells(ws):
    nb = ws.notebook("/Workspace/nb/Magic",
                     "# MAGIC %md\n# MAGIC # Title\n# MAGIC raise SystemExit('markdown must not run')",
                     "# DBTITLE 1,Setup\nvalues = ['setup']",
                     "# MAGIC %load_ext autoreload\n# MAGIC %autoreload 2",
                     "# MAGIC %python\n# MAGIC values.append('magic python')",
                     "%load_ext autoreload\nvalues.append('python with line magic')",
                     "# MAGIC %sh\n# MAGIC echo from-shell-$((40 + 2))",
                     "print(values, __name__)")
    out = ws.run({"notebook_task": {"notebook_path": nb}})
    assert out.result_state == "SUCCESS", out.error_trace
    assert "['setup', 'magic python', 'python with line magic'] __main__" in out.logs
    assert "from-shell-42" in out.logs
    assert "markdown must not run" not in out.logs


def test_sql_cell_fails_clearly(ws):
    nb = ws.notebook("/Workspace/nb/Sql", "print('first cell ran')", "# MAGIC %sql\n# MAGIC SELECT 1")
    out = ws.run({"notebook_task": {"notebook_path": nb}})
    assert (out.result_state, out.termination_code) == ("FAILED", "INVALID_RUN_CONFIGURATION")
    assert "%sql cells need Spark SQL" in out.error and "cell 2" in out.error_trace
    assert "first cell ran" in out.logs


def test_failing_sh_cell_fails_the_notebook(ws):
    nb = ws.notebook("/Workspace/nb/Sh", "# MAGIC %sh\n# MAGIC exit 3")
    out = ws.run({"notebook_task": {"notebook_path": nb}})
    assert out.result_state == "FAILED" and "non-zero status 3" in out.error


def test_notebook_runs_in_its_folder_and_spark_is_not_faked(ws):
    ws.write("/Workspace/proj/churn/__init__.py", "NAME = 'churn package'\n")
    nb = ws.notebook("/Workspace/proj/notebooks/Train", """
        import os, sys
        sys.path.insert(0, os.path.abspath(os.path.join(os.getcwd(), "..")))
        from churn import NAME
        print(NAME, os.getcwd())
        print(dbutils.notebook.entry_point.getDbutils().notebook().getContext().notebookPath().get())
    """, "df = spark.read.table('x')")
    out = ws.run({"notebook_task": {"notebook_path": nb}})
    assert out.result_state == "FAILED"
    assert f"churn package {ws.local('/proj/notebooks')}" in out.logs
    assert "/Workspace/proj/notebooks/Train" in out.logs
    assert out.error.startswith("NameError: name 'spark' is not defined")
    assert "Spark is not available" in out.error


def test_percent_run_shares_the_namespace_and_cd_maps_workspace_paths(ws):
    ws.notebook("/Workspace/proj/common/Setup", "shared = 'from setup'\nwidget = dbutils.widgets.get('who')")
    nb = ws.notebook("/Workspace/proj/notebooks/Main",
                     "# MAGIC %run ../common/Setup $who=world",
                     "import os\nprint(shared, widget)\n%cd /Workspace/proj/common\nprint('cwd', os.getcwd())")
    out = ws.run({"notebook_task": {"notebook_path": nb}})
    assert out.result_state == "SUCCESS", out.error_trace
    assert "from setup world" in out.logs
    assert f"cwd {ws.local('/proj/common')}" in out.logs

    broken = ws.notebook("/Workspace/proj/notebooks/Broken", "# MAGIC %run ./Nowhere")
    out = ws.run({"notebook_task": {"notebook_path": broken}})
    assert out.result_state == "FAILED" and "Notebook not found: /Workspace/proj/notebooks/Nowhere" in out.error


def test_dbutils_fs_is_local_only(ws, tmp_path):
    target = tmp_path / "data"
    nb = ws.notebook("/Workspace/nb/Fs", f"""
        dbutils.fs.mkdirs("file:{target}")
        dbutils.fs.put("{target}/a.txt", "hello")
        print([f.name for f in dbutils.fs.ls("{target}")], dbutils.fs.head("{target}/a.txt"))
    """, "dbutils.fs.ls('dbfs:/tmp')")
    out = ws.run({"notebook_task": {"notebook_path": nb}})
    assert "['a.txt'] hello" in out.logs
    assert out.result_state == "FAILED" and "DBFS" in out.error


# --------------------------------------------------------------------------- timeouts and cancellation

SPAWNER = """
    import subprocess, sys, time
    child = subprocess.Popen(["sleep", "60"])
    with open(sys.argv[1] + ".tmp", "w") as fh:
        fh.write(str(child.pid))
    import os; os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    print("spawned", child.pid, flush=True)
    time.sleep(60)
"""


def test_timeout_kills_the_process_tree(ws, tmp_path):
    ws.write("/Workspace/slow.py", SPAWNER)
    pid_file = tmp_path / "grandchild.pid"
    start = time.monotonic()
    out = ws.run({"spark_python_task": {"python_file": "/Workspace/slow.py", "parameters": [str(pid_file)]}},
                 timeout=1.5)
    elapsed = time.monotonic() - start
    assert (out.result_state, out.termination_code) == ("TIMEDOUT", "CANCELED")
    assert "timed out" in out.error
    assert elapsed < 5
    assert "spawned" in out.logs
    pid = int(pid_file.read_text())
    assert _wait_for(lambda: not _alive(pid), 3), "grandchild survived the timeout"


def test_cancel_kills_the_process_tree_quickly(ws, tmp_path):
    ws.write("/Workspace/slow.py", SPAWNER)
    pid_file = tmp_path / "grandchild.pid"
    cancel = threading.Event()
    box = {}

    def target():
        box["out"] = ws.run({"spark_python_task": {"python_file": "/Workspace/slow.py",
                                                   "parameters": [str(pid_file)]}}, cancel=cancel, timeout=None)
        box["done"] = time.monotonic()

    thread = threading.Thread(target=target)
    thread.start()
    assert _wait_for(pid_file.exists, 10)
    pid = int(pid_file.read_text())
    assert _alive(pid)
    cancelled_at = time.monotonic()
    cancel.set()
    thread.join(10)
    assert not thread.is_alive()
    assert box["done"] - cancelled_at < 1.5
    out = box["out"]
    assert (out.result_state, out.termination_code) == ("CANCELED", "USER_CANCELED")
    assert _wait_for(lambda: not _alive(pid), 3), "grandchild survived the cancellation"


def test_cancel_before_start_runs_nothing(ws, tmp_path):
    marker = tmp_path / "ran"
    ws.write("/Workspace/touch.py", f"open({str(marker)!r}, 'w').close()\n")
    cancel = threading.Event()
    cancel.set()
    out = ws.run({"spark_python_task": {"python_file": "/Workspace/touch.py"}}, cancel=cancel)
    assert out.result_state == "CANCELED" and not marker.exists()


def test_leftover_background_processes_are_killed_when_the_task_ends(ws, tmp_path):
    pid_file = tmp_path / "bg.pid"
    ws.write("/Workspace/bg.py", f"""
        import subprocess
        p = subprocess.Popen(["sleep", "60"])
        open({str(pid_file)!r}, "w").write(str(p.pid))
    """)
    out = ws.run({"spark_python_task": {"python_file": "/Workspace/bg.py"}})
    assert out.result_state == "SUCCESS"
    pid = int(pid_file.read_text())
    assert _wait_for(lambda: not _alive(pid), 3)


# --------------------------------------------------------------------------- bad configuration

def test_missing_files_fail_with_a_message_naming_the_path(ws):
    out = ws.run({"spark_python_task": {"python_file": "/Workspace/nope.py"}})
    assert (out.result_state, out.termination_code) == ("FAILED", tasks.MISSING_FILE_CODE)
    assert "/Workspace/nope.py" in out.error
    out = ws.run({"notebook_task": {"notebook_path": "/Workspace/Users/me/Missing"}})
    assert (out.result_state, out.termination_code) == ("FAILED", tasks.MISSING_FILE_CODE)
    assert 'Unable to access the notebook "/Workspace/Users/me/Missing"' in out.error


@pytest.mark.parametrize("task, message", [
    ({"sql_task": {"query": {"query_id": "1"}}}, "sql_task is not supported"),
    ({"spark_jar_task": {"main_class_name": "A"}}, "spark_jar_task is not supported"),
    ({"description": "nothing to do"}, "has no task type"),
    ({"notebook_task": {"notebook_path": "/a"}, "spark_python_task": {"python_file": "/b"}}, "more than one"),
    ({"notebook_task": {}}, "notebook_task.notebook_path is required"),
    ({"spark_python_task": {"python_file": "/Workspace/x.py", "source": "GIT"}}, "source 'GIT'"),
    ({"spark_python_task": {"python_file": "/Workspace/x.py", "parameters": "a b"}}, "must be a list"),
])
def test_unsupported_or_invalid_tasks_never_succeed(ws, task, message):
    ws.write("/Workspace/x.py", "print('must not run')\n")
    out = ws.run(task)
    assert (out.result_state, out.termination_code) == ("FAILED", "INVALID_RUN_CONFIGURATION")
    assert message in out.error


def test_jupyter_notebook_is_rejected(ws):
    ws.write("/Workspace/nb/Jupyter", '{"cells": [], "nbformat": 4}')
    out = ws.run({"notebook_task": {"notebook_path": "/Workspace/nb/Jupyter"}})
    assert out.termination_code == "INVALID_RUN_CONFIGURATION" and "source format" in out.error


# --------------------------------------------------------------------------- python_wheel_task

def build_wheel(folder: Path, name: str = "hello_wheel", version: str = "0.1", requires=()) -> Path:
    """Write a minimal pure-Python wheel by hand (no network, no build backend)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": textwrap.dedent("""
            import sys

            def main():
                print("hello from wheel", sys.argv[1:])

            def fallback():
                print("fallback entry", sys.argv[1:])
                raise KeyError("boom")
        """),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                            + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: stackci-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": f"[console_scripts]\nhello = {name}:main\n",
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def test_wheel_task_installs_the_wheel_and_calls_the_entry_point(ws):
    build_wheel(ws.local("/Workspace/proj/artifacts/.internal"))
    whl = "/Workspace/proj/artifacts/.internal/hello_wheel-0.1-py3-none-any.whl"
    out = ws.run({"python_wheel_task": {"package_name": "hello_wheel", "entry_point": "hello",
                                        "named_parameters": {"env": "dev", "rows": "5"}},
                  "libraries": [{"whl": whl}]},
                 job_parameters={"env": "prod"})
    assert out.result_state == "SUCCESS", (out.error, out.logs)
    assert "hello from wheel ['--env=prod', '--rows=5']" in out.logs

    # an entry point that is not in the metadata is called as <package>.<entry_point>()
    out = ws.run({"python_wheel_task": {"package_name": "hello_wheel", "entry_point": "fallback",
                                        "parameters": ["a", "b"]},
                  "libraries": [{"whl": whl}]})
    assert out.result_state == "FAILED"
    assert "fallback entry ['a', 'b']" in out.logs
    assert out.error == "KeyError: 'boom'"


def test_wheel_that_cannot_be_installed_is_a_library_installation_error(ws):
    build_wheel(ws.local("/Workspace/dist"), name="needy", requires=["surely-not-installed-pkg-xyz>=1"])
    out = ws.run({"python_wheel_task": {"package_name": "needy", "entry_point": "hello"},
                  "libraries": [{"whl": "/Workspace/dist/needy-0.1-py3-none-any.whl"}]})
    assert (out.result_state, out.termination_code) == ("FAILED", "LIBRARY_INSTALLATION_ERROR")
    assert "surely-not-installed-pkg-xyz" in out.error and "offline" in out.error

    out = ws.run({"python_wheel_task": {"package_name": "x", "entry_point": "main"},
                  "libraries": [{"whl": "/Workspace/dist/absent-1.0-py3-none-any.whl"}]})
    assert (out.result_state, out.termination_code) == ("FAILED", "LIBRARY_INSTALLATION_ERROR")
    assert "/Workspace/dist/absent-1.0-py3-none-any.whl" in out.error

    out = ws.run({"python_wheel_task": {"package_name": "x", "entry_point": "main"},
                  "libraries": [{"jar": "dbfs:/x.jar"}]})
    assert (out.result_state, out.termination_code) == ("FAILED", "LIBRARY_INSTALLATION_ERROR")


def test_wheel_package_not_installed_fails_clearly(ws):
    out = ws.run({"python_wheel_task": {"package_name": "no_such_pkg_abc", "entry_point": "main"}})
    assert out.result_state == "FAILED" and "no_such_pkg_abc" in out.error


# --------------------------------------------------------------------------- logs and limits

def test_logs_are_a_bounded_tail(ws, monkeypatch):
    monkeypatch.setattr(tasks, "LOG_TAIL_BYTES", 1000)
    ws.write("/Workspace/noisy.py", "for i in range(500):\n    print('line %04d' % i)\n")
    out = ws.run({"spark_python_task": {"python_file": "/Workspace/noisy.py"}})
    assert out.result_state == "SUCCESS"
    assert out.logs_truncated is True
    assert len(out.logs.encode()) <= 1000
    assert out.logs.endswith("line 0499\n") and "line 0000" not in out.logs

    monkeypatch.setattr(tasks, "LOG_TAIL_BYTES", 1 << 20)
    small = ws.run({"spark_python_task": {"python_file": "/Workspace/noisy.py"}})
    assert small.logs_truncated is False and small.logs.startswith("line 0000")


def test_notebook_result_is_truncated_like_databricks(ws, monkeypatch):
    monkeypatch.setattr(tasks, "NOTEBOOK_RESULT_MAX_BYTES", 10)
    nb = ws.notebook("/Workspace/nb/Long", "dbutils.notebook.exit('0123456789abcdef')")
    out = ws.run({"notebook_task": {"notebook_path": nb}})
    assert (out.notebook_result, out.notebook_truncated) == ("0123456789", True)


def test_env_extras_reach_the_child(ws):
    ws.write("/Workspace/env.py", "import os\nprint('X=' + os.environ['STACKCI_TEST_X'])\n"
                                  "print('DRV=' + str(os.environ.get('DATABRICKS_RUNTIME_VERSION')))\n")
    out = ws.run({"spark_python_task": {"python_file": "/Workspace/env.py"}}, env={"STACKCI_TEST_X": "42"})
    assert "X=42" in out.logs and "DRV=None" in out.logs


def test_tasks_run_concurrently_in_threads(ws):
    nb = ws.notebook("/Workspace/nb/Par", """
        n = dbutils.widgets.get("n")
        dbutils.jobs.taskValues.set("n", int(n))
        dbutils.notebook.exit("result-" + n)
    """)
    results = {}

    def one(i):
        results[i] = ws.run({"task_key": f"t{i}", "notebook_task": {"notebook_path": nb,
                                                                     "base_parameters": {"n": str(i)}}})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == list(range(8))
    for i, out in results.items():
        assert (out.result_state, out.notebook_result, out.task_values) == ("SUCCESS", f"result-{i}", {"n": i})


def test_pip_magic_installs_into_the_task_environment(ws):
    build_wheel(ws.local("/Workspace/proj/wheels"), name="pipped", version="1.0")
    nb = ws.notebook("/Workspace/proj/notebooks/Pip",
                     "# MAGIC %pip install ../wheels/pipped-1.0-py3-none-any.whl",
                     "dbutils.library.restartPython()",
                     "import sys, pipped\nprint('imported', pipped.__file__)\nprint('exe', sys.executable)")
    out = ws.run({"notebook_task": {"notebook_path": nb}})
    assert out.result_state == "SUCCESS", (out.error, out.logs)
    assert "imported" in out.logs
    exe = out.logs.split("exe ", 1)[1].split("\n", 1)[0]
    assert exe != sys.executable and "/env/bin/python" in exe  # not the server's interpreter
    # the server's environment was not touched
    import importlib.util
    assert importlib.util.find_spec("pipped") is None

    failing = ws.notebook("/Workspace/proj/notebooks/PipFail", "# MAGIC %pip install surely-not-installed-pkg-xyz")
    out = ws.run({"notebook_task": {"notebook_path": failing}})
    assert out.result_state == "FAILED" and "offline" in out.error


def test_executor_bug_is_reported_not_raised(ws):
    def exploding_resolve(path):
        raise RuntimeError("resolver bug")

    ws.write("/Workspace/ok.py", "print('ok')\n")
    out = run_task({"task_key": "t", "spark_python_task": {"python_file": "/Workspace/ok.py"}},
                   resolve_path=exploding_resolve, work_dir=ws.tmp / "bug", job_parameters={}, upstream_values={},
                   python=sys.executable, timeout=10, cancel=threading.Event())
    assert out.result_state == "FAILED"  # a resolver failure means the file is not there
    out = run_task({"task_key": "t", "spark_python_task": {"python_file": "/Workspace/ok.py"}},
                   resolve_path=ws.resolve, work_dir=ws.tmp / "bug2", job_parameters=None, upstream_values=None,
                   python="/nonexistent/python", timeout=10, cancel=threading.Event())
    assert (out.result_state, out.termination_code) == ("FAILED", "INVALID_RUN_CONFIGURATION")
    assert "/nonexistent/python" in out.error
