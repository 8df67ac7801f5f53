"""``stackci validate`` asking a workspace (the local one, over HTTP) who the current user is."""

from __future__ import annotations

import json


from conftest import NOTEBOOK  # type: ignore[import-not-found]




def bundle(host: str) -> dict[str, str]:
    return {
        "databricks.yml": f"""
            bundle:
              name: who
            targets:
              dev:
                mode: development
                default: true
                workspace:
                  host: {host}
            resources:
              jobs:
                nightly:
                  name: nightly
                  tasks:
                    - task_key: t
                      notebook_task:
                        notebook_path: ./nb.py
            """,
        "nb.py": NOTEBOOK,
    }


def test_current_user_comes_from_the_workspace(run_cli, write, ws):
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    me = WorkspaceClient(config=Config(host=ws.url, token=ws.token, auth_type="pat")).current_user.me().user_name
    root = write(bundle(ws.url))
    result = run_cli(["validate", "--project", str(root), "--output", "json"], platform="local",
                     env={"DATABRICKS_TOKEN": ws.token, "DATABRICKS_AUTH_TYPE": "pat", "STACKCI_CURRENT_USER": "",
                          "DATABRICKS_HOST": ""})
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    from stackci.bundle import short_name

    short = short_name(me)
    assert short and "@" not in short
    assert data["resources"]["jobs"]["nightly"]["name"] == f"[dev {short}] nightly"
    assert data["workspace"]["root_path"] == f"/Workspace/Users/{me}/.bundle/who/dev"


def test_a_wrong_token_is_a_clear_error(run_cli, write, ws):
    root = write(bundle(ws.url))
    result = run_cli(["validate", "--project", str(root)], platform="local",
                     env={"DATABRICKS_TOKEN": "dapi-wrong", "DATABRICKS_AUTH_TYPE": "pat", "STACKCI_CURRENT_USER": "",
                          "DATABRICKS_HOST": ""})
    assert result.code == 2
    assert ws.url in result.stderr and "Traceback" not in result.stderr
