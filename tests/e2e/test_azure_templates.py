"""examples/azure-pipelines/ci.yml and the step templates, run by the agent stand-in
(tests/e2e/azure_agent.py): template expansion, install, unit tests, publish."""

from __future__ import annotations

from pathlib import Path

import pytest

from azure_agent import Agent, Unsupported
from e2e_support import ROOT, example_agent

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "project"
PIPELINE = ROOT / "examples" / "azure-pipelines" / "ci.yml"


@pytest.fixture
def agent_for(act_env, tmp_path):
    def make(files=None) -> Agent:
        return example_agent(act_env, tmp_path / "agent", tmp_path / "home", EXAMPLE, files,
                             python_bin=act_env["python_bin"])
    return make


def test_example_pipeline_passes(agent_for):
    agent = agent_for()
    steps = agent.expand(PIPELINE)
    assert [s.get("name") for s in steps if "bash" in s] == ["stackciSetup", "unitTests", None]
    agent.run(steps)
    assert not agent.failed, agent.text()[-3000:]
    assert int(agent.output("unitTests", "passed")) >= 10
    assert agent.output("unitTests", "failed") == "0"
    junit = Path(agent.output("unitTests", "junit_xml"))
    assert junit == agent.build_dir / "TestResults" / "stackci" / "unit-tests.xml"
    assert agent.published == [junit]
    assert [i for i in agent.issues if i.properties.get("type") == "error"] == []
    summary = agent.summaries[0].read_text()
    assert "Unit tests passed" in summary
    assert f"passed={agent.output('unitTests', 'passed')} failed=0" in agent.log[-1][1]
    assert "reusing stackci" in agent.log[0][1]


def test_failing_project_annotates_and_still_publishes(agent_for):
    broken = (EXAMPLE / "tests" / "test_churn_pipeline.py").read_text() + (
        "\n\ndef test_deliberately_broken():\n    assert 1 + 1 == 3, 'arithmetic is broken'\n")
    agent = agent_for({"tests/test_churn_pipeline.py": broken})
    agent.run(agent.expand(PIPELINE))
    assert agent.failed
    assert agent.output("unitTests", "failed") == "1"
    errors = [i for i in agent.issues if i.properties.get("type") == "error"]
    located = [e for e in errors if e.properties.get("sourcepath")]
    assert len(located) == 1
    assert located[0].properties["sourcepath"] == "tests/test_churn_pipeline.py"
    assert located[0].properties["linenumber"] == str(len(broken.splitlines()))
    assert "arithmetic is broken" in located[0].data
    assert agent.published, "PublishTestResults@2 runs after a failure (succeededOrFailed)"
    assert "failed=1" in agent.log[-1][1]


@pytest.mark.parametrize("value", ['"; touch pwned #', "$(touch pwned)", "`touch pwned`",
                                   "x\n##vso[task.setvariable variable=evil;isOutput=true]1"])
def test_parameters_cannot_inject(agent_for, value):
    agent = agent_for()
    steps = agent.expand(ROOT / "azure-pipelines" / "steps" / "unit-tests.yml",
                         {"pytestArgs": value, "python": str(agent.build_dir / "missing-python")})
    agent.run(steps)
    assert not list(agent.build_dir.rglob("pwned"))
    assert "evil" not in agent.variables and "unitTests.evil" not in agent.variables
    assert agent.failed     # the interpreter does not exist: a clear error, exit 2
    assert any("missing-python" in i.data for i in agent.issues if i.properties.get("type") == "error")


def test_the_agent_refuses_what_it_does_not_understand(agent_for, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("steps:\n- bash: echo hi\n  condition: eq(variables.x, 'y')\n")
    agent = agent_for()
    with pytest.raises(Unsupported):
        agent.run(agent.expand(bad))
    bad.write_text("parameters:\n- name: p\n  type: string\n  default: a\nsteps:\n"
                   "- bash: echo ${{ variables.p }}\n")
    with pytest.raises(Unsupported):
        agent.expand(bad)
    with pytest.raises(Unsupported):
        agent.expand(ROOT / "azure-pipelines" / "steps" / "unit-tests.yml", {"noSuchParameter": "1"})


def test_the_access_token_reaches_the_plan_step_only_for_the_comment(agent_for):
    """validate.yml maps System.AccessToken into the plan step for the PR thread only, and
    once when databricksEnv maps it too (azure-devops-oidc needs it)."""
    agent = agent_for()
    template = ROOT / "azure-pipelines" / "steps" / "validate.yml"

    def env(**params) -> dict:
        steps = {s.get("name"): s for s in agent.expand(template, params)}
        assert "SYSTEM_ACCESSTOKEN" not in steps["validateTargets"]["env"] or "databricksEnv" in params
        return steps["validate"]["env"]

    assert "SYSTEM_ACCESSTOKEN" not in env()
    assert env(comment=True)["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)"
    oidc = {"DATABRICKS_AUTH_TYPE": "azure-devops-oidc", "DATABRICKS_CLIENT_ID": "sp-id",
            "SYSTEM_ACCESSTOKEN": "$(System.AccessToken)"}
    for comment in (False, True):
        planned = env(comment=comment, databricksEnv=oidc)
        assert planned["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)"
        assert planned["DATABRICKS_AUTH_TYPE"] == "azure-devops-oidc"


def test_install_takes_stackcis_interpreter_from_the_parameter_or_the_variable(agent_for, tmp_path):
    agent = agent_for()
    template = ROOT / "azure-pipelines" / "steps" / "install.yml"
    [setup] = [s for s in agent.expand(template) if s.get("name") == "stackciSetup"]
    assert "STACKCI_INSTALL_PYTHON" not in setup["env"], "a pipeline variable STACKCI_INSTALL_PYTHON stays visible"
    [setup] = [s for s in agent.expand(template, {"python": "python3.12"}) if s.get("name") == "stackciSetup"]
    assert setup["env"]["STACKCI_INSTALL_PYTHON"] == "python3.12"
    # the variable reaches the script: a missing interpreter is named in a one-line error
    agent.variables["STACKCI_INSTALL_PYTHON"] = str(tmp_path / "no-such-python")
    agent.run(agent.expand(template))
    assert agent.failed and agent.exit_codes["stackciSetup"] == 2
    assert "no-such-python" in agent.text() and "Traceback" not in agent.text()


def test_unit_tests_template_passes_slowest(agent_for):
    agent = agent_for()
    steps = {s.get("name"): s for s in agent.expand(ROOT / "azure-pipelines" / "steps" / "unit-tests.yml",
                                                      {"slowest": "12"})}
    assert steps["unitTests"]["env"]["STACKCI_SLOWEST"] == "12"


def test_the_agent_refuses_a_key_given_twice(agent_for, tmp_path):
    bad = tmp_path / "twice.yml"
    bad.write_text("parameters:\n- name: e\n  type: object\n  default: {A: '1'}\nsteps:\n- bash: 'true'\n"
                   "  env:\n    ${{ each pair in parameters.e }}:\n      ${{ pair.key }}: ${{ pair.value }}\n"
                   "    A: '2'\n")
    with pytest.raises(Unsupported, match="given twice"):
        agent_for().expand(bad)
