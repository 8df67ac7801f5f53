"""Workspace paths, local path translation, deployment modes, presets, files to sync."""

from __future__ import annotations

import pytest

from bundle_support import NOTEBOOK  # type: ignore[import-not-found]

JOB = """
bundle: {name: demo}
include: [resources/*.yml]
targets:
  dev:
    mode: development
  plain:
    default: true
"""
RES = """
resources:
  jobs:
    j:
      name: my-job
      schedule: {quartz_cron_expression: "0 0 7 * * ?", timezone_id: UTC}
      tasks:
        - task_key: nb
          notebook_task: {notebook_path: ../src/nb.py}
        - task_key: py
          spark_python_task: {python_file: ../src/main.py}
          libraries:
            - whl: ../dist/*.whl
            - pypi: {package: requests}
        - task_key: remote
          notebook_task: {notebook_path: /Workspace/Shared/other}
"""
FILES = {"databricks.yml": JOB, "resources/job.yml": RES, "src/nb.py": NOTEBOOK, "src/main.py": "print(1)\n",
         "dist/demo-0.1-py3-none-any.whl": "zip"}


def test_workspace_path_defaults(load):
    b = load(FILES)
    root = "/Workspace/Users/alice.smith@example.com/.bundle/demo/plain"
    assert (b.root_path, b.file_path, b.state_path, b.artifact_path) == (
        root, root + "/files", root + "/state", root + "/artifacts")


def test_explicit_paths_get_the_workspace_prefix(load):
    b = load({"databricks.yml": "bundle: {name: d}\nworkspace:\n  root_path: /Users/bob/x\n  state_path: ~/st\n"})
    assert b.root_path == "/Workspace/Users/bob/x" and b.file_path == "/Workspace/Users/bob/x/files"
    assert b.state_path == "/Workspace/Users/alice.smith@example.com/st"


def test_paths_are_relative_to_the_declaring_file(load):
    b = load(FILES)
    tasks = b.resources["jobs"]["j"].settings["tasks"]
    files = b.file_path
    assert tasks[0]["notebook_task"]["notebook_path"] == f"{files}/src/nb"            # notebook: no extension
    assert tasks[1]["spark_python_task"]["python_file"] == f"{files}/src/main.py"
    assert tasks[1]["libraries"][0]["whl"] == f"{files}/dist/*.whl"
    assert tasks[1]["libraries"][1] == {"pypi": {"package": "requests"}}
    assert tasks[2]["notebook_task"]["notebook_path"] == "/Workspace/Shared/other"
    kinds = {t.kind: t.local.relative_to(b.root).as_posix() for t in b.translated_paths}
    assert kinds == {"notebook": "src/nb.py", "file": "src/main.py", "library": "dist/*.whl"}


@pytest.mark.parametrize("change, words, line", [
    (("../src/nb.py", "../../outside/nb.py"), "outside the bundle root", 8),
    (("../src/main.py", "../src/missing.py"), "file '../src/missing.py' not found", 10),
    (("../src/nb.py", "../src/main.py"), "is a file, not a notebook", 8),
    (("python_file: ../src/main.py", "python_file: ../src/nb.py"), "is a notebook, not a file", 10),
])
def test_bad_paths(fails, change, words, line):
    err = fails({**FILES, "resources/job.yml": RES.replace(*change)})
    assert words in err.message and err.file.endswith("resources/job.yml") and err.line == line and err.hint


def test_missing_wheel_is_a_warning(load):
    b = load({k: v for k, v in FILES.items() if not k.startswith("dist/")})
    assert any("does not exist yet" in w.message and w.line == 12 for w in b.warnings)


def test_development_mode(load):
    res = RES.replace("      tasks:", "      max_concurrent_runs: 1\n      tags: {dev: mine}\n      tasks:", 1) + """
    k:
      name: other
      trigger: {file_arrival: {url: /Volumes/x}}
      continuous: {pause_status: UNPAUSED}
  experiments:
    e: {name: /Shared/exp}
  registered_models:
    m: {name: model, catalog_name: c, schema_name: s}
"""
    b = load({**FILES, "resources/job.yml": res}, "dev")
    j, k = b.resources["jobs"]["j"].settings, b.resources["jobs"]["k"].settings
    assert j["name"] == "[dev alice_smith] my-job" and k["name"] == "[dev alice_smith] other"
    assert j["schedule"]["pause_status"] == "PAUSED" and k["trigger"]["pause_status"] == "PAUSED"
    assert k["continuous"]["pause_status"] == "UNPAUSED"          # an explicit UNPAUSED wins
    assert j["max_concurrent_runs"] == 1 and k["max_concurrent_runs"] == 4
    assert j["tags"] == {"dev": "mine"} and k["tags"] == {"dev": "alice_smith"}
    assert b.resources["experiments"]["e"].name == "/Shared/[dev alice_smith] exp"
    assert b.resources["registered_models"]["m"].full_name == "c.s.dev_alice_smith_model"
    assert b.lock_enabled is False
    assert b.resources["jobs"]["j"].settings["tasks"][0]["notebook_task"]["notebook_path"].startswith(
        "/Workspace/Users/alice.smith@example.com/.bundle/demo/dev/files/")


def test_development_lock_can_be_enabled_and_root_must_be_personal(load, fails):
    b = load({**FILES, "databricks.yml": JOB.replace("    mode: development\n", "    mode: development\n    bundle:\n"
                                                     "      deployment: {lock: {enabled: true}}\n")}, "dev")
    assert b.lock_enabled is True
    err = fails({**FILES, "databricks.yml": JOB.replace("    mode: development\n", "    mode: development\n"
                                                        "    workspace: {root_path: /Workspace/Shared/x}\n")}, "dev")
    assert "mode: development" in err.message and "~/" in err.hint and err.line == 6


PROD = """
bundle: {name: demo}
targets:
  prod:
    mode: production
    workspace:
      root_path: /Workspace/Shared/.bundle/demo/prod
resources:
  jobs:
    j:
      name: ${bundle.target}-job
      schedule: {quartz_cron_expression: "0 0 7 * * ?", timezone_id: UTC}
"""


def test_production_mode(load, fails):
    b = load({"databricks.yml": PROD}, "prod")
    j = b.resources["jobs"]["j"].settings
    assert j["name"] == "prod-job" and "pause_status" not in j["schedule"] and b.lock_enabled
    assert any("run_as" in w.message for w in b.warnings)
    err = fails({"databricks.yml": PROD.replace("      root_path: /Workspace/Shared/.bundle/demo/prod\n", "")},
                "prod")
    assert "workspace.root_path is not set" in err.message and "root_path" in err.hint
    home = PROD.replace("/Workspace/Shared/.bundle", "/Workspace/Users/bob@example.com/.bundle")
    err = fails({"databricks.yml": home}, "prod")
    assert "home folder of bob@example.com" in err.message and err.line == 6
    ok = load({"databricks.yml": home.replace("    mode: production\n",
                                              "    mode: production\n    run_as: {user_name: bob@example.com}\n")},
              "prod")
    assert ok.root_path == "/Workspace/Users/bob@example.com/.bundle/demo/prod"
    err = fails({"databricks.yml": PROD.replace("${bundle.target}-job", "'[dev bob] job'")}, "prod")
    assert "development name" in err.message and err.line == 10


def test_presets(load):
    b = load({"databricks.yml": """
bundle: {name: demo}
presets:
  name_prefix: "[ci] "
  tags: {owner: ci, team: shared}
  trigger_pause_status: PAUSED
  jobs_max_concurrent_runs: 7
resources:
  jobs:
    j:
      name: job
      tags: {team: ml}
      schedule: {quartz_cron_expression: "0 0 7 * * ?", timezone_id: UTC, pause_status: UNPAUSED}
    k:
      name: other
      max_concurrent_runs: 2
      schedule: {quartz_cron_expression: "0 0 7 * * ?", timezone_id: UTC}
"""})
    j, k = b.resources["jobs"]["j"].settings, b.resources["jobs"]["k"].settings
    assert (j["name"], k["name"]) == ("[ci] job", "[ci] other")
    assert j["tags"] == {"team": "ml", "owner": "ci"} and k["tags"] == {"owner": "ci", "team": "shared"}
    assert j["schedule"]["pause_status"] == "UNPAUSED" and k["schedule"]["pause_status"] == "PAUSED"
    assert (j["max_concurrent_runs"], k["max_concurrent_runs"]) == (7, 2)


def test_sync_honours_gitignore_and_sync_rules(write, load):
    root = write({
        "databricks.yml": "bundle: {name: d}\nsync:\n  include: [build/keep.txt]\n  exclude: ['*.log', docs/]\n",
        ".gitignore": "build/\n*.tmp\n!important.tmp\n/top-only.txt\n",
        "src/a.py": "", "src/b.tmp": "", "src/important.tmp": "", "src/top-only.txt": "", "top-only.txt": "",
        "src/nested/.gitignore": "secret.txt\n", "src/nested/secret.txt": "", "src/nested/ok.txt": "",
        "build/keep.txt": "", "build/drop.txt": "", "run.log": "", "docs/index.md": "",
        ".databricks/bundle/state.json": "", "data/deep/x.csv": "",
    })
    (root / ".git").mkdir()
    files = load({}).sync_files
    assert sorted(files) == [".gitignore", "build/keep.txt", "data/deep/x.csv", "databricks.yml", "src/a.py",
                             "src/important.tmp", "src/nested/.gitignore", "src/nested/ok.txt", "src/top-only.txt"]
    f = files["src/a.py"]
    assert f.path == root.resolve() / "src" / "a.py"
    assert f.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_sync_uses_the_repository_gitignore_above_the_bundle(tmp_path):
    from stackci.bundle import load_bundle
    repo = tmp_path / "repo"
    (repo / ".git" / "info").mkdir(parents=True)
    (repo / ".git" / "info" / "exclude").write_text("*.secret\n")
    (repo / ".gitignore").write_text("*.pyc\nproject/generated/\n")
    project = repo / "project"
    for rel, text in {"databricks.yml": "bundle: {name: d}\n", "nb.py": NOTEBOOK, "x.pyc": "",
                      "generated/out.txt": "", "k.secret": "", "keep.py": ""}.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    b = load_bundle(project, env={}, current_user="a@b.c")
    assert sorted(b.sync_files) == ["databricks.yml", "keep.py", "nb.py"]
    assert b.sync_files["nb.py"].remote_path(b.file_path) == b.file_path + "/nb"
    assert b.sync_files["keep.py"].remote_path(b.file_path) == b.file_path + "/keep.py"


def test_local_report_folders_are_never_uploaded(write, load):
    """stackci's local reports (.stackci/, e.g. unit-tests.xml from a run outside CI) and the Databricks
    CLI's local folder (.databricks/, the other engine) are never synced, even when sync.include asks."""
    write({
        "databricks.yml": "bundle: {name: d}\nsync:\n  include: ['**/*.xml', '.stackci/**']\n",
        "src/a.py": "", "src/report.xml": "",
        ".stackci/unit-tests.xml": "<testsuites/>", ".stackci/run-job.xml": "<testsuites/>",
        "sub/.stackci/integration-test.xml": "<testsuites/>",
        ".databricks/bundle/dev/sync-snapshots/x.json": "{}",
    })
    assert sorted(load({}).sync_files) == ["databricks.yml", "src/a.py", "src/report.xml"]
