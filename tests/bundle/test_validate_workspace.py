"""``stackci validate`` asking a workspace (the local one, over HTTP) who the current user is."""

from __future__ import annotations

import json


from bundle_support import NOTEBOOK  # type: ignore[import-not-found]




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


def test_host_option_is_the_host_shown_and_output(run_cli, write, ws):
    """--host sends validate (and a deploy) to another workspace: the summary and the output say so."""
    root = write(bundle("https://adb-1111111111111111.11.azuredatabricks.net"))
    result = run_cli(["validate", "--project", str(root), "--host", ws.url + "/"],
                     env={"DATABRICKS_TOKEN": ws.token, "DATABRICKS_AUTH_TYPE": "pat", "STACKCI_CURRENT_USER": "",
                          "DATABRICKS_HOST": ""})
    assert result.code == 0, result.stderr
    assert result.outputs["host"] == ws.url
    assert f"host:        {ws.url} (--host; the target's workspace.host is " \
           "https://adb-1111111111111111.11.azuredatabricks.net)" in result.stderr
    assert f"Host <code>{ws.url}</code> (--host; the target's workspace.host is " \
           "<code>https://adb-1111111111111111.11.azuredatabricks.net</code>)" in result.summary


def test_host_option_that_is_not_a_url_is_bad_input(run_cli, write):
    root = write(bundle("https://adb-1111111111111111.11.azuredatabricks.net"))
    result = run_cli(["validate", "--project", str(root), "--host", "ftp://x", "--user", "a@example.com"])
    assert result.code == 2
    [error] = result.errors()
    assert "--host 'ftp://x' is not a workspace URL" in error.data


def test_offline_says_why_the_user_is_unknown_without_asking_for_a_host(run_cli, write):
    root = write(bundle("https://adb-1111111111111111.11.azuredatabricks.net"))
    result = run_cli(["validate", "--project", str(root), "--offline"],
                     env={"DATABRICKS_TOKEN": "dapi-x", "STACKCI_CURRENT_USER": ""})
    assert result.code == 2
    [error] = result.errors()
    assert "needs the current user; --offline: the workspace is not asked who the current user is" in error.data
    assert "--user (STACKCI_CURRENT_USER)" in error.data
    assert "so that stackci can ask" not in error.data and "configure workspace.host" not in error.data
