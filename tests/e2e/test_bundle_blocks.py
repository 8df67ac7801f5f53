"""The bundle blocks as users run them: the example workflows bundle-ci.yml, cd-staging.yml
and cd-prod.yml under act, and the validate / deploy Azure templates under the agent
stand-in, all against a local workspace over real HTTP (databricks-sdk reads back what
exists afterwards). The workspace host comes from the bundle targets; STACKCI_HOST
redirects it to the local workspace, as the actions document."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from databricks.sdk.errors import NotFound

from azure_agent import Agent
from e2e_support import ROOT, example_agent
from hosting.fake_hosting import FakeHosting  # type: ignore[import-not-found]

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "project"
WORKFLOWS = ROOT / "examples" / "github" / "workflows"
STAGING_ROOT = "/Workspace/Users/local-user@stackci.local/.bundle/churn_model/staging"
PROD_ROOT = "/Workspace/Shared/.bundle/churn_model/prod"
JOB_KEYS = ["batch_inference_job", "model_training_job"]






def workspace_files(w, root: str) -> dict[str, str]:
    """Every object under ``root`` (path relative to it -> object type), read through the SDK."""
    found, todo = {}, [root]
    while todo:
        folder = todo.pop()
        for obj in w.workspace.list(folder):
            if obj.object_type.value == "DIRECTORY":
                todo.append(obj.path)
            else:
                found[obj.path[len(root) + 1:]] = obj.object_type.value
    return found


def jobs_by_name(w) -> dict[str, object]:
    return {j.settings.name: j for j in w.jobs.list(expand_tasks=False)}


def exists(w, path: str) -> bool:
    try:
        w.workspace.get_status(path)
        return True
    except NotFound:
        return False


def push(branch: str) -> dict:
    return {"ref": f"refs/heads/{branch}", "repository": {"full_name": "acme/churn", "default_branch": "main"}}


# --------------------------------------------------------------------------- bundle-ci.yml
GITHUB_TOKEN = "ghs_fakeTokenForTheLoopbackGitHub0001"


@pytest.fixture
def hosting():
    """A loopback GitHub / Azure Repos (tests/hosting/fake_hosting.py) for the PR comments."""
    fake = FakeHosting(token=GITHUB_TOKEN)
    yield fake
    fake.close()


def sections(body: str) -> list[str]:
    """The targets of the plan comment's sections, in order (each opened by its hidden marker)."""
    return [json.loads(m.group(1).encode().decode("unicode_escape"))["target"]
            for m in re.finditer(r"<!-- stackci:plan-target (\{[^<>]*\}) -->", body)]


def test_bundle_ci_plans_staging_and_prod_in_two_jobs_into_one_comment(run_workflow, ws, w, tmp_path, hosting):
    wf = WORKFLOWS / "bundle-ci.yml"
    pr = {"number": 7, "pull_request": {"number": 7, "head": {"ref": "feature", "sha": "f" * 40,
                                                              "repo": {"full_name": hosting.repository}},
                                        "base": {"ref": "main"}}}
    common = dict(event="pull_request", payload=pr, branch="feature",
                  secrets={"DATABRICKS_CI_TOKEN": ws.token, "DATABRICKS_TOKEN": ws.token, "GITHUB_TOKEN": GITHUB_TOKEN},
                  env={"STACKCI_HOST": ws.url, "GITHUB_API_URL": hosting.github_url,
                       "GITHUB_REPOSITORY": hosting.repository})
    first = run_workflow(EXAMPLE, wf, **common)
    assert first.code == 0, first.log[-4000:]
    assert first.job_results() == {"Validate and plan staging": "succeeded", "Validate and plan prod": "succeeded"}
    assert ws.token not in first.log and GITHUB_TOKEN not in first.log
    staging = first.step_outputs("Validate and plan staging")
    prod = first.step_outputs("Validate and plan prod")
    assert json.loads(staging["plans"]) == {"staging": json.loads(staging["plans"])["staging"]}
    assert json.loads(prod["plans"])["prod"]["create"] == json.loads(staging["plans"])["staging"]["create"] == 4
    [comment] = hosting.comments[7]         # the fake answers 401 to any other token than the job's
    assert staging["comment-url"] == prod["comment-url"] == comment["html_url"]
    body = comment["body"]
    assert body.startswith("<!-- stackci:plan:churn_model -->")
    assert sorted(sections(body)) == ["prod", "staging"], "each job kept the other's section"
    for target in ("staging", "prod"):
        assert f"### Plan: `churn_model` → `{target}`" in body
    assert "staging-churn_model-model-training-job" in body and "prod-churn_model-model-training-job" in body
    assert jobs_by_name(w) == {}, "planning changes nothing"

    # staging gets deployed (the merge of another PR); the next push updates the same comment
    env = {k: v for k, v in os.environ.items()     # a plain shell: not this CI's job, whatever runs the tests
           if not k.startswith(("GITHUB_", "RUNNER_", "STACKCI_", "DATABRICKS_", "BUILD_", "SYSTEM_", "TF_"))}
    env.update(DATABRICKS_TOKEN=ws.token, DATABRICKS_AUTH_TYPE="pat", STACKCI_HOST=ws.url)
    subprocess.run([sys.executable, "-m", "stackci", "deploy", "-t", "staging", "--project",
                    str(tmp_path / "repo")], env=env, check=True, capture_output=True)   # run_workflow's repo
    second = run_workflow(EXAMPLE, wf, **common)
    assert second.code == 0, second.log[-4000:]
    plans = json.loads(second.step_outputs("Validate and plan staging")["plans"])
    assert (plans["staging"]["create"], plans["staging"]["unchanged"]) == (0, 4)
    [updated] = hosting.comments[7]
    assert updated["id"] == comment["id"]
    assert updated["body"] != body and sorted(sections(updated["body"])) == ["prod", "staging"]
    assert "No resource changes." in updated["body"]       # staging's table now

    # a fork's pull request gets no secrets: both jobs are skipped, nothing is posted
    fork = {**pr, "pull_request": {**pr["pull_request"], "head": {**pr["pull_request"]["head"],
                                                                   "repo": {"full_name": "stranger/churn"}}}}
    skipped = run_workflow(EXAMPLE, wf, **{**common, "payload": fork})
    assert skipped.code == 0 and skipped.job_results() == {}, skipped.log[-3000:]
    assert [c["id"] for c in hosting.comments[7]] == [comment["id"]]


# --------------------------------------------------------------------------- cd-staging.yml
def test_cd_staging_deploys_then_redeploys_nothing(run_workflow, ws, w):
    wf = WORKFLOWS / "cd-staging.yml"
    common = dict(event="push", payload=push("main"), branch="main", secrets={"DATABRICKS_TOKEN": ws.token},
                  env={"STACKCI_HOST": ws.url})
    first = run_workflow(EXAMPLE, wf, **common)
    assert first.code == 0 and first.job_succeeded, first.log[-4000:]
    assert ws.token not in first.log, "the token must be masked"
    out = first.step_outputs()
    jobs = json.loads(out["jobs"])
    assert sorted(jobs) == JOB_KEYS
    assert (out["created"], out["changed"], out["deleted"], out["unchanged"]) == ("4", "0", "0", "0")
    # what the workspace holds now: the files, notebooks as notebooks, the jobs, the experiment
    files = workspace_files(w, f"{STAGING_ROOT}/files")
    assert int(out["files-uploaded"]) == len(files) >= 20
    assert files["databricks.yml"] == "FILE" and files["churn/training.py"] == "FILE"
    assert files["training/notebooks/Train"] == "NOTEBOOK"
    by_name = jobs_by_name(w)
    training = by_name["staging-churn_model-model-training-job"]
    assert jobs["model_training_job"]["id"] == training.job_id
    assert jobs["model_training_job"]["url"].startswith(ws.url) and str(training.job_id) in jobs["model_training_job"]["url"]
    settings = w.jobs.get(training.job_id).settings
    assert settings.tags["stackci-branch"] == "main"
    assert settings.deployment.metadata_file_path == f"{STAGING_ROOT}/state/deployment.json"
    assert "staging-churn_model-batch-inference-job" in by_name and len(by_name) == 2
    assert w.experiments.get_by_name("/Shared/staging-churn_model-experiment").experiment
    assert "created=4 changed=0 deleted=0 unchanged=0" in first.log     # the Report step read the outputs
    assert first.annotations() == []

    second = run_workflow(EXAMPLE, wf, **common)
    assert second.code == 0 and second.job_succeeded, second.log[-4000:]
    out = second.step_outputs()
    assert (out["created"], out["changed"], out["deleted"], out["unchanged"]) == ("0", "0", "0", "4")
    assert out["files-uploaded"] == "0" and out["files-deleted"] == "0"
    assert json.loads(out["jobs"]) == jobs
    assert {n: j.job_id for n, j in jobs_by_name(w).items()} == {n: j.job_id for n, j in by_name.items()}


# --------------------------------------------------------------------------- cd-prod.yml
SMOKE_FILES = {
    "resources/smoke-resource.yml": (
        "resources:\n  jobs:\n    smoke_job:\n      name: ${bundle.target}-churn_model-smoke\n"
        "      tasks:\n        - task_key: check\n          spark_python_task:\n"
        "            python_file: ../smoke/check.py\n            parameters: [\"${bundle.target}\"]\n"),
    "smoke/check.py": "import sys\nassert sys.argv[1:] == ['prod'], sys.argv\nprint('prod answers')\n",
}


def test_cd_prod_deploys_only_from_a_release_branch(run_workflow, ws, w):
    wf = WORKFLOWS / "cd-prod.yml"
    common = dict(secrets={"DATABRICKS_TOKEN": ws.token}, env={"STACKCI_HOST": ws.url})
    # "Run workflow" from a feature branch: require-branch refuses, nothing reaches the workspace
    refused = run_workflow(EXAMPLE, wf, event="workflow_dispatch", branch="feature",
                           payload={"ref": "refs/heads/feature", "inputs": {}}, **common)
    assert refused.code != 0 and not refused.job_succeeded, refused.log[-5000:]
    errors = refused.annotations()
    assert len(errors) == 1, errors
    assert errors[0].data.startswith("refusing to deploy target 'prod' from branch 'feature' (from GITHUB_REF)")
    assert "release/*" in errors[0].data and "\n" not in errors[0].data
    assert "Traceback" not in refused.log
    assert not exists(w, PROD_ROOT) and jobs_by_name(w) == {}

    # a prerelease branch: its push does not trigger the workflow, and a manual run is refused
    # before the checkout or any deploy
    pushed = run_workflow(EXAMPLE, wf, event="push", branch="release/v0.1.0-rc.1",
                          payload=push("release/v0.1.0-rc.1"), **common)
    assert "Main OWNER/stackci/actions/deploy@v1" not in pushed.log and not pushed.job_succeeded, pushed.log[-3000:]
    prerelease = run_workflow(EXAMPLE, wf, event="workflow_dispatch", branch="release/v0.1.0-rc.1",
                              payload={"ref": "refs/heads/release/v0.1.0-rc.1", "inputs": {}}, **common)
    assert prerelease.code != 0 and not prerelease.job_succeeded
    assert len(prerelease.annotations()) == 1, prerelease.log[-3000:]
    [error] = prerelease.annotations()
    assert error.data.startswith("this is a prerelease branch") and "not deployed to prod" in error.data
    assert "Main OWNER/stackci/actions/deploy@v1" not in prerelease.log
    assert not exists(w, PROD_ROOT) and jobs_by_name(w) == {}

    # the push of the release branch (what cut-release does) deploys prod, then runs the smoke job
    deployed = run_workflow(EXAMPLE, wf, event="push", branch="release/v0.1.0", payload=push("release/v0.1.0"),
                            files=SMOKE_FILES, variables={"PROD_SMOKE_JOB": "smoke_job"}, **common)
    assert deployed.code == 0 and deployed.job_succeeded, deployed.log[-4000:]
    out = deployed.step_outputs()
    assert (out["created"], out["changed"], out["deleted"], out["unchanged"]) == ("5", "0", "0", "0")
    jobs = json.loads(out["jobs"])
    by_name = jobs_by_name(w)
    assert sorted(by_name) == ["prod-churn_model-batch-inference-job", "prod-churn_model-model-training-job",
                               "prod-churn_model-smoke"]
    # the smoke step found the job by its bundle key in prod's deployment state and ran it
    assert out["result"] == "success" and "prod-churn_model-smoke › check: TERMINATED SUCCESS" in deployed.log
    [run] = w.jobs.list_runs(job_id=jobs["smoke_job"]["id"])
    assert str(run.run_id) == out["run-id"]
    training = w.jobs.get(jobs["model_training_job"]["id"]).settings
    assert training.name == "prod-churn_model-model-training-job"
    assert training.tags["stackci-branch"] == "release/v0.1.0"
    files = workspace_files(w, f"{PROD_ROOT}/files")
    assert int(out["files-uploaded"]) == len(files) and files["validation/notebooks/ModelValidation"] == "NOTEBOOK"


# --------------------------------------------------------------------------- inputs are data
INJECTION = """\
name: injection
on: workflow_dispatch
permissions: {}
jobs:
  evil:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1
      - id: validate
        continue-on-error: true
        uses: OWNER/stackci/actions/validate@v1
        with:
          targets: ${{ github.event.inputs.targets }}
          vars: ${{ github.event.inputs.newline }}
      - id: deploy
        continue-on-error: true
        uses: OWNER/stackci/actions/deploy@v1
        with:
          target: ${{ github.event.inputs.quote }}
          require-branch: ${{ github.event.inputs.newline }}
"""


def test_action_inputs_cannot_inject_commands_or_outputs(run_workflow, tmp_path):
    marker = tmp_path / "pwned"
    inputs = {"targets": f"$(touch {marker}-1) `touch {marker}-2` *",
              "quote": f'"; touch {marker}-3 #',
              "newline": "x=1\n::error::injected\nhas-changes=true"}
    run = run_workflow(EXAMPLE, INJECTION, event="workflow_dispatch", payload={"inputs": inputs})
    assert "Main OWNER/stackci/actions/validate@v1" in run.log and "Main OWNER/stackci/actions/deploy@v1" in run.log
    assert list(tmp_path.glob("pwned*")) == []
    outputs = run.step_outputs()
    assert outputs.get("has-changes", "") == "" and "x" not in outputs   # the validate step failed, set nothing
    messages = [e.data for e in run.annotations()]
    assert "injected" not in messages
    # every word of targets was validated as a target name, none ran and * matched no file
    for word in ("$(touch", f"{marker}-1)", "`touch", f"{marker}-2`", "*"):
        assert any(f"unknown target {word!r}" in m for m in messages), (word, messages)
    assert any(f"unknown target {inputs['quote']!r}" in m for m in messages), messages


# --------------------------------------------------------------------------- Azure templates
@pytest.fixture
def agent_for(act_env, tmp_path, ws):
    """An agent whose sources are a copy of the example project, with the local workspace's
    token in a secret variable that databricksEnv maps into the steps."""
    made = []

    def make(files=None, branch="main") -> Agent:
        agent = example_agent(act_env, tmp_path / f"agent{len(made)}", tmp_path / "home", EXAMPLE, files)
        agent.variables.update({"databricksToken": ws.token, "Build.SourceBranch": f"refs/heads/{branch}",
                                "Build.SourceVersion": "0" * 40, "Build.Reason": "IndividualCI"})
        agent.secret_variables.add("databricksToken")
        made.append(agent)
        return agent
    return make


def test_azure_deploy_template(agent_for, ws, w):
    template = ROOT / "azure-pipelines" / "steps" / "deploy.yml"
    creds = {"DATABRICKS_TOKEN": "$(databricksToken)"}
    # prod from a feature branch: requireBranch refuses with one error line, nothing deployed
    refused = agent_for(branch="feature")
    refused.run(refused.expand(template, {"target": "prod", "host": ws.url, "requireBranch": "release/* release",
                                          "databricksEnv": creds}))
    assert refused.failed
    errors = [i for i in refused.issues if i.properties.get("type") == "error"]
    assert len(errors) == 1 and errors[0].data.startswith(
        "stackci: bad input: refusing to deploy target 'prod' from branch 'feature' (from BUILD_SOURCEBRANCH)"), errors
    assert refused.output("deploy", "created") is None
    assert not exists(w, PROD_ROOT) and jobs_by_name(w) == {}

    agent = agent_for(branch="main")
    steps = agent.expand(template, {"target": "staging", "host": ws.url, "databricksEnv": creds,
                                    "vars": "catalog_name=qa\nmodel_name=churn_qa"})
    assert [s.get("name") for s in steps if "bash" in s] == ["stackciSetup", "deploy"]
    agent.run(steps)
    assert not agent.failed, agent.text()[-4000:]
    assert ws.token in agent.secrets          # masked with task.setsecret before anything printed it
    assert ws.token not in agent.text().replace(f"##vso[task.setsecret]{ws.token}", "")
    outputs = {n: agent.output("deploy", n) for n in ("created", "changed", "deleted", "unchanged",
                                                        "files_uploaded", "files_deleted")}
    files = workspace_files(w, f"{STAGING_ROOT}/files")
    assert outputs == {"created": "4", "changed": "0", "deleted": "0", "unchanged": "0",
                       "files_uploaded": str(len(files)), "files_deleted": "0"}
    jobs = json.loads(agent.output("deploy", "jobs"))
    assert {j.settings.name: j.job_id for j in jobs_by_name(w).values()} == {
        "staging-churn_model-batch-inference-job": jobs["batch_inference_job"]["id"],
        "staging-churn_model-model-training-job": jobs["model_training_job"]["id"]}
    assert w.jobs.get(jobs["model_training_job"]["id"]).settings.tags["stackci-branch"] == "main"
    assert w.registered_models.get("qa.churn_model.churn_qa").name == "churn_qa"   # both vars arrived
    summary = agent.summaries[0].read_text()
    assert "Deployed" in summary and "4 created, 0 changed, 0 deleted, 0 unchanged" in summary


# resources/batch-inference-workflow-resource.yml: "- ${bundle.target}" under --env
BROKEN_LINE = (EXAMPLE / "resources/batch-inference-workflow-resource.yml").read_text().splitlines().index(
    "              - ${bundle.target}") + 1


def test_azure_validate_template_plans_or_fails_at_the_broken_line(agent_for, ws, w, hosting):
    template = ROOT / "azure-pipelines" / "steps" / "validate.yml"
    creds = {"DATABRICKS_TOKEN": "$(databricksToken)"}
    # a pull-request build on Azure Repos: the plan thread is written with System.AccessToken,
    # which reaches the step only through the template's env: (it is a secret variable)
    agent = agent_for()
    agent.variables.update({"System.AccessToken": hosting.azure_token, "System.CollectionUri": hosting.azure_url,
                            "System.TeamProject": "ML Ops", "Build.Repository.Id": "repo-id",
                            "Build.Repository.Provider": "TfsGit", "System.PullRequest.PullRequestId": "42",
                            "Build.Reason": "PullRequest"})
    agent.run(agent.expand(template, {"host": ws.url, "comment": True, "databricksEnv": creds}))
    assert not agent.failed, agent.text()[-4000:]
    assert agent.output("validate", "has_changes") == "true"
    plans = json.loads(agent.output("validate", "plans"))
    assert sorted(plans) == ["prod", "staging"] and plans["prod"]["create"] == 4
    assert [i for i in agent.issues if i.properties.get("type") == "error"] == []
    [thread] = hosting.threads[42]
    content = thread["comments"][0]["content"]
    assert content.startswith("<!-- stackci:plan:churn_model -->")
    assert "### Plan: `churn_model` → `staging`" in content and "### Plan: `churn_model` → `prod`" in content
    assert agent.output("validate", "comment_url").endswith(f"pullrequest/42?discussionId={thread['id']}")
    assert hosting.azure_token in agent.secrets
    assert jobs_by_name(w) == {}, "validating and planning change nothing"

    # a broken reference: every target is validated, each error at the file and line, no plan
    rel = "resources/batch-inference-workflow-resource.yml"
    lines = (EXAMPLE / rel).read_text().splitlines()
    assert lines[BROKEN_LINE - 1] == "              - ${bundle.target}"
    lines[BROKEN_LINE - 1] = "              - ${var.enviroment}"
    agent = agent_for({rel: "\n".join(lines) + "\n"})
    steps = agent.expand(template, {"host": ws.url, "databricksEnv": creds})
    assert [s.get("name") for s in steps if "bash" in s] == ["stackciSetup", "validateTargets", "validate"]
    agent.run(steps)
    assert agent.failed
    errors = [i for i in agent.issues if i.properties.get("type") == "error"]
    assert len(errors) == 2, errors
    for error in errors:
        assert error.properties["sourcepath"] == rel and error.properties["linenumber"] == str(BROKEN_LINE)
        assert "undefined variable 'enviroment'" in error.data and "declare it under 'variables:'" in error.data
        assert "\n" not in error.data
    assert "Traceback" not in agent.text()
    assert [name for name, _ in agent.log] == ["stackciSetup", "validateTargets"]   # no plan after a failure
    assert agent.output("validate", "has_changes") is None
    assert jobs_by_name(w) == {} and not exists(w, STAGING_ROOT)
