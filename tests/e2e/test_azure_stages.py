"""azure-pipelines/stages/mlops-stacks.yml through examples/azure-pipelines/azure-pipelines.yml:
which stages, jobs and steps a pull-request, main, manual-release and release-branch build
get, and the main and release builds' jobs run by the agent stand-in against a local
workspace (OAuth M2M credentials mapped the way the example maps them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from azure_agent import _FULL, _PART, Agent, Expression, Unsupported
from e2e_support import ROOT

pytestmark = pytest.mark.e2e

PIPELINE = ROOT / "examples" / "azure-pipelines" / "azure-pipelines.yml"
STAGES = ROOT / "azure-pipelines" / "stages" / "mlops-stacks.yml"
EXAMPLE = ROOT / "examples" / "project"
CLIENT_ID, CLIENT_SECRET = "ci-service-principal", "s3cret-of-the-ci-sp"


# --------------------------------------------------------------------------- the stand-in, for pipelines
class PipelineAgent(Agent):
    """The agent stand-in plus what a whole pipeline needs: runtime parameters, ``extends``,
    stages and jobs, and ``${{ if <expression> }}`` over parameters and predefined variables,
    in lists and in mappings. Step templates are then expanded by :class:`Agent`."""

    def evaluate(self, node, scope):
        if isinstance(node, str):
            full = _FULL.match(node)
            if full and "${{" not in full.group(1):
                return Expression(full.group(1), scope).value()
            return _PART.sub(lambda m: Expression._str(Expression(m.group(1), scope).value()), node)
        if isinstance(node, list):
            out = []
            for item in node:
                if isinstance(item, dict) and len(item) == 1 and self._is_if(next(iter(item))):
                    key, body = next(iter(item.items()))
                    if self._test(key, scope):
                        out += self.evaluate(body, scope)
                    continue
                out.append(self.evaluate(item, scope))
            return out
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if isinstance(key, str) and self._is_if(key):
                    if self._test(key, scope):
                        out.update(self.evaluate(value, scope))
                    continue
                if isinstance(key, str) and key.startswith("${{"):
                    raise Unsupported(f"key {key}")
                out[key] = self.evaluate(value, scope)
            return out
        return node

    @staticmethod
    def _is_if(key) -> bool:
        m = _FULL.match(key) if isinstance(key, str) else None
        return bool(m and m.group(1).startswith("if "))

    def _test(self, key: str, scope) -> bool:
        return bool(Expression(_FULL.match(key).group(1)[3:], scope).value())

    @staticmethod
    def _declared(doc, given: dict, where: str) -> dict:
        declared = {p["name"]: p for p in doc.get("parameters") or []}
        unknown = set(given) - set(declared)
        if unknown:
            raise Unsupported(f"{where}: unexpected parameters {sorted(unknown)}")
        values = {}
        for name, spec in declared.items():
            if name not in given and "default" not in spec:
                raise Unsupported(f"{where}: parameter {name} is required")
            value = given.get(name, spec.get("default"))
            kind = spec.get("type", "string")
            if kind == "boolean" and not isinstance(value, bool):
                if str(value).lower() not in ("true", "false"):
                    raise Unsupported(f"{where}: boolean parameter {name} got {value!r}")
                value = str(value).lower() == "true"
            if kind == "object" and not isinstance(value, (dict, list)):
                raise Unsupported(f"{where}: object parameter {name} got {value!r}")
            if kind == "string" and not isinstance(value, str):
                raise Unsupported(f"{where}: string parameter {name} got {value!r}")
            if "values" in spec and value not in spec["values"]:
                raise Unsupported(f"{where}: parameter {name} must be one of {spec['values']}, not {value!r}")
            values[name] = value
        return values

    def _file(self, ref: str, where: Path) -> Path:
        if "@" in ref:
            rel, alias = ref.split("@", 1)
            return self.repositories[alias] / rel
        return where.parent / ref

    def expand_pipeline(self, path: Path, runtime: dict | None = None) -> list[dict]:
        """The stages of a pipeline that extends a stages template, every job's steps expanded."""
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        variables = dict(self.variables)
        params = self._declared(doc, runtime or {}, path.name)
        extends = doc["extends"]
        template = self._file(extends["template"], path)
        given = self.evaluate(extends.get("parameters") or {}, {"parameters": params, "variables": variables})
        tdoc = yaml.safe_load(template.read_text(encoding="utf-8"))
        values = self._declared(tdoc, given, template.name)
        stages = self.evaluate(tdoc["stages"], {"parameters": values, "variables": variables})
        for stage in stages:
            for job in stage["jobs"]:
                holder = job["strategy"]["runOnce"]["deploy"] if "deployment" in job else job
                holder["steps"] = self._expand_steps(holder["steps"], template)
        return stages

    def _expand_steps(self, steps, where: Path) -> list[dict]:
        out = []
        for step in steps:
            if "template" in step:
                out += self.expand(self._file(step["template"], where), step.get("parameters"))
            else:
                out.append(step)
        return out


def job_steps(job: dict) -> list[dict]:
    return job["strategy"]["runOnce"]["deploy"]["steps"] if "deployment" in job else job["steps"]


def names(steps) -> list[str]:
    return [s.get("name") or s.get("task") or ("checkout " + s["checkout"] if "checkout" in s else "?")
            for s in steps]


def build(agent: Agent, reason: str, branch: str) -> Agent:
    agent.variables.update({"Build.Reason": reason, "Build.SourceBranch": branch,
                            "Build.SourceBranchName": branch.rsplit("/", 1)[-1]})
    return agent


@pytest.fixture
def agent(tmp_path) -> PipelineAgent:
    return PipelineAgent(tmp_path / "agent", {"stackci": ROOT}, {"PATH": "/usr/bin:/bin"})


# --------------------------------------------------------------------------- which stages a build gets
def test_a_pull_request_gets_unit_tests_validate_and_the_integration_test(agent):
    stages = build(agent, "PullRequest", "refs/pull/7/merge").expand_pipeline(PIPELINE)
    assert [s["stage"] for s in stages] == ["pullRequest"]
    assert stages[0]["variables"] == [{"group": "databricks-ci"}]
    jobs = {j["job"]: j for j in stages[0]["jobs"]}
    assert list(jobs) == ["unitTests", "validate", "integrationTest"]
    assert jobs["integrationTest"]["dependsOn"] == "unitTests" and "dependsOn" not in jobs["validate"]
    assert names(jobs["unitTests"]["steps"]) == ["checkout self", "UsePythonVersion@0", "checkout stackci",
                                                 "stackciSetup", "unitTests", "PublishTestResults@2"]
    assert names(jobs["validate"]["steps"])[-2:] == ["validateTargets", "validate"]
    plan = jobs["validate"]["steps"][-1]
    assert plan["env"]["STACKCI_TARGET"] == "staging prod" and plan["env"]["STACKCI_COMMENT"] == "True"
    assert plan["env"]["DATABRICKS_CLIENT_SECRET"] == "$(DATABRICKS_CLIENT_SECRET)"   # a macro, mapped in env
    test = next(s for s in jobs["integrationTest"]["steps"] if s.get("name") == "integrationTest")
    assert test["env"]["STACKCI_TARGET"] == "test" and test["env"]["STACKCI_JOB"] == "model_training_job"
    assert test["env"]["STACKCI_TIMEOUT"] == "45m"


def test_a_push_to_main_deploys_staging_only(agent):
    stages = build(agent, "IndividualCI", "refs/heads/main").expand_pipeline(PIPELINE)
    assert [s["stage"] for s in stages] == ["deployStaging"]
    job = stages[0]["jobs"][0]
    assert job["deployment"] == "deployStaging" and job["environment"] == "staging"
    deploy = next(s for s in job_steps(job) if s.get("name") == "deploy")
    assert deploy["env"]["STACKCI_TARGET"] == "staging" and deploy["env"]["STACKCI_REQUIRE_BRANCH"] == ""
    assert stages[0]["variables"] == [{"group": "databricks-staging"}]


def test_a_manual_run_of_main_with_a_bump_cuts_the_release(agent):
    stages = build(agent, "Manual", "refs/heads/main").expand_pipeline(PIPELINE, {"release": "minor"})
    assert [s["stage"] for s in stages] == ["cutRelease"]
    job = stages[0]["jobs"][0]
    checkout = job["steps"][0]
    assert checkout["fetchDepth"] == "0" and checkout["fetchTags"] == "true"
    cut = next(s for s in job["steps"] if s.get("name") == "cutRelease")
    assert cut["env"]["STACKCI_BUMP"] == "minor"
    assert cut["env"]["STACKCI_BRANCH_PATTERN"] == "release/v{version}" and cut["env"]["STACKCI_RELEASE_BRANCH"] == ""
    assert cut["env"]["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)"
    with pytest.raises(Unsupported, match="must be one of"):
        build(agent, "Manual", "refs/heads/main").expand_pipeline(PIPELINE, {"release": "huge"})


@pytest.mark.parametrize("provider, persisted", [("TfsGit", "false"), ("GitHub", "true")])
def test_only_a_release_pushed_with_git_keeps_credentials_in_its_checkout(agent, provider, persisted):
    """Azure Repos releases go through the REST API; a GitHub repository is pushed with git."""
    agent.variables["Build.Repository.Provider"] = provider
    for reason, branch, runtime in (("Manual", "refs/heads/main", {"release": "patch"}),
                                    ("PullRequest", "refs/pull/7/merge", {}),
                                    ("IndividualCI", "refs/heads/main", {}),
                                    ("IndividualCI", "refs/heads/release/v1.0.0", {})):
        for stage in build(agent, reason, branch).expand_pipeline(PIPELINE, runtime):
            for job in stage["jobs"]:
                [checkout] = [s for s in job_steps(job) if s.get("checkout") == "self"]
                expected = persisted if stage["stage"] == "cutRelease" else "false"
                assert checkout["persistCredentials"] == expected, (stage["stage"], job)


@pytest.mark.parametrize("branch", ["refs/heads/release/v1.4.0", "refs/heads/release"])
def test_a_release_branch_deploys_prod_in_its_environment_one_at_a_time(agent, branch):
    stages = build(agent, "IndividualCI", branch).expand_pipeline(PIPELINE)
    assert [s["stage"] for s in stages] == ["deployProd"]
    stage = stages[0]
    assert stage["lockBehavior"] == "sequential" and stage["variables"] == [{"group": "databricks-prod"}]
    job = stage["jobs"][0]
    assert job["deployment"] == "deployProd" and job["environment"] == "prod"
    steps = job_steps(job)
    assert names(steps) == ["checkout self", "UsePythonVersion@0", "checkout stackci", "stackciSetup", "deploy",
                            "runJob", "PublishTestResults@2"], "the toolkit is installed once"
    deploy, smoke = steps[4], steps[5]
    assert deploy["env"]["STACKCI_TARGET"] == "prod" and deploy["env"]["STACKCI_REQUIRE_BRANCH"] == "release/* release"
    assert smoke["env"]["STACKCI_JOB"] == "model_training_job" and smoke["env"]["STACKCI_TARGET"] == "prod"


def test_other_branches_and_pull_requests_never_reach_prod(agent):
    for reason, branch in (("IndividualCI", "refs/heads/feature/x"), ("PullRequest", "refs/heads/release/v1.0.0"),
                           ("IndividualCI", "refs/heads/releases-old"),
                           ("IndividualCI", "refs/heads/release/v1.5.0-rc.1"),    # a prerelease
                           ("Manual", "refs/heads/release/v2.0.0-beta.2")):
        stages = build(agent, reason, branch).expand_pipeline(PIPELINE)
        assert "deployProd" not in [s["stage"] for s in stages], (reason, branch)


def test_the_long_lived_release_style_moves_one_branch(agent, tmp_path):
    pipeline = tmp_path / "p.yml"
    text = PIPELINE.read_text()
    assert "    smokeJob: model_training_job\n" in text
    pipeline.write_text(text.replace("    smokeJob: model_training_job\n", "    smokeJob: ''\n    releaseStyle: longLived\n"))
    stages = build(agent, "Manual", "refs/heads/main").expand_pipeline(pipeline, {"release": "patch"})
    cut = next(s for s in stages[0]["jobs"][0]["steps"] if s.get("name") == "cutRelease")
    assert cut["env"]["STACKCI_RELEASE_BRANCH"] == "release" and cut["env"]["STACKCI_BRANCH_PATTERN"] == ""
    prod = build(agent, "IndividualCI", "refs/heads/release").expand_pipeline(pipeline)
    assert "runJob" not in names(job_steps(prod[0]["jobs"][0])), "no smoke run without smokeJob"


# --------------------------------------------------------------------------- the jobs, run
@pytest.fixture
def ws(tmp_path):
    from stackci.workspace import LocalWorkspace

    with LocalWorkspace(tmp_path / "data", client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", *args], cwd=cwd, check=True,
                   capture_output=True)


@pytest.fixture
def local_pipeline(tmp_path, ws) -> Path:
    """The example pipeline with every target's host pointed at the local workspace (its host
    parameter), as a test must: the step templates set STACKCI_HOST from it."""
    text = PIPELINE.read_text()
    anchor = "    releaseBump: ${{ parameters.release }}\n"
    assert anchor in text
    path = tmp_path / "azure-pipelines.yml"
    path.write_text(text.replace(anchor, anchor + f"    host: {ws.url}\n"))
    return path


@pytest.fixture
def running_agent(act_env, tmp_path, ws):
    def make(reason: str, branch: str) -> PipelineAgent:
        agent = PipelineAgent(tmp_path / "agent", {"stackci": act_env["lib"]},
                              {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
                               "STACKCI_TOOLKIT_DIR": str(act_env["toolkit"]), "STACKCI_HOST": ws.url},
                              python_bin=act_env["python_bin"])
        sources = agent.sources
        if not (sources / "databricks.yml").exists():
            shutil.rmtree(sources)
            shutil.copytree(EXAMPLE, sources, ignore=shutil.ignore_patterns(".stackci", "__pycache__", ".pytest_cache"))
            (agent.build_dir / "stackci").symlink_to(act_env["lib"], target_is_directory=True)
            _git(sources, "init", "-q", "-b", "main")
            _git(sources, "add", "-A")
            _git(sources, "commit", "-qm", "project")
        agent.variables.update({"DATABRICKS_CLIENT_ID": CLIENT_ID, "DATABRICKS_CLIENT_SECRET": CLIENT_SECRET})
        if hasattr(agent, "secret_variables"):   # a secret reaches a step only through its env: mapping
            agent.secret_variables |= {"DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"}
        return build(agent, reason, branch)
    return make


def test_main_then_release_builds_deploy_staging_then_prod_and_smoke_run(running_agent, ws, local_pipeline):
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    agent = running_agent("IndividualCI", "refs/heads/main")
    steps = job_steps(agent.expand_pipeline(local_pipeline)[0]["jobs"][0])
    agent.run(steps)
    assert not agent.failed, agent.text()[-3000:]
    assert agent.output("deploy", "created") == "4"

    _git(agent.sources, "checkout", "-q", "-b", "release/v0.1.0")
    _git(agent.sources, "tag", "-a", "-m", "Release 0.1.0", "v0.1.0")
    agent = running_agent("IndividualCI", "refs/heads/release/v0.1.0")
    agent.run(job_steps(agent.expand_pipeline(local_pipeline)[0]["jobs"][0]))
    assert not agent.failed, agent.text()[-3000:]
    assert agent.output("deploy", "created") == "4"
    assert agent.output("runJob", "result") == "success"
    assert agent.published and agent.published[-1].name == "run-job.xml"
    assert CLIENT_SECRET in agent.secrets, "masked (task.setsecret) before anything could print it"
    shown = [line for line in agent.text().splitlines() if not line.startswith("##vso[task.setsecret]")]
    assert not any(CLIENT_SECRET in line for line in shown)

    w = WorkspaceClient(config=Config(host=ws.url, token=ws.token, auth_type="pat"))
    jobs = {j.settings.name: w.jobs.get(j.job_id) for j in w.jobs.list()}
    prod = jobs["prod-churn_model-model-training-job"]
    assert prod.settings.tags["stackci-version-tag"] == "v0.1.0"
    assert prod.settings.tags["stackci-branch"] == "release/v0.1.0"
    assert "staging-churn_model-model-training-job" in jobs
    assert [r.state.result_state.value for r in w.jobs.list_runs(job_id=prod.job_id)] == ["SUCCESS"]


def test_a_pull_request_cannot_deploy_prod_even_by_running_its_steps(running_agent, local_pipeline):
    """The deploy step's requireBranch holds on its own: a PR build that got the prod steps
    (e.g. a copied pipeline) is refused before anything changes."""
    agent = running_agent("IndividualCI", "refs/heads/release/v0.1.0")
    steps = job_steps(agent.expand_pipeline(local_pipeline)[0]["jobs"][0])
    agent = running_agent("PullRequest", "refs/pull/7/merge")
    agent.run(steps)
    assert agent.failed
    errors = [i.data for i in agent.issues if i.properties.get("type") == "error"]
    assert any("refusing to deploy target 'prod' from pull request '7'" in e for e in errors), errors
    assert agent.output("deploy", "created") is None
