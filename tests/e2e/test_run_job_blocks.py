"""The run-job block as users run it: the GitHub action under act and the Azure template
under the agent stand-in, both against a local workspace over real HTTP."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat

from azure_agent import Agent
from e2e_support import ROOT

pytestmark = pytest.mark.e2e

WORKFLOW = """\
name: smoke
on: workflow_dispatch
permissions:
  contents: read
jobs:
  smoke:
    runs-on: ubuntu-latest
    env:
      DATABRICKS_HOST: HOST_PLACEHOLDER
      DATABRICKS_TOKEN: ${{ secrets.DATABRICKS_TOKEN }}
    steps:
      - id: smoke
        uses: OWNER/stackci/actions/run-job@v1
        with:
          job-name: JOB_PLACEHOLDER
          job-params: |
            env=staging
            note=hello world
          timeout: 2m
      - if: always()
        env:
          RESULT: ${{ steps.smoke.outputs.result }}
          RUN_ID: ${{ steps.smoke.outputs.run-id }}
          JUNIT: ${{ steps.smoke.outputs.junit-xml }}
        run: echo "result=$RESULT run=$RUN_ID junit=$JUNIT"
"""






def make_job(w, name: str, fail: bool) -> int:
    w.workspace.mkdirs("/Workspace/Shared/smoke")
    body = ("import sys\nprint('params', sys.argv[1:])\n"
            "assert sys.argv[1:] == ['staging', 'hello world'], sys.argv\n")
    if fail:
        body += "raise RuntimeError('model endpoint returned 503')\n"
    w.workspace.upload("/Workspace/Shared/smoke/check.py", io.BytesIO(body.encode()), format=ImportFormat.AUTO,
                       overwrite=True)
    task = jobs.Task(task_key="check", spark_python_task=jobs.SparkPythonTask(
        python_file="/Workspace/Shared/smoke/check.py",
        parameters=["{{job.parameters.env}}", "{{job.parameters.note}}"]))
    return w.jobs.create(name=name, tasks=[task], parameters=[
        jobs.JobParameterDefinition(name="env", default="dev"),
        jobs.JobParameterDefinition(name="note", default="")]).job_id


@pytest.mark.parametrize("fail", [False, True], ids=["passing", "failing"])
def test_github_action(run_workflow, ws, w, fail, tmp_path):
    make_job(w, "churn smoke", fail)
    workflow = WORKFLOW.replace("HOST_PLACEHOLDER", ws.url).replace("JOB_PLACEHOLDER", "churn smoke")
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("smoke\n")
    run = run_workflow(project, workflow, event="workflow_dispatch", payload={"inputs": {}},
                       secrets={"DATABRICKS_TOKEN": ws.token})
    assert ws.token not in run.log, "the token must be masked"
    outputs = run.step_outputs()
    if not fail:
        assert run.code == 0 and run.job_succeeded, run.log[-3000:]
        assert outputs["result"] == "success"
        assert run.annotations() == []
    else:
        assert run.code != 0 and not run.job_succeeded
        assert outputs["result"] == "failed"
        per_task = [a for a in run.annotations() if a.properties.get("title") == "churn smoke › check failed"]
        assert len(per_task) == 1 and "model endpoint returned 503" in per_task[0].data
    assert f"run={outputs['run-id']}" in run.log       # the if: always() step read the outputs
    assert "churn smoke › check: TERMINATED" in run.log


@pytest.mark.parametrize("fail", [False, True], ids=["passing", "failing"])
def test_azure_template(act_env, ws, w, fail, tmp_path):
    job_id = make_job(w, "churn smoke", fail)
    build = tmp_path / "agent"
    (build / "s").mkdir(parents=True)
    build.joinpath("stackci").symlink_to(act_env["lib"], target_is_directory=True)
    agent = Agent(build, {"stackci": act_env["lib"]},
                  {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
                   "STACKCI_TOOLKIT_DIR": str(act_env["toolkit"])})
    agent.variables["databricksToken"] = ws.token
    steps = agent.expand(ROOT / "azure-pipelines" / "steps" / "run-job.yml", {
        "jobId": str(job_id), "jobParams": "env=staging\nnote=hello world",
        "databricksEnv": {"DATABRICKS_HOST": ws.url, "DATABRICKS_TOKEN": "$(databricksToken)"}})
    agent.run(steps)
    assert agent.failed is fail, agent.text()[-3000:]
    assert agent.output("runJob", "result") == ("failed" if fail else "success")
    junit = Path(agent.output("runJob", "junit_xml"))
    assert agent.published == [junit]
    case = ET.parse(junit).getroot().find("testsuite").find("testcase")
    assert case.get("name") == "check"
    assert (case.find("failure") is not None) is fail
    assert ws.token in agent.secrets          # masked with task.setsecret before anything printed it
    errors = [i for i in agent.issues if i.properties.get("type") == "error"]
    assert bool(errors) is fail


def test_azure_template_runs_a_bundle_job_by_key(act_env, ws, w, tmp_path):
    """run-job.yml with job + target: the job of the target's deployment (a post-deploy smoke test)."""
    import os
    import shutil
    import subprocess
    import sys

    build = tmp_path / "agent"
    shutil.copytree(ROOT / "examples" / "project", build / "s",
                    ignore=shutil.ignore_patterns(".stackci", "__pycache__", ".pytest_cache"))
    env = {k: v for k, v in os.environ.items()     # a plain shell: not the CI job that may run these tests
           if not k.startswith(("GITHUB_", "RUNNER_", "STACKCI_", "DATABRICKS_", "BUILD_", "SYSTEM_", "TF_"))}
    env.update(DATABRICKS_TOKEN=ws.token, DATABRICKS_AUTH_TYPE="pat", STACKCI_HOST=ws.url)
    subprocess.run([sys.executable, "-m", "stackci", "deploy", "-t", "staging", "-p", str(build / "s")], env=env,
                   check=True, capture_output=True)
    job_id = {j.settings.name: j.job_id for j in w.jobs.list()}["staging-churn_model-model-training-job"]
    build.joinpath("stackci").symlink_to(act_env["lib"], target_is_directory=True)
    agent = Agent(build, {"stackci": act_env["lib"]},
                  {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
                   "STACKCI_TOOLKIT_DIR": str(act_env["toolkit"])})
    agent.variables["databricksToken"] = ws.token
    agent.run(agent.expand(ROOT / "azure-pipelines" / "steps" / "run-job.yml", {
        "target": "staging", "job": "model_training_job", "host": ws.url,
        "databricksEnv": {"DATABRICKS_TOKEN": "$(databricksToken)"}}))
    assert not agent.failed, agent.text()[-3000:]
    assert agent.output("runJob", "result") == "success"
    assert w.jobs.get_run(int(agent.output("runJob", "run_id"))).job_id == job_id
    cases = [c.get("name") for c in ET.parse(agent.output("runJob", "junit_xml")).getroot().iter("testcase")]
    assert cases == ["Train", "ModelValidation", "ModelDeployment"]
