"""A cancelled or timed-out job reaches stackci itself.

GitHub's runner and the Azure agent signal only the process they started for the step (the
step's bash), not its children: SIGINT, then SIGTERM 7.5 s later, then a kill. A block's
script therefore ``exec``s stackci, so the signal lands in stackci, which stops, releases the
deployment lock (or cancels its runs) and exits 130. Without the ``exec`` the deploy would
carry on unseen and be killed half-way, or leave its lock held.

The GitHub steps run here exactly as the runner runs a composite action's ``run:`` (a script
file under ``bash --noprofile --norc -e -o pipefail``, the step's ``env:`` resolved from the
inputs); the Azure templates run under the agent stand-in, which cancels the same way.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from azure_agent import Agent
from e2e_support import ROOT
from grammar import parse_github_log
from workspace_views import tree

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "project"
STAGING = "/Workspace/Users/local-user@stackci.local/.bundle/churn_model/staging"
STATE = f"{STAGING}/state"
LOCK = f"{STATE}/deploy.lock"
#: every write of a deploy answers 300 ms late, so a deploy holds its lock for seconds
SLOW_WRITES = {"rate": 1.0, "kinds": ["latency"], "latency_ms": 300,
               "path_regex": r"^/api/2\.[0-2]/(workspace/import|workspace-files/|jobs/(create|reset))"}
_EXPR = re.compile(r"^\$\{\{\s*(.*?)\s*\}\}$")


def uploading(w) -> bool:
    """The deploy holds its lock (taken and confirmed) and is uploading the bundle's files."""
    return LOCK in tree(w, STATE) and any(kind == "FILE" for kind in tree(w, f"{STAGING}/files").values())


# --------------------------------------------------------------------------- a composite action's step
def resolve(value: str, contexts: dict) -> str:
    """``${{ a.b }}`` and ``${{ a.b || c.d }}`` over ``contexts``; anything else is refused."""
    m = _EXPR.match(str(value))
    if not m:
        assert "${{" not in str(value), value
        return str(value)
    for alternative in m.group(1).split("||"):
        parts = alternative.strip().split(".")
        assert all(re.fullmatch(r"[A-Za-z_][\w-]*", p) for p in parts), f"unsupported expression {value!r}"
        found = contexts
        for part in parts:
            found = found.get(part, "") if isinstance(found, dict) else ""
        if found:
            return str(found)
    return ""


def github_step(action: str, step_id: str, inputs: dict, outputs: dict, env: dict, cwd: Path):
    """Start the ``run:`` of step ``step_id`` of ``actions/<action>`` as the runner would."""
    doc = yaml.safe_load((ROOT / "actions" / action / "action.yml").read_text())
    step = next(s for s in doc["runs"]["steps"] if s.get("id") == step_id)
    given = {name: str(inputs.get(name, spec.get("default", ""))) for name, spec in doc["inputs"].items()}
    contexts = {"inputs": given, "steps": {k: {"outputs": v} for k, v in outputs.items()}, "env": env}
    step_env = {**env, **{k: resolve(v, contexts) for k, v in (step.get("env") or {}).items()}}
    script = cwd.parent / f"{action}-{step_id}.sh"
    script.write_text(step["run"])
    return subprocess.Popen(["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", str(script)], cwd=cwd,
                            env=step_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def plain_env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "RUNNER_", "STACKCI_", "DATABRICKS_", "BUILD_", "SYSTEM_", "TF_"))}
    env.update(extra)
    return env


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.02)


@pytest.fixture
def project(tmp_path) -> Path:
    dest = tmp_path / "work" / "project"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".stackci", "__pycache__", ".pytest_cache"))
    return dest


def test_a_cancelled_github_deploy_releases_its_lock(act_env, ws, w, tmp_path, project):
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    env = plain_env(tmp_path, GITHUB_ACTIONS="true", GITHUB_REF="refs/heads/main", GITHUB_WORKSPACE=str(project),
                    GITHUB_OUTPUT=str(tmp_path / "output"), GITHUB_STEP_SUMMARY=str(tmp_path / "summary"),
                    RUNNER_TEMP=str(runner_temp), STACKCI_TOOLKIT_DIR=str(act_env["toolkit"]),
                    STACKCI_HOST=ws.url, DATABRICKS_TOKEN=ws.token)
    installed = subprocess.run(["bash", str(act_env["lib"] / "scripts" / "install-toolkit.sh")], env=env,
                               capture_output=True, text=True, check=True)
    exe = re.search(r"^executable=(.*)$", (tmp_path / "output").read_text(), re.M).group(1)
    assert "reusing stackci" in installed.stderr
    ws.set_faults(SLOW_WRITES)
    step = github_step("deploy", "deploy", {"target": "staging"}, {"install": {"executable": exe}}, env, project)
    wait_for(lambda: step.poll() is not None or uploading(w), "the deploy take its lock and upload")
    assert step.poll() is None, step.communicate()
    step.send_signal(signal.SIGINT)          # what the runner does on a cancel: the step's process only
    out, err = step.communicate(timeout=60)
    ws.set_faults(None)
    assert step.returncode == 130, err[-3000:]
    [error] = [c for c in parse_github_log(out + err) if c.name == "error"]
    assert error.properties["title"] == "stackci: interrupted" and "SIGINT" in error.data
    assert "4 created" not in err                       # it stopped part-way
    assert LOCK not in tree(w, STATE), "the lock is released"


@pytest.fixture
def agent(act_env, tmp_path, project) -> Agent:
    build = tmp_path / "agent"
    shutil.copytree(project, build / "s")
    (build / "stackci").symlink_to(act_env["lib"], target_is_directory=True)
    made = Agent(build, {"stackci": act_env["lib"]},
                 {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
                  "STACKCI_TOOLKIT_DIR": str(act_env["toolkit"])})
    made.variables.update({"Build.SourceBranch": "refs/heads/main", "Build.SourceVersion": "0" * 40,
                           "Build.Reason": "IndividualCI"})
    return made


def test_a_cancelled_azure_deploy_releases_its_lock(agent, ws, w):
    agent.variables["databricksToken"] = ws.token
    agent.secret_variables.add("databricksToken")
    steps = agent.expand(ROOT / "azure-pipelines" / "steps" / "deploy.yml", {
        "target": "staging", "host": ws.url, "databricksEnv": {"DATABRICKS_TOKEN": "$(databricksToken)"}})
    ws.set_faults(SLOW_WRITES)
    agent.cancel_when = lambda: uploading(w)
    agent.run(steps)
    ws.set_faults(None)
    assert agent.canceled, agent.text()[-3000:]
    assert agent.exit_codes["deploy"] == 130, agent.text()[-3000:]
    assert agent.output("deploy", "created") is None    # it stopped part-way
    assert LOCK not in tree(w, STATE), "the lock is released"


def test_a_cancelled_azure_smoke_run_is_cancelled_and_still_published(agent, ws, w):
    """run-job.yml: the cancel reaches stackci, which cancels the Databricks run; the
    PublishTestResults@2 step still runs (condition: always())."""
    from databricks.sdk.service import jobs
    from databricks.sdk.service.workspace import ImportFormat

    w.workspace.mkdirs("/Workspace/Shared/smoke")
    w.workspace.upload("/Workspace/Shared/smoke/slow.py", io.BytesIO(b"import time\ntime.sleep(120)\n"),
                       format=ImportFormat.AUTO, overwrite=True)
    job_id = w.jobs.create(name="slow smoke", tasks=[jobs.Task(
        task_key="wait", spark_python_task=jobs.SparkPythonTask(python_file="/Workspace/Shared/smoke/slow.py"))]).job_id
    agent.variables["databricksToken"] = ws.token
    steps = agent.expand(ROOT / "azure-pipelines" / "steps" / "run-job.yml", {
        "jobId": str(job_id), "databricksEnv": {"DATABRICKS_HOST": ws.url, "DATABRICKS_TOKEN": "$(databricksToken)"}})

    def running() -> bool:
        return any(r.state.life_cycle_state.value == "RUNNING" for r in w.jobs.list_runs(job_id=job_id))
    agent.cancel_when = running
    agent.run(steps)
    assert agent.canceled and agent.exit_codes["runJob"] == 130, agent.text()[-3000:]
    assert "interrupted, cancelling run" in agent.text()
    [run] = w.jobs.list_runs(job_id=job_id)
    assert run.state.result_state.value == "CANCELED"
    assert agent.ran[-1] == "PublishTestResults@2", agent.ran
