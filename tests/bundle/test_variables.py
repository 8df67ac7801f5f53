"""Variables: every source and the precedence order, complex and lookup variables, references."""

from __future__ import annotations

import json

import pytest

VARS = """
bundle:
  name: demo
variables:
  catalog:
    description: the catalog
    default: root-default
  other:
    default: x
targets:
  t:
    variables:
      catalog: target-default
resources:
  jobs:
    j:
      name: ${var.catalog}-job
"""
OVERRIDES = ".databricks/bundle/t/variable-overrides.json"

# highest first: each source, and what the value is when it and every source above it are absent
SOURCES = [
    ("--var", "from-option"),
    ("BUNDLE_VAR_catalog", "from-env"),
    ("variable-overrides.json", "from-file"),
    ("targets.t.variables", "target-default"),
    ("default", "root-default"),
]


@pytest.mark.parametrize("drop", range(len(SOURCES)))
def test_precedence(load, drop):
    present = [name for name, _ in SOURCES[drop:]]
    files = {"databricks.yml": VARS}
    if "targets.t.variables" not in present:
        files["databricks.yml"] = VARS.replace("      catalog: target-default\n", "      other: y\n")
    if "variable-overrides.json" in present:
        files[OVERRIDES] = json.dumps({"catalog": "from-file"})
    env = {"BUNDLE_VAR_catalog": "from-env"} if "BUNDLE_VAR_catalog" in present else {}
    options = ["catalog=from-option"] if "--var" in present else []
    b = load(files, "t", variables=options, env=env)
    name, value = SOURCES[drop]
    assert b.variables["catalog"] == value
    assert b.variable_sources["catalog"] == name
    assert b.resources["jobs"]["j"].name == f"{value}-job"


def test_var_and_variables_value_are_the_same(load):
    b = load({"databricks.yml": VARS.replace("${var.catalog}-job", "${var.catalog}/${variables.catalog.value}")},
             "t")
    assert b.resources["jobs"]["j"].name == "target-default/target-default"


def test_missing_required_variable(fails):
    err = fails({"databricks.yml": "bundle: {name: d}\nvariables:\n  warehouse_id:\n    description: x\n"})
    assert err.message == "no value assigned to required variable 'warehouse_id'"
    assert "--var warehouse_id=" in err.hint and "BUNDLE_VAR_warehouse_id" in err.hint
    assert err.file.endswith("databricks.yml") and err.line == 3


def test_bad_var_option(fails):
    err = fails({"databricks.yml": VARS}, "t", variables=["catalog"])
    assert "name=value" in err.message
    err = fails({"databricks.yml": VARS}, "t", variables=["nope=1"])
    assert "does not declare" in err.message and "catalog" in err.hint


def test_target_may_only_set_declared_variables(fails):
    err = fails({"databricks.yml": VARS.replace("      catalog: target-default", "      catalgo: typo")}, "t")
    assert "'catalgo', which is not declared" in err.message and err.line == 12


def test_target_full_form_variable(load):
    b = load({"databricks.yml": VARS.replace("      catalog: target-default", "      catalog:\n        default: full")},
             "t")
    assert b.variables["catalog"] == "full"


COMPLEX = """
bundle: {name: demo}
variables:
  cluster:
    type: complex
    default:
      spark_version: "15.4"
      num_workers: 2
      spark_conf: {a: b}
  workers:
    default: 3
  paused:
    default: true
resources:
  jobs:
    j:
      name: job
      max_concurrent_runs: ${var.workers}
      job_clusters:
        - job_cluster_key: c
          new_cluster: ${var.cluster}
      tasks:
        - task_key: t
          job_cluster_key: c
          notebook_task:
            notebook_path: /Workspace/nb
            base_parameters:
              version: ${var.cluster.spark_version}
              text: "v${var.cluster.spark_version}-w${var.workers}-${var.paused}"
"""


def test_complex_and_typed_single_references(load):
    job = load({"databricks.yml": COMPLEX}).resources["jobs"]["j"].settings
    assert job["job_clusters"][0]["new_cluster"] == {"spark_version": "15.4", "num_workers": 2,
                                                     "spark_conf": {"a": "b"}}
    assert job["max_concurrent_runs"] == 3 and isinstance(job["max_concurrent_runs"], int)
    params = job["tasks"][0]["notebook_task"]["base_parameters"]
    assert params == {"version": "15.4", "text": "v15.4-w3-true"}


def test_complex_from_overrides_file(load):
    b = load({"databricks.yml": COMPLEX, ".databricks/bundle/default/variable-overrides.json":
              json.dumps({"cluster": {"spark_version": "16.0", "num_workers": 9}})})
    assert b.resources["jobs"]["j"].settings["job_clusters"][0]["new_cluster"] == {"spark_version": "16.0",
                                                                                   "num_workers": 9}
    assert b.variable_sources["cluster"] == "variable-overrides.json"


def test_complex_cannot_come_from_option_or_env(fails):
    err = fails({"databricks.yml": COMPLEX}, variables=["cluster={}"])
    assert "is complex" in err.message and "variable-overrides.json" in err.hint
    err = fails({"databricks.yml": COMPLEX}, env={"BUNDLE_VAR_cluster": "{}"})
    assert "BUNDLE_VAR_cluster" in err.message


def test_complex_default_needs_type_complex(fails):
    err = fails({"databricks.yml": COMPLEX.replace("    type: complex\n", "")})
    assert "type: complex" in err.hint and err.line == 4


def test_mapping_inside_a_longer_string_is_an_error(fails):
    err = fails({"databricks.yml": COMPLEX.replace("new_cluster: ${var.cluster}", "new_cluster: x${var.cluster}")})
    assert "cannot be part of a longer string" in err.message and err.line == 20


LOOKUP = """
bundle: {name: demo}
variables:
  policy:
    lookup:
      cluster_policy: Small
resources:
  jobs:
    j:
      name: job-${var.policy}
"""


def test_lookup_is_not_supported_offline(fails, load):
    err = fails({"databricks.yml": LOOKUP})
    assert "lookup" in err.message and "not supported offline" in err.message
    assert "--var policy=" in err.hint and err.line == 5
    assert load({"databricks.yml": LOOKUP}, variables=["policy=123"]).resources["jobs"]["j"].name == "job-123"
    resolved = load({"databricks.yml": LOOKUP}, lookup=lambda kind, name: f"{kind}:{name}")
    assert resolved.resources["jobs"]["j"].name == "job-cluster_policy:Small"


def test_undefined_variable_reference(fails):
    err = fails({"databricks.yml": VARS.replace("${var.catalog}-job", "${var.catalgo}-job")}, "t")
    assert "undefined variable 'catalgo'" in err.message and err.line == 16
    assert "declared: catalog, other" in err.hint


def test_reference_cycle(fails):
    err = fails({"databricks.yml": """
bundle: {name: demo}
variables:
  a: {default: "${var.b}/x"}
  b: {default: "${var.c}"}
  c: {default: "${var.a}"}
resources:
  jobs:
    j: {name: "${var.a}"}
"""})
    assert err.message.startswith("reference cycle:")
    assert "variables.a.value" in err.message and "variables.b.value" in err.message
    assert err.file.endswith("databricks.yml") and err.line in (3, 4, 5)


def test_workspace_path_cycle(fails):
    err = fails({"databricks.yml": "bundle: {name: d}\nworkspace:\n  root_path: ${workspace.file_path}/r\n"})
    assert "reference cycle" in err.message


def test_builtin_references(load, write):
    (write({}) / ".git" / "refs" / "heads").mkdir(parents=True)
    (write({}) / ".git" / "HEAD").write_text("ref: refs/heads/feature/x\n")
    (write({}) / ".git" / "refs" / "heads" / "feature").mkdir()
    (write({}) / ".git" / "refs" / "heads" / "feature" / "x").write_text("abc123\n")
    b = load({"databricks.yml": """
bundle: {name: demo}
targets:
  t:
    workspace: {host: "https://h.example.com"}
resources:
  jobs:
    j:
      name: "${bundle.name}|${bundle.target}|${bundle.git.branch}|${bundle.git.commit}|${workspace.host}"
      description: "${workspace.current_user.userName}|${workspace.current_user.short_name}|${workspace.root_path}|${workspace.file_path}"
      tags:
        weird: "${env:HOME} and {{job.id}} stay"
"""}, "t")
    job = b.resources["jobs"]["j"].settings
    assert job["name"] == "demo|t|feature/x|abc123|https://h.example.com"
    root = "/Workspace/Users/alice.smith@example.com/.bundle/demo/t"
    assert job["description"] == f"alice.smith@example.com|alice_smith|{root}|{root}/files"
    assert job["tags"]["weird"] == "${env:HOME} and {{job.id}} stay"


def test_unknown_reference_field(fails):
    err = fails({"databricks.yml": "bundle: {name: d}\nresources:\n  jobs:\n    j: {name: '${bundle.nmae}'}\n"})
    assert "${bundle.nmae} does not exist" in err.message and err.line == 4 and "${bundle.name}" in err.hint


def test_resource_references_are_deferred(load, fails):
    files = {"databricks.yml": """
bundle: {name: demo}
resources:
  jobs:
    a: {name: a}
    b:
      name: b
      tasks:
        - task_key: run_a
          run_job_task:
            job_id: ${resources.jobs.a.id}
      description: "after ${resources.jobs.a.name}"
"""}
    b = load(files)
    task = b.resources["jobs"]["b"].settings["tasks"][0]
    assert task["run_job_task"]["job_id"] == "${resources.jobs.a.id}"
    where = {d.where: d.references for d in b.deferred}
    assert where == {"resources.jobs.b.tasks[0].run_job_task.job_id": ("resources.jobs.a.id",),
                     "resources.jobs.b.description": ("resources.jobs.a.name",)}
    assert b.deferred[0].location.line == 10
    files["databricks.yml"] = files["databricks.yml"].replace("jobs.a.id", "jobs.nope.id")
    err = fails(files)
    assert "refers to jobs 'nope', which the bundle does not define" in err.message
    assert "defined jobs: a, b" in err.hint and err.line == 10


def test_current_user_unknown_only_matters_when_needed(load, fails):
    shared = "bundle: {name: d}\nworkspace:\n  root_path: /Workspace/Shared/d\n"
    b = load({"databricks.yml": shared}, current_user=None)
    assert b.root_path == "/Workspace/Shared/d" and b.file_path == "/Workspace/Shared/d/files"
    err = fails({"databricks.yml": "bundle: {name: d}\n"}, current_user=None)
    assert "needs the current user" in err.message and "--user" in err.hint
    err = fails({"databricks.yml": shared + "resources:\n  jobs:\n    j: {name: '${workspace.current_user.userName}'}\n"},
                current_user=None)
    assert "current_user" in err.message and "--user" in err.hint
