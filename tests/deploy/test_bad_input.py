"""Bad input to ``plan`` and ``deploy``: one line naming file:line and the fix, exit 2, no traceback,
and nothing deployed (the workspace holds no job, file, state or lock afterwards). The same cases
as ``validate`` (tests/bundle/test_validate_cli.py), through the deploy path, plus the ones only a
deploy meets (a cycle of resource references)."""

from __future__ import annotations

import pytest

from deploy_support import USER, jobs_by_name, tree, write_bundle  # type: ignore[import-not-found]

ROOT = """
bundle: {name: demo}
include: [resources/*.yml]
variables:
  catalog: {description: required}
targets:
  staging:
    default: true
    workspace: {host: "https://adb-1.azuredatabricks.net"}
  prod:
    workspace:
      host: "https://adb-2.azuredatabricks.net"
      root_path: /Workspace/Shared/demo
"""
JOB = """
resources:
  jobs:
    j:
      name: job-${var.catalog}
      tasks:
        - task_key: t
          notebook_task: {notebook_path: ../nb.py}
    k:
      name: k
      tasks:
        - task_key: run_j
          run_job_task: {job_id: "${resources.jobs.j.id}"}
"""
NOTEBOOK = "# Databricks notebook source\nprint('hi')\n"
CATALOG = ["--var", "catalog=x"]

CASES = {
    "malformed YAML": ({"databricks.yml": ROOT + "  broken: [\n"}, CATALOG, "databricks.yml", "invalid YAML"),
    "malformed included file": ({"resources/job.yml": JOB + "    bad: {\n"}, CATALOG, "resources/job.yml",
                                "invalid YAML"),
    "unknown target": ({}, ["-t", "test", *CATALOG], "databricks.yml", "valid targets: staging, prod"),
    "missing required variable": ({}, [], "databricks.yml", "no value assigned to required variable 'catalog'"),
    "undefined variable": ({"resources/job.yml": JOB.replace("var.catalog", "var.catlog")}, CATALOG,
                           "resources/job.yml", "undefined variable 'catlog'"),
    "undefined resource": ({"resources/job.yml": JOB.replace("jobs.j.id", "jobs.zz.id")}, CATALOG,
                           "resources/job.yml", "does not define"),
    "variable cycle": ({"databricks.yml": ROOT.replace("{description: required}", "{default: '${var.catalog}x'}")},
                       [], "databricks.yml", "reference cycle"),
    "resource cycle": ({"resources/job.yml": JOB.replace("      name: job-${var.catalog}\n",
                                                         "      name: job-${var.catalog}\n"
                                                         "      description: after ${resources.jobs.k.id}\n")},
                       CATALOG, "resources/job.yml", "refer to each other in a cycle: jobs.j → jobs.k → jobs.j"),
    "include matches nothing": ({"databricks.yml": ROOT.replace("resources/*.yml", "jobs/*.yml")}, CATALOG,
                                "databricks.yml", "matches no files"),
    "path escapes the root": ({"resources/job.yml": JOB.replace("../nb.py", "../../nb.py")}, CATALOG,
                              "resources/job.yml", "outside the bundle root"),
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One local workspace for every case (each leaves it empty, which is what is checked)."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    from stackci.workspace import LocalWorkspace

    with LocalWorkspace(tmp_path_factory.mktemp("ws")) as server:
        client = WorkspaceClient(config=Config(host=server.url, token=server.token, auth_type="pat",
                                               retry_timeout_seconds=10))
        env = {"DATABRICKS_HOST": server.url, "DATABRICKS_TOKEN": server.token, "DATABRICKS_AUTH_TYPE": "pat",
               "STACKCI_HOST": server.url}
        yield client, env


@pytest.mark.parametrize("command", ["plan", "deploy"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_at_file_and_line_and_nothing_is_deployed(run_cli, shared, tmp_path, case, command):
    w, env = shared
    files, args, file, words = CASES[case]
    root = write_bundle(tmp_path / "bundle", {"databricks.yml": ROOT, "resources/job.yml": JOB, "nb.py": NOTEBOOK,
                                              **files})
    result = run_cli([command, "--project", str(root), *args], env=env)
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    [error] = result.errors()
    assert words in error.data and "; " in error.data          # what is wrong; how to fix it
    assert error.properties["file"].endswith(file) and int(error.properties["line"]) > 0
    assert result.outputs == {}
    assert jobs_by_name(w) == {}
    assert tree(w, f"/Workspace/Users/{USER}") == {} and tree(w, "/Workspace/Shared") == {}


def test_a_resource_cycle_fails_validate_too(run_cli, tmp_path):
    files, args, file, words = CASES["resource cycle"]
    root = write_bundle(tmp_path / "bundle", {"databricks.yml": ROOT, "resources/job.yml": JOB, "nb.py": NOTEBOOK,
                                              **files})
    result = run_cli(["validate", "--project", str(root), "--user", USER, *args])
    assert result.code == 2
    [error] = result.errors()
    assert words in error.data and error.properties["file"].endswith(file)


def test_the_same_bundle_without_the_mistake_deploys(run_cli, shared, tmp_path):
    """The base of every case above is a good bundle (so each case fails for its own reason)."""
    w, env = shared
    root = write_bundle(tmp_path / "bundle", {"databricks.yml": ROOT, "resources/job.yml": JOB, "nb.py": NOTEBOOK})
    result = run_cli(["deploy", "--project", str(root), "-t", "prod", *CATALOG], env=env)
    assert result.code == 0, result.stderr
    assert sorted(jobs_by_name(w)) == ["job-x", "k"]
    assert run_cli(["destroy", "--project", str(root), "-t", "prod", *CATALOG], env=env).code == 0
    assert jobs_by_name(w) == {}
