"""``stackci run-job -t TARGET --job KEY``: a job of the bundle as deployed to a target (a
post-deploy smoke test), found through the target's deployment state."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from itest_support import BUNDLE_ROOT, jobs_by_name

TRAIN = "staging-churn_model-model-training-job"


@pytest.fixture
def deployed(run_cli, env, project):
    result = run_cli(["deploy", "-t", "staging", "-p", str(project)], env=env)
    assert result.code == 0, result.stderr
    return result


def test_run_a_deployed_job_by_its_bundle_key(run_cli, w, env, project, deployed):
    job_id = jobs_by_name(w)[TRAIN].job_id
    result = run_cli(["run-job", "-t", "staging", "-p", str(project), "--job", "model_training_job"], env=env)
    assert result.code == 0, result.stderr
    assert result.outputs["result"] == "success"
    run = w.jobs.get_run(int(result.outputs["run-id"]))
    assert run.job_id == job_id and run.state.result_state.value == "SUCCESS"
    suite = ET.parse(result.outputs["junit-xml"]).getroot().find("testsuite")
    assert [c.get("name") for c in suite.iter("testcase")] == ["Train", "ModelValidation", "ModelDeployment"]
    assert f"{TRAIN} › ModelDeployment: TERMINATED SUCCESS" in result.stderr
    assert f"### ✅ Job {TRAIN}: success" in result.summary

    # without the state (moved away), the job is found by the name the bundle gives it
    w.workspace.delete(f"{BUNDLE_ROOT}/staging/state/deployment.json")
    again = run_cli(["run-job", "-t", "staging", "-p", str(project), "--job", "model_training_job"], env=env)
    assert again.code == 0, again.stderr
    assert w.jobs.get_run(int(again.outputs["run-id"])).job_id == job_id
    assert "is not in the deployment state" in again.stderr


def test_a_failing_task_of_a_bundle_job(run_cli, w, env, project, deployed):
    # the deployed job takes its threshold from its notebook parameters; a job parameter cannot change that,
    # so make the deployed job fail by deploying the failing variant
    bad = run_cli(["deploy", "-t", "staging", "-p", str(project), "--var", "validation_min_auc=1.5"], env=env)
    assert bad.code == 0, bad.stderr
    result = run_cli(["run-job", "-t", "staging", "-p", str(project), "--job", "model_training_job"], env=env)
    assert result.code == 1
    assert result.outputs["result"] == "failed"
    per_task = [e for e in result.errors() if e.properties.get("title") == f"{TRAIN} › ModelValidation failed"]
    assert len(per_task) == 1 and "is below the minimum 1.5000" in per_task[0].data


@pytest.mark.parametrize("args, needle", [
    (["-t", "staging", "--job", "nope"], "unknown job key 'nope' in target staging"),
    (["-t", "test", "--job", "model_training_job"], "job model_training_job of target test is not deployed"),
    (["--job-id", "1", "--job", "model_training_job"], "give exactly one of --job-id, --job-name and --job"),
])
def test_bad_bundle_job_input(run_cli, env, project, deployed, args, needle):
    result = run_cli(["run-job", "-p", str(project), *args], env=env)
    assert result.code == 2, result.stderr
    assert len(result.errors()) == 1 and needle in result.errors()[0].data
