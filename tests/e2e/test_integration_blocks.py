"""The integration-test block as users run it: the pull-request workflow
examples/github/workflows/ci.yml (unit tests, then validate/plan with the PR comment, then
the integration test) under act, and the Azure integration-test template under the agent
stand-in, all against a local workspace over real HTTP (read back with databricks-sdk).
The workspace host comes from the bundle targets; STACKCI_HOST redirects it."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from databricks.sdk.errors import NotFound

from azure_agent import Agent
from e2e_support import ROOT, example_agent
from hosting.fake_hosting import FakeHosting  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "project"
WORKFLOW = ROOT / "examples" / "github" / "workflows" / "ci.yml"
TEMPLATE = ROOT / "azure-pipelines" / "steps" / "integration-test.yml"
BUNDLE_ROOT = "/Workspace/Users/local-user@stackci.local/.bundle/churn_model"
GITHUB_TOKEN = "ghs_fakeTokenForTheLoopbackGitHub0002"
PR = {"number": 7, "pull_request": {"number": 7, "head": {"ref": "feature", "sha": "f" * 40,
                                                          "repo": {"full_name": "acme/churn"}},
                                    "base": {"ref": "main"}}}
#: the failing variant: ModelValidation refuses any model (an AUC above 1 is impossible)
FAILING = {"databricks.yml": (EXAMPLE / "databricks.yml").read_text().replace(
    'default: "0.7"', 'default: "1.5"')}






def nothing_left(w, target: str) -> bool:
    """No job at all, and no isolated copy folder left under the target's ``-ci`` folder."""
    if list(w.jobs.list()):
        return False
    try:
        return [o.path for o in w.workspace.list(f"{BUNDLE_ROOT}/{target}-ci")] == []
    except NotFound:
        return True


@pytest.mark.parametrize("failing", [False, True], ids=["passing", "failing"])
def test_pull_request_workflow(run_workflow, ws, w, failing):
    """passing: unit tests, then the staging and prod plans (two jobs, one PR comment) next to
    the integration test. failing: the prod plan's credentials are wrong and ModelValidation
    fails: the staging plan and the integration test still run, each with its own verdict."""
    assert FAILING["databricks.yml"] != (EXAMPLE / "databricks.yml").read_text()
    github = FakeHosting(token=GITHUB_TOKEN)     # the loopback GitHub for the plan comment
    assert github.repository == PR["pull_request"]["head"]["repo"]["full_name"]
    try:
        run = run_workflow(EXAMPLE, WORKFLOW, event="pull_request", payload=PR, files=FAILING if failing else None,
                           secrets={"DATABRICKS_CI_TOKEN": ws.token, "GITHUB_TOKEN": GITHUB_TOKEN,
                                    "DATABRICKS_TOKEN": "dapi-not-a-prod-token" if failing else ws.token},
                           env={"STACKCI_HOST": ws.url, "GITHUB_API_URL": github.github_url,
                                "GITHUB_REPOSITORY": github.repository})
    finally:
        github.close()
    comments = [c for number in sorted(github.comments) for c in github.comments[number]]
    assert ws.token not in run.log and GITHUB_TOKEN not in run.log, "secrets are masked"
    verdicts = run.job_results()
    assert verdicts["Unit tests"] == "succeeded" and verdicts["Validate and plan staging"] == "succeeded", \
        run.log[-5000:]
    assert run.log.index("[CI/Unit tests") < min(run.log.index("[CI/Validate and plan"),
                                                 run.log.index("[CI/Integration test"))
    assert len(comments) == 1 and comments[0]["body"].startswith("<!-- stackci:plan:churn_model -->")
    body = comments[0]["body"]
    assert "### Plan: `churn_model` → `staging`" in body
    out = run.step_outputs("Integration test")
    run_id = json.loads(out["run-ids"])["model_training_job"]
    run_of_copy = w.jobs.get_run(run_id)
    # the copy of the test target is named after the pull request and the workflow run
    assert re.fullmatch(r"\[ci pr7-\d+\] test-churn_model-model-training-job", run_of_copy.run_name)
    assert json.loads(out["run-urls"])["model_training_job"] == run_of_copy.run_page_url
    assert "model_training_job › ModelDeployment: " in run.log
    assert f"result={out['result']}" in run.log, "the if: always() Report step read the outputs"
    if not failing:
        assert run.code == 0 and verdicts == {"Unit tests": "succeeded", "Validate and plan staging": "succeeded",
                                              "Validate and plan prod": "succeeded",
                                              "Integration test": "succeeded"}, run.log[-5000:]
        assert "### Plan: `churn_model` → `prod`" in body, "both jobs wrote the one comment"
        assert out["result"] == "success"
        assert run_of_copy.state.result_state.value == "SUCCESS"
        assert run.annotations() == []
        assert "Integration test of test (pr7-" in run.log       # the step summary
    else:
        assert run.code != 0 and verdicts["Integration test"] == "failed"
        assert verdicts["Validate and plan prod"] == "failed"
        assert "`prod`" not in body, "the failed prod plan posted nothing"
        assert out["result"] == "failed"
        per_task = [a for a in run.annotations() if a.properties.get("title", "").endswith("› ModelValidation failed")]
        assert len(per_task) == 1 and "is below the minimum 1.5000" in per_task[0].data
        assert any("integration test of test failed" in a.data for a in run.annotations())
    assert "tore down the isolated copy" in run.log
    assert nothing_left(w, "test"), "the copy is removed, also after a failure"


@pytest.fixture
def agent_for(act_env, tmp_path, ws):
    def make(files=None) -> Agent:
        agent = example_agent(act_env, tmp_path / "agent", tmp_path / "home", EXAMPLE, files)
        # what the agent sets for a pull-request build (job attempt 1)
        agent.variables.update({"databricksToken": ws.token, "Build.BuildId": "314", "System.JobAttempt": "1",
                                "System.PullRequest.PullRequestId": "12",
                                "Build.SourceBranch": "refs/pull/12/merge"})
        return agent
    return make


@pytest.mark.parametrize("failing", [False, True], ids=["passing", "failing"])
def test_azure_integration_test_template(agent_for, ws, w, failing):
    agent = agent_for(FAILING if failing else None)
    steps = agent.expand(TEMPLATE, {"jobs": "model_training_job", "host": ws.url, "timeout": "5m",
                                    "databricksEnv": {"DATABRICKS_TOKEN": "$(databricksToken)"}})
    assert [s.get("name") for s in steps if "bash" in s] == ["stackciSetup", "integrationTest"]
    agent.run(steps)
    assert agent.failed is failing, agent.text()[-4000:]
    assert agent.output("integrationTest", "result") == ("failed" if failing else "success")
    run = w.jobs.get_run(json.loads(agent.output("integrationTest", "run_ids"))["model_training_job"])
    assert run.run_name == "[ci pr12-314] test-churn_model-model-training-job"
    junit = Path(agent.output("integrationTest", "junit_xml"))
    assert junit == agent.build_dir / "TestResults" / "stackci" / "integration-test.xml"
    assert agent.published == [junit], "PublishTestResults@2 ran, also after the failure"
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert sorted(cases) == ["ModelDeployment", "ModelValidation", "Train"]
    assert (cases["ModelValidation"].find("failure") is not None) is failing
    assert ws.token in agent.secrets          # masked with task.setsecret before anything printed it
    errors = [i for i in agent.issues if i.properties.get("type") == "error"]
    assert bool(errors) is failing
    if failing:
        assert any("is below the minimum 1.5000" in e.data for e in errors)
    assert "Integration test of test (pr12-314)" in agent.summaries[0].read_text()
    assert nothing_left(w, "test")


def test_gc_workflow_dry_run_uses_the_ci_principal(run_workflow, ws, w):
    """examples/github/workflows/gc.yml, "Run workflow" with a dry run: it reaches the test
    target's workspace with the CI principal's secret, lists nothing to remove, changes nothing."""
    run = run_workflow(EXAMPLE, ROOT / "examples" / "github" / "workflows" / "gc.yml", event="workflow_dispatch",
                       payload={"inputs": {"older-than": "1h", "dry-run": True}}, branch="main",
                       secrets={"DATABRICKS_CI_TOKEN": ws.token}, env={"STACKCI_HOST": ws.url})
    assert run.code == 0 and run.job_succeeded, run.log[-4000:]
    assert run.step_outputs()["removed"] == "0"
    assert "removed=0" in run.log and ws.token not in run.log
    assert list(w.jobs.list()) == []
