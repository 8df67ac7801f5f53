"""``stackci destroy`` of a 'mode: production' target needs --auto-approve (or the target's name typed at
a terminal); --dry-run lists what would go, in aligned columns; folders that cannot be removed for any
other reason than being non-empty or gone are a warning, never silence."""

from __future__ import annotations

import os
import re

from deploy_support import USER, cli_subprocess, jobs_by_name, tree  # type: ignore[import-not-found]

PROD_ROOT = "/Workspace/Shared/.bundle/churn_model/prod"
PROD_JOBS = ["prod-churn_model-batch-inference-job", "prod-churn_model-model-training-job"]


def test_a_production_target_is_not_destroyed_without_approval(deploy, w):
    assert deploy(target="prod").code == 0
    dry = deploy("--dry-run", command="destroy", target="prod")
    assert dry.code == 0, dry.stderr
    lines = [line for line in dry.stderr.splitlines() if line.startswith("  - ")]
    assert len(lines) == 4
    assert len({re.match(r"  - \S+ +", line).end() for line in lines}) == 1          # one column for the names
    assert "4 resources and 23 files from /Workspace/Shared/.bundle/churn_model/prod would be removed; dry run" \
        in dry.stderr

    for platform in ("github", "local"):        # in CI, and on a laptop without a terminal on stdin
        refused = deploy(command="destroy", target="prod", platform=platform)
        assert refused.code == 2, refused.stderr
        said = refused.stdout + refused.stderr
        assert "refusing to destroy target 'prod': it is 'mode: production' (4 resources and 23 files from " \
               f"{PROD_ROOT})" in said
        assert "--auto-approve (STACKCI_AUTO_APPROVE=true)" in said and "Traceback" not in said
    assert sorted(jobs_by_name(w)) == PROD_JOBS and tree(w, f"{PROD_ROOT}/state")

    approved = deploy(command="destroy", target="prod", extra_env={"STACKCI_AUTO_APPROVE": "true"})
    assert approved.code == 0, approved.stderr
    assert approved.outputs["deleted"] == "4" and jobs_by_name(w) == {}


def test_other_targets_need_no_approval(deploy, w):
    assert deploy().code == 0
    assert deploy(command="destroy").code == 0 and jobs_by_name(w) == {}


def test_on_a_terminal_the_target_name_must_be_typed(deploy, env, project, w):
    assert deploy(target="prod").code == 0
    job_env = {k: v for k, v in env.items()}

    def destroy_typing(answer: str):
        master, slave = os.openpty()
        try:
            proc = cli_subprocess(["destroy", "-t", "prod", "--project", str(project)], job_env, stdin=slave)
            os.close(slave)
            os.write(master, answer.encode() + b"\n")
            out, err = proc.communicate(timeout=120)
        finally:
            os.close(master)
        return proc.returncode, err

    code, err = destroy_typing("staging")
    assert code == 2 and "Type the target name (prod) to destroy it" in err
    assert "not destroying target 'prod': the answer was not its name" in err
    assert sorted(jobs_by_name(w)) == PROD_JOBS
    code, err = destroy_typing("prod")
    assert code == 0, err
    assert "target 'prod' is 'mode: production': destroy removes 4 resources and 23 files" in err
    assert jobs_by_name(w) == {}


def test_engine_cli_asks_for_the_same_approval(run_cli, tmp_path):
    (tmp_path / "databricks.yml").write_text(
        "bundle: {name: x}\ntargets:\n  prod:\n    mode: production\n    workspace: {root_path: /Shared/x}\n")
    result = run_cli(["destroy", "-t", "prod", "--project", str(tmp_path), "--engine", "cli"])
    assert result.code == 2
    [error] = result.errors()
    assert error.data.startswith("refusing to destroy target 'prod': it is 'mode: production'")


def test_a_folder_that_cannot_be_removed_is_a_warning(deploy, ws, w):
    from refusing_proxy import RefusingProxy  # type: ignore[import-not-found]

    root = f"/Workspace/Users/{USER}/.bundle/churn_model/staging"
    assert deploy().code == 0
    proxy = RefusingProxy(ws.url, lambda method, path, doc: (403, "PERMISSION_DENIED", "no manage permission")
                          if path == "/api/2.0/workspace/delete" and doc.get("path") == root else None)
    try:
        result = deploy(command="destroy", extra_env={"STACKCI_HOST": proxy.url})
    finally:
        proxy.close()
    assert result.code == 0, result.stderr
    assert jobs_by_name(w) == {}
    [warning] = [c for c in result.commands if c.name == "warning" and "could not remove" in c.data]
    assert warning.data == f"could not remove the folder {root} (PERMISSION_DENIED: no manage permission); it is " \
                           "left in the workspace"
    assert tree(w, root) == {}                           # empty, but there


def test_folders_holding_other_files_are_left_without_a_word(deploy, w):
    from databricks.sdk.service.workspace import ImportFormat

    root = f"/Workspace/Users/{USER}/.bundle/churn_model/staging"
    assert deploy().code == 0
    w.workspace.import_(f"{root}/files/notes.txt", content="bm90ZXM=", format=ImportFormat.AUTO)
    result = deploy(command="destroy")
    assert result.code == 0, result.stderr
    assert not [c for c in result.commands if c.name == "warning" and "could not remove" in c.data]
    assert tree(w, f"{root}/files") == {f"{root}/files/notes.txt": "FILE"}
