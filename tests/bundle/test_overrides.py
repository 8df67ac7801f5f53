"""load_bundle(overrides=...): one more layer over the target, for isolated copies and the local workspace."""

from __future__ import annotations

from bundle_support import NOTEBOOK  # type: ignore[import-not-found]

FILES = {
    "databricks.yml": """
        bundle:
          name: iso
        targets:
          test:
            default: true
            workspace:
              host: https://adb-1.azuredatabricks.net
              root_path: /Workspace/Shared/.bundle/iso/test
            presets:
              tags:
                team: ml
        resources:
          jobs:
            train:
              name: ${bundle.target}-train
              schedule:
                quartz_cron_expression: "0 0 * * * ?"
                timezone_id: UTC
              tasks:
                - task_key: t
                  notebook_task:
                    notebook_path: ./nb.py
        """,
    "nb.py": NOTEBOOK,
}


def test_overrides_replace_paths_and_add_presets(load):
    b = load(FILES, overrides={
        "workspace": {"host": "http://127.0.0.1:8080", "root_path": "/Workspace/Shared/.bundle/iso/ci/pr-7"},
        "presets": {"name_prefix": "[ci pr-7] ", "tags": {"stackci-ci-copy": "pr-7"},
                    "trigger_pause_status": "PAUSED"}})
    assert b.host == "http://127.0.0.1:8080"
    assert b.root_path == "/Workspace/Shared/.bundle/iso/ci/pr-7"
    assert b.file_path == "/Workspace/Shared/.bundle/iso/ci/pr-7/files"
    job = b.resources["jobs"]["train"]
    assert job.name == "[ci pr-7] test-train"
    assert job.settings["tags"] == {"team": "ml", "stackci-ci-copy": "pr-7"}
    assert job.settings["schedule"]["pause_status"] == "PAUSED"


def test_without_overrides_nothing_changes(load):
    b = load(FILES)
    assert b.root_path == "/Workspace/Shared/.bundle/iso/test"
    assert b.resources["jobs"]["train"].name == "test-train"
    assert b.resources["jobs"]["train"].settings.get("schedule", {}).get("pause_status") in (None, "UNPAUSED")
