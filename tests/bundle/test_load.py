"""Loading: root file, includes, targets and merge, YAML details, schema."""

from __future__ import annotations


import pytest

from stackci.bundle import load_bundle

BASE = """
bundle:
  name: demo
"""


@pytest.mark.parametrize("name", ["databricks.yml", "databricks.yaml", "bundle.yml", "bundle.yaml"])
def test_each_root_file_name(load, name):
    b = load({name: BASE})
    assert b.config_file.name == name and b.name == "demo" and b.target == "default"


def test_root_is_found_from_a_subfolder(write):
    root = write({"databricks.yml": BASE, "src/pkg/x.py": ""})
    assert load_bundle(root / "src" / "pkg", env={}, current_user="a@b.c").root == root.resolve()


def test_two_root_files_are_an_error(fails):
    err = fails({"databricks.yml": BASE, "bundle.yml": BASE})
    assert "more than one bundle configuration file" in err.message
    assert "databricks.yml" in err.message and "bundle.yml" in err.message


def test_no_root_file(tmp_path):
    from stackci.errors import ConfigError
    with pytest.raises(ConfigError, match="no databricks.yml"):
        load_bundle(tmp_path, None, env={}, current_user="a@b.c")


def test_bundle_name_required_and_literal(fails):
    err = fails({"databricks.yml": "bundle: {}\n"})
    assert "bundle.name is required" in err.message and err.line == 1
    err = fails({"databricks.yml": "bundle:\n  name: x-${bundle.target}\n"})
    assert "not allowed" in err.message and err.line == 2


def test_includes_merge_resources_from_globbed_files(load):
    b = load({
        "databricks.yml": BASE + "include:\n  - resources/*.yml\n  - more/**/*.yaml\n",
        "resources/a.yml": "resources:\n  jobs:\n    a:\n      name: job-a\n",
        "resources/b.yml": "resources:\n  jobs:\n    b:\n      name: job-b\n",
        "more/deep/c.yaml": "resources:\n  experiments:\n    e:\n      name: /Shared/e\n",
    })
    assert sorted(b.resources["jobs"]) == ["a", "b"]
    assert b.resources["experiments"]["e"].name == "/Shared/e"
    assert [p.name for p in b.files] == ["databricks.yml", "a.yml", "b.yml", "c.yaml"]
    assert b.resources["jobs"]["b"].location.file.endswith("resources/b.yml")
    assert b.resources["jobs"]["b"].location.line == 3


def test_include_matching_nothing_is_an_error_at_its_line(fails):
    err = fails({"databricks.yml": BASE + "include:\n  - resources/*.yml\n  - nothing/*.yml\n",
                 "resources/a.yml": "resources: {}\n"})
    assert "'nothing/*.yml' matches no files" in err.message
    assert err.file.endswith("databricks.yml") and err.line == 5
    assert err.hint


def test_same_resource_in_two_files_is_an_error(fails):
    err = fails({"databricks.yml": BASE + "include: [a.yml, b.yml]\n",
                 "a.yml": "resources:\n  jobs:\n    x:\n      name: one\n",
                 "b.yml": "resources:\n  jobs:\n    x:\n      name: two\n"})
    assert "resource jobs.x is defined twice" in err.message and "a.yml:3" in err.message
    assert err.file.endswith("b.yml") and err.line == 3


def test_include_only_in_root(fails):
    err = fails({"databricks.yml": BASE + "include: [a.yml]\n", "a.yml": "include: [b.yml]\n", "b.yml": "{}\n"})
    assert "only allowed in the root" in err.message and err.file.endswith("a.yml")


TARGETS = BASE + """
targets:
  one:
    workspace: {host: https://one.example.com}
  two:
    default: true
    workspace: {host: https://two.example.com/}
  three:
    workspace: {host: three.example.com}
"""


def test_target_selection(load, fails):
    assert load({"databricks.yml": TARGETS}).target == "two"
    assert load({"databricks.yml": TARGETS}).host == "https://two.example.com"
    assert load({"databricks.yml": TARGETS}, "three").host == "https://three.example.com"
    only = BASE + "targets:\n  solo:\n    workspace: {host: https://solo}\n"
    assert load({"databricks.yml": only}).target == "solo"
    err = fails({"databricks.yml": TARGETS}, "four")
    assert err.message == "unknown target 'four'; valid targets: one, two, three"
    assert "--target" in err.hint and err.line == 4


def test_no_default_target_lists_targets(fails):
    err = fails({"databricks.yml": TARGETS.replace("default: true", "default: false")})
    assert "valid targets: one, two, three" in err.message and "default: true" in err.hint


MERGE = BASE + """
sync:
  exclude: [a.txt]
resources:
  jobs:
    j:
      name: job
      max_concurrent_runs: 2
      tags: {team: ml, cost: a}
      email_notifications:
        on_failure: [root@example.com]
      job_clusters:
        - job_cluster_key: c
          new_cluster: {spark_version: "15.4", num_workers: 1, node_type_id: small}
      tasks:
        - task_key: first
          job_cluster_key: c
          spark_python_task: {python_file: /Workspace/x.py, parameters: [a, b]}
        - task_key: second
          depends_on: [{task_key: first}]
          spark_python_task: {python_file: /Workspace/y.py}
targets:
  t:
    sync:
      exclude: [b.txt]
    resources:
      jobs:
        j:
          max_concurrent_runs: 5
          tags: {cost: b}
          email_notifications:
            on_failure: [target@example.com]
          job_clusters:
            - job_cluster_key: c
              new_cluster: {num_workers: 8}
          tasks:
            - task_key: first
              spark_python_task: {parameters: [c]}
            - task_key: third
              spark_python_task: {python_file: /Workspace/z.py}
"""


def test_target_merge_by_key_and_replacement(load):
    job = load({"databricks.yml": MERGE}, "t").resources["jobs"]["j"].settings
    assert job["max_concurrent_runs"] == 5
    assert job["tags"] == {"team": "ml", "cost": "b"}                              # maps deep-merge
    assert job["email_notifications"]["on_failure"] == ["target@example.com"]     # lists replaced
    assert job["job_clusters"] == [{"job_cluster_key": "c", "new_cluster": {
        "spark_version": "15.4", "num_workers": 8, "node_type_id": "small"}}]     # merged by key
    tasks = {t["task_key"]: t for t in job["tasks"]}
    assert [t["task_key"] for t in job["tasks"]] == ["first", "second", "third"]
    assert tasks["first"]["spark_python_task"] == {"python_file": "/Workspace/x.py", "parameters": ["c"]}
    assert tasks["first"]["job_cluster_key"] == "c"
    assert tasks["second"]["depends_on"] == [{"task_key": "first"}]


def test_target_sync_lists_extend(load):
    b = load({"databricks.yml": MERGE}, "t")
    assert b.settings["sync"]["exclude"] == ["a.txt", "b.txt"]


def test_malformed_yaml_names_the_line(fails):
    err = fails({"databricks.yml": "bundle:\n  name: demo\nresources:\n  jobs:\n    j:\n      name: [unclosed\n"})
    assert err.message.startswith("invalid YAML") and err.line in (6, 7)
    assert err.file.endswith("databricks.yml") and "fix the YAML" in err.hint


def test_malformed_included_file_names_that_file(fails):
    err = fails({"databricks.yml": BASE + "include: [r.yml]\n", "r.yml": "resources:\n  jobs: {a: 1\n"})
    assert err.file.endswith("r.yml") and err.line is not None


def test_duplicate_key_is_an_error(fails):
    err = fails({"databricks.yml": "bundle:\n  name: a\n  name: b\n"})
    assert "defined twice" in err.message and err.line == 3


def test_yaml_12_scalars(load):
    b = load({"databricks.yml": BASE + """
resources:
  jobs:
    j:
      name: job
      tags: {country: NO, flag: on, when: 2024-01-01, n: 0777}
"""})
    assert b.resources["jobs"]["j"].settings["tags"] == {"country": "NO", "flag": "on", "when": "2024-01-01",
                                                          "n": "777"}


def test_anchors_and_merge_keys(load):
    b = load({"databricks.yml": BASE + """
x-cluster: &cluster
  spark_version: "15.4"
  num_workers: 2
resources:
  jobs:
    j:
      name: job
      job_clusters:
        - job_cluster_key: c
          new_cluster:
            <<: *cluster
            num_workers: 4
"""})
    assert b.resources["jobs"]["j"].settings["job_clusters"][0]["new_cluster"] == {"spark_version": "15.4",
                                                                                   "num_workers": 4}
    # a top-level key that only holds an anchor is dropped silently, as the Databricks CLI does
    assert not any("x-cluster" in w.message for w in b.warnings) and "x-cluster" not in b.settings


def test_unknown_fields_are_warnings_with_lines(load):
    b = load({"databricks.yml": BASE + """
resources:
  jobs:
    j:
      name: job
      colour: blue
      tasks:
        - task_key: a
          notebok_task: {}
"""})
    found = {(w.message.split("'")[1], w.line) for w in b.warnings}
    assert ("resources.jobs.j.colour", 8) in found
    assert ("resources.jobs.j.tasks[0].notebok_task", 11) in found
    assert all(w.file.endswith("databricks.yml") for w in b.warnings)


@pytest.mark.parametrize("snippet, words, line", [
    ("      max_concurrent_runs: many\n", "resources.jobs.j.max_concurrent_runs must be an integer", 7),
    ("      tasks: {a: 1}\n", "resources.jobs.j.tasks must be a list", 7),
    ("      tags: [a, b]\n", "resources.jobs.j.tags must be a mapping", 7),
    ("      schedule: {quartz_cron_expression: [x]}\n", "schedule.quartz_cron_expression must be a string", 7),
])
def test_wrong_types_are_errors(fails, snippet, words, line):
    err = fails({"databricks.yml": BASE + "resources:\n  jobs:\n    j:\n      name: job\n" + snippet})
    assert words in err.message and err.line == line and err.hint


def test_scalars_are_normalised_like_the_cli(load):
    b = load({"databricks.yml": BASE + """
resources:
  jobs:
    j:
      name: 123
      max_concurrent_runs: "3"
      tasks:
        - task_key: a
          notebook_task:
            notebook_path: /Workspace/nb
            base_parameters: {rows: 1000, ok: true, rate: 0.5}
"""})
    job = b.resources["jobs"]["j"].settings
    assert job["name"] == "123" and job["max_concurrent_runs"] == 3
    assert job["tasks"][0]["notebook_task"]["base_parameters"] == {"rows": "1000", "ok": "true", "rate": "0.5"}


def test_a_broken_link_or_a_folder_matched_by_include_is_an_error(fails, write, tmp_path):
    files = {"databricks.yml": BASE + "include:\n  - resources/*.yml\n", "resources/job.yml": "{}\n"}
    root = write(files)
    (root / "resources" / "link.yml").symlink_to("/nonexistent/job.yml")
    err = fails(files)
    assert "include pattern 'resources/*.yml' matches resources/link.yml, a symbolic link to " \
           "'/nonexistent/job.yml', which does not exist" in err.message
    assert err.file.endswith("databricks.yml") and err.line == 4
    (root / "resources" / "link.yml").unlink()
    (root / "resources" / "x.yml").mkdir()
    err = fails(files)
    assert "matches resources/x.yml, which is a folder, not a YAML file" in err.message
