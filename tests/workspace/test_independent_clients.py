"""Clients nobody here wrote, run as subprocesses against the in-process local workspace.

* the legacy ``databricks-cli`` 0.18 (PyPI ``databricks-cli``): ``workspace import_dir`` /
  ``export_dir`` / ``ls`` / ``rm``, ``jobs create --json-file``, ``jobs run-now``, ``runs get``,
  ``runs get-output``, configured only through ``DATABRICKS_HOST`` / ``DATABRICKS_TOKEN``;
* MLflow's tracking client (PyPI ``mlflow-skinny``) with ``MLFLOW_TRACKING_URI=databricks``.

Both come with the ``test`` extra, so these tests run wherever the suite runs; a
missing client is a failure, not a skip.

databricks-cli 0.18 builds its base URL from the host name only and drops any
port (``"%s://%s/api/" % (scheme, hostname)`` in ``databricks_cli/sdk/api_client.py``),
so it can only reach a workspace on port 80/443. Rather than patch the client, the
tests give it ``DATABRICKS_HOST=http://127.0.0.1`` and route its plain-HTTP traffic
through ``HTTP_PROXY`` = the local workspace, which serves the absolute-form
request lines a proxy receives. Every byte the CLI sends and parses is its own.
"""

from __future__ import annotations

import io
import re
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from databricks.sdk.service.workspace import ExportFormat, ImportFormat, Language, ObjectType

HEADER = "# Databricks notebook source\n"

# the console script of databricks-cli is ``databricks = databricks_cli.cli:main``; calling the
# same entry point through this interpreter avoids picking up another ``databricks`` on PATH
LEGACY_CLI = [sys.executable, "-c", "import sys; sys.argv[0] = 'databricks'; "
              "from databricks_cli.cli import main; main()"]


def _base_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "client-home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
    for name in ("SYSTEMROOT", "TMPDIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


@pytest.fixture
def legacy_cli(ws, tmp_path):
    env = _base_env(tmp_path)
    env.update({"DATABRICKS_HOST": "http://127.0.0.1", "DATABRICKS_TOKEN": ws.token,
                "HTTP_PROXY": ws.url, "http_proxy": ws.url, "NO_PROXY": "", "no_proxy": ""})

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*LEGACY_CLI, *args], env=env, capture_output=True, text=True, timeout=120,
                              cwd=tmp_path)
        if check:
            assert proc.returncode == 0, f"databricks {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    version = run("--version").stdout
    assert "0.18." in version, f"expected the legacy databricks-cli 0.18, got {version!r}"
    return run


@pytest.fixture
def mlflow_client(ws, tmp_path):
    env = _base_env(tmp_path)
    env.update({"DATABRICKS_HOST": ws.url, "DATABRICKS_TOKEN": ws.token, "MLFLOW_TRACKING_URI": "databricks"})

    def run(script: str) -> dict:
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180,
                              cwd=tmp_path)
        assert proc.returncode == 0, f"mlflow script failed: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run


def _project(root: Path) -> Path:
    """A small MLOps-Stacks-like folder as databricks-cli's import_dir sees it."""
    (root / "notebooks").mkdir(parents=True)
    (root / "notebooks" / "train.py").write_text(
        HEADER + "value = 6 * 7\n\n# COMMAND ----------\n\ndbutils.notebook.exit(f'trained {value}')\n")
    (root / "notebooks" / "plain.py").write_text("print('no header')\n")
    (root / "notebooks" / "report.sql").write_text("-- Databricks notebook source\nSELECT 1\n")
    (root / "notebooks" / "explore.ipynb").write_text(json.dumps({
        "cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Explore"]},
                  {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                   "source": ["print('hi')"]}],
        "metadata": {"language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}))
    (root / "README.txt").write_text("not imported by import_dir\n")
    return root


# ---- databricks-cli 0.18 ---------------------------------------------------------------


def test_legacy_cli_import_dir_export_dir_and_overwrite(legacy_cli, w, tmp_path):
    src = _project(tmp_path / "project")
    out = legacy_cli("workspace", "import_dir", str(src), "/Shared/churn").stdout
    assert "/Shared/churn/notebooks/train" in out
    assert "README.txt does not have a valid extension" in out

    kinds = {o.path: (o.object_type, o.language) for o in w.workspace.list("/Shared/churn", recursive=True)}
    assert kinds == {
        "/Shared/churn/notebooks/train": (ObjectType.NOTEBOOK, Language.PYTHON),
        "/Shared/churn/notebooks/plain": (ObjectType.NOTEBOOK, Language.PYTHON),
        "/Shared/churn/notebooks/report": (ObjectType.NOTEBOOK, Language.SQL),
        "/Shared/churn/notebooks/explore": (ObjectType.NOTEBOOK, Language.PYTHON),
    }
    with w.workspace.download("/Shared/churn/notebooks/plain") as f:
        assert f.read().decode() == HEADER + "print('no header')\n"
    with w.workspace.download("/Shared/churn/notebooks/explore", format=ExportFormat.JUPYTER) as f:
        cells = json.loads(f.read())["cells"]
    assert ["".join(c["source"]) for c in cells] == ["# Explore", "print('hi')"]

    # a second import without --overwrite fails the way the real service makes it fail
    again = legacy_cli("workspace", "import_dir", str(src), "/Shared/churn", check=False)
    assert again.returncode != 0
    assert "RESOURCE_ALREADY_EXISTS" in again.stdout + again.stderr
    (src / "notebooks" / "plain.py").write_text("print('changed')\n")
    legacy_cli("workspace", "import_dir", "-o", str(src), "/Shared/churn")
    with w.workspace.download("/Shared/churn/notebooks/plain") as f:
        assert f.read().decode() == HEADER + "print('changed')\n"

    listing = legacy_cli("workspace", "ls", "-l", "/Shared/churn/notebooks").stdout
    assert "NOTEBOOK" in listing and "train" in listing and "SQL" in listing

    dest = tmp_path / "exported"
    legacy_cli("workspace", "export_dir", "/Shared/churn", str(dest))
    assert (dest / "notebooks" / "train.py").read_text() == (src / "notebooks" / "train.py").read_text()
    assert (dest / "notebooks" / "report.sql").read_text() == "-- Databricks notebook source\nSELECT 1\n"
    assert (dest / "notebooks" / "plain.py").read_text() == HEADER + "print('changed')\n"


def test_legacy_cli_errors_and_delete(legacy_cli, w):
    missing = legacy_cli("workspace", "ls", "/Shared/does-not-exist", check=False)
    assert missing.returncode != 0 and "RESOURCE_DOES_NOT_EXIST" in missing.stdout + missing.stderr
    legacy_cli("workspace", "mkdirs", "/Shared/tmp/deep/er")
    w.workspace.upload("/Shared/tmp/deep/x.txt", io.BytesIO(b"x"), format=ImportFormat.AUTO)
    not_empty = legacy_cli("workspace", "rm", "/Shared/tmp", check=False)
    assert not_empty.returncode != 0 and "DIRECTORY_NOT_EMPTY" in not_empty.stdout + not_empty.stderr
    legacy_cli("workspace", "rm", "-r", "/Shared/tmp")
    assert [o.path for o in w.workspace.list("/Shared")] == []
    traversal = legacy_cli("workspace", "mkdirs", "/Shared/../etc", check=False)
    assert traversal.returncode != 0 and "INVALID_PARAMETER_VALUE" in traversal.stdout + traversal.stderr


def test_legacy_cli_jobs_create_run_now_and_runs_get(legacy_cli, w, tmp_path):
    legacy_cli("workspace", "import_dir", str(_project(tmp_path / "project")), "/Shared/churn")
    spec = {"name": "legacy-cli-training", "max_concurrent_runs": 1, "tasks": [
        {"task_key": "train", "notebook_task": {"notebook_path": "/Shared/churn/notebooks/train"}}]}
    spec_file = tmp_path / "job.json"
    spec_file.write_text(json.dumps(spec))
    job_id = json.loads(legacy_cli("jobs", "create", "--json-file", str(spec_file), "--version=2.1").stdout)["job_id"]
    assert w.jobs.get(job_id).settings.name == "legacy-cli-training"

    listed = legacy_cli("jobs", "list", "--version=2.1", "--output", "JSON").stdout
    assert [j["job_id"] for j in json.loads(listed)["jobs"]] == [job_id]

    started = json.loads(legacy_cli("jobs", "run-now", "--job-id", str(job_id), "--version=2.1").stdout)
    run_id = started["run_id"]
    deadline = time.monotonic() + 60
    while True:
        run = json.loads(legacy_cli("runs", "get", "--run-id", str(run_id), "--version=2.1").stdout)
        if run["state"]["life_cycle_state"] in ("TERMINATED", "INTERNAL_ERROR", "SKIPPED"):
            break
        assert time.monotonic() < deadline, run["state"]
        time.sleep(0.2)
    assert run["job_id"] == job_id
    assert run["state"]["life_cycle_state"] == "TERMINATED"
    assert run["state"]["result_state"] == "SUCCESS", run["state"]
    task_run_id = run["tasks"][0]["run_id"]
    output = json.loads(legacy_cli("runs", "get-output", "--run-id", str(task_run_id), "--version=2.1").stdout)
    assert output["notebook_output"]["result"] == "trained 42"

    unknown = legacy_cli("runs", "get", "--run-id", "42", "--version=2.1", check=False)
    assert unknown.returncode != 0 and "error_code" in unknown.stdout + unknown.stderr


# ---- MLflow ------------------------------------------------------------------------------


MLFLOW_SCRIPT = r"""
import json, sys
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

home = sys.argv[1]
client = MlflowClient()
out = {}

def code(fn):
    try:
        fn()
    except MlflowException as exc:
        return exc.error_code
    return None

name = home + "/dev-churn_model-experiment"
experiment_id = client.create_experiment(name, tags={"team": "ml"})
found = client.get_experiment_by_name(name)
out["created"] = [experiment_id, found.experiment_id, found.name, found.lifecycle_stage, found.tags.get("team")]
out["missing_is_none"] = client.get_experiment_by_name(home + "/nope") is None
out["duplicate"] = code(lambda: client.create_experiment(name))
out["relative"] = code(lambda: client.create_experiment("relative-experiment"))
out["no_parent"] = code(lambda: client.create_experiment(home + "/missing/exp"))
out["unknown_id"] = code(lambda: client.get_experiment("987654321"))
client.set_experiment_tag(experiment_id, "stage", "dev")
out["tag"] = client.get_experiment(experiment_id).tags.get("stage")
client.delete_experiment(experiment_id)
out["deleted"] = client.get_experiment(experiment_id).lifecycle_stage
out["active_names"] = [e.name for e in client.search_experiments()]
client.restore_experiment(experiment_id)
out["restored_names"] = [e.name for e in client.search_experiments(filter_string="name LIKE '%churn%'")]
print(json.dumps(out))
"""


def test_mlflow_client_experiments(mlflow_client, ws, w):
    home = f"/Users/{w.current_user.me().user_name}"
    out = mlflow_client(MLFLOW_SCRIPT.replace("sys.argv[1]", repr(home)))
    experiment_id = out["created"][0]
    assert out["created"] == [experiment_id, experiment_id, f"{home}/dev-churn_model-experiment", "active", "ml"]
    assert out["missing_is_none"] is True
    assert out["duplicate"] == "RESOURCE_ALREADY_EXISTS"
    assert out["relative"] == "INVALID_PARAMETER_VALUE"
    assert out["no_parent"] == "RESOURCE_DOES_NOT_EXIST"
    assert out["unknown_id"] == "RESOURCE_DOES_NOT_EXIST"
    assert out["tag"] == "dev"
    assert out["deleted"] == "deleted"
    assert out["active_names"] == []
    assert out["restored_names"] == [f"{home}/dev-churn_model-experiment"]
    # the same experiment, seen through databricks-sdk
    assert w.experiments.get_experiment(experiment_id).experiment.lifecycle_stage == "active"


def test_independent_clients_are_installed_with_the_test_extra():
    """The tools come from pyproject's test extra; a missing one must fail loudly, never skip."""
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    extra = re.search(r"^test = \[(.*?)^\]", pyproject, re.MULTILINE | re.DOTALL).group(1)
    assert re.search(r'"databricks-cli==0\.18\.', extra) and '"mlflow-skinny' in extra
    import databricks_cli  # noqa: F401
    import mlflow  # noqa: F401
