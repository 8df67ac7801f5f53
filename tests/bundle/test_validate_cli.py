"""``stackci validate`` as a user runs it: the example project, annotations, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bundle_support import NOTEBOOK  # type: ignore[import-not-found]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "project"
NO_CREDENTIALS = {"DATABRICKS_TOKEN": "", "DATABRICKS_CLIENT_ID": "", "DATABRICKS_AUTH_TYPE": "",
                  "DATABRICKS_CONFIG_PROFILE": "", "DATABRICKS_CONFIG_FILE": "/nonexistent/.databrickscfg"}


@pytest.mark.parametrize("target, prefix, model", [
    ("dev", "[dev ci_bot] dev", "dev.churn_model.dev_ci_bot_churn_model"),
    ("test", "test", "test.churn_model.churn_model"),
    ("staging", "staging", "staging.churn_model.churn_model"),
    ("prod", "prod", "prod.churn_model.churn_model"),
])
def test_example_project_validates_for_every_target(run_cli, target, prefix, model):
    result = run_cli(["validate", "-t", target, "--project", str(EXAMPLE), "--output", "json"], platform="local",
                     env={"STACKCI_CURRENT_USER": "ci.bot@example.com", **NO_CREDENTIALS})
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["target"] == target
    names = {kind: {k: v["name"] for k, v in items.items()} for kind, items in data["resources"].items()}
    assert names["jobs"] == {"model_training_job": f"{prefix}-churn_model-model-training-job",
                             "batch_inference_job": f"{prefix}-churn_model-batch-inference-job"}
    assert names["registered_models"] == {"model": model}
    root = ("/Workspace/Shared/.bundle/churn_model/prod" if target == "prod"
            else f"/Workspace/Users/ci.bot@example.com/.bundle/churn_model/{target}")
    assert data["workspace"]["root_path"] == root
    train = data["settings"]["resources"]["jobs"]["model_training_job"]["tasks"][0]
    assert train["notebook_task"]["notebook_path"] == f"{root}/files/training/notebooks/Train"
    assert train["notebook_task"]["base_parameters"]["model_name"] == model.replace("dev_ci_bot_", "")
    assert "training/notebooks/Train.py" in data["sync"]["files"]
    assert not any(".pytest_cache" in f or "__pycache__" in f for f in data["sync"]["files"])


def test_text_summary_outputs_and_warning_annotations(run_cli):
    result = run_cli(["validate", "-t", "prod", "--project", str(EXAMPLE), "--offline"])
    assert result.code == 0
    assert "prod-churn_model-model-training-job" in result.stderr
    assert "root path:   /Workspace/Shared/.bundle/churn_model/prod" in result.stderr
    assert result.outputs["target"] == "prod" and result.outputs["resources"] == "4"
    assert result.outputs["root-path"] == "/Workspace/Shared/.bundle/churn_model/prod"
    warnings = [c for c in result.commands if c.name == "warning"]
    assert len(warnings) == 1 and "run_as" in warnings[0].data
    assert warnings[0].properties["file"].endswith("examples/project/databricks.yml")
    assert warnings[0].properties["line"] == "48"
    assert "prod-churn_model-batch-inference-job" in result.summary


def test_offline_without_a_user_only_fails_when_the_user_is_needed(run_cli):
    ok = run_cli(["validate", "-t", "prod", "--project", str(EXAMPLE)], env=NO_CREDENTIALS)
    assert ok.code == 0
    bad = run_cli(["validate", "-t", "dev", "--project", str(EXAMPLE)], env=NO_CREDENTIALS)
    assert bad.code == 2
    [err] = bad.errors()
    assert "needs the current user" in err.data and "STACKCI_CURRENT_USER" in err.data
    assert err.properties["line"] == "28"


GOOD = """
bundle: {name: demo}
include: [resources/*.yml]
variables:
  catalog: {description: required}
targets:
  dev: {default: true, mode: development}
  prod:
    mode: production
    workspace: {root_path: /Workspace/Shared/demo}
"""
JOB = """
resources:
  jobs:
    j:
      name: job-${var.catalog}
      tasks:
        - task_key: t
          notebook_task: {notebook_path: ../nb.py}
"""

BAD = {
    "malformed YAML": ({"databricks.yml": GOOD + "  broken: [\n"}, [], "databricks.yml", "invalid YAML"),
    "unknown target": ({}, ["-t", "staging"], "databricks.yml", "valid targets: dev, prod"),
    "undeclared --var": ({}, ["--var", "other=1"], "databricks.yml", "does not declare"),
    "required variable": ({}, [], "databricks.yml", "no value assigned to required variable 'catalog'"),
    "undefined variable": ({"resources/job.yml": JOB.replace("var.catalog", "var.catlog")}, ["--var", "catalog=x"],
                           "resources/job.yml", "undefined variable 'catlog'"),
    "undefined resource": ({"resources/job.yml": JOB.replace("${var.catalog}", "${resources.jobs.zz.id}")},
                           ["--var", "catalog=x"], "resources/job.yml", "does not define"),
    "cycle": ({"databricks.yml": GOOD.replace("{description: required}", "{default: '${var.catalog}x'}")}, [],
              "databricks.yml", "reference cycle"),
    "include matches nothing": ({"databricks.yml": GOOD.replace("resources/*.yml", "jobs/*.yml")},
                                ["--var", "catalog=x"], "databricks.yml", "matches no files"),
    "path escapes root": ({"resources/job.yml": JOB.replace("../nb.py", "../../nb.py")}, ["--var", "catalog=x"],
                          "resources/job.yml", "outside the bundle root"),
    "wrong type": ({"resources/job.yml": JOB.replace("      tasks:", "      max_concurrent_runs: [1]\n      tasks:")},
                   ["--var", "catalog=x"], "resources/job.yml", "must be an integer"),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("platform", ["github", "local"])
def test_bad_input_is_one_line_with_file_line_and_fix(run_cli, write, case, platform):
    files, args, file, words = BAD[case]
    root = write({"databricks.yml": GOOD, "resources/job.yml": JOB, "nb.py": NOTEBOOK, **files})
    result = run_cli(["validate", "--project", str(root), "--user", "dev@example.com", *args], platform=platform,
                     env=NO_CREDENTIALS)
    assert result.code == 2, result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    if platform == "github":
        [err] = result.errors()
        assert words in err.data and "; " in err.data           # the message, then how to fix it
        assert err.properties["file"].endswith(file)
        assert int(err.properties["line"]) > 0
    else:
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and words in lines[0] and f"{file}:" in lines[0]


def test_var_and_env_sources_through_the_cli(run_cli, write):
    root = write({"databricks.yml": GOOD, "resources/job.yml": JOB, "nb.py": NOTEBOOK})
    env = {**NO_CREDENTIALS, "BUNDLE_VAR_catalog": "from_env", "STACKCI_CURRENT_USER": "dev@example.com"}
    out = run_cli(["validate", "--project", str(root), "-o", "json"], platform="local", env=env)
    assert json.loads(out.stdout)["resources"]["jobs"]["j"]["name"] == "[dev dev] job-from_env"
    out = run_cli(["validate", "--project", str(root), "-o", "json", "--var", "catalog=cli"], platform="local",
                  env=env)
    assert json.loads(out.stdout)["variables"]["catalog"] == {"value": "cli", "source": "--var"}
    out = run_cli(["validate", "--project", str(root), "-o", "json"], platform="local",
                  env={**env, "STACKCI_TARGET": "prod", "STACKCI_VAR": "catalog=v"})
    data = json.loads(out.stdout)
    assert data["target"] == "prod" and data["resources"]["jobs"]["j"]["name"] == "job-v"
