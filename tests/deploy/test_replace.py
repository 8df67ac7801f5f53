"""A Unity Catalog model whose catalog or schema changes cannot be moved: the plan shows a replace
that deletes the model with its versions, the deploy refuses it without --allow-replace, and with
it the state never loses the record (a deploy that fails half-way converges on the next run).
An empty catalog, schema or name is bad input before anything is changed."""

from __future__ import annotations

import re

from deploy_support import USER, jobs_by_name, read_state  # type: ignore[import-not-found]

ROOT = f"/Workspace/Users/{USER}/.bundle/churn_model/staging"
OLD, NEW = "staging.churn_model.churn_model", "other.churn_model.churn_model"
OTHER = ["--var", "catalog_name=other"]


def models(w) -> list[str]:
    return sorted(m.full_name for m in w.registered_models.list())


def add_version(w, full_name: str) -> None:
    w.api_client.do("POST", f"/api/2.1/unity-catalog/models/{full_name}/versions",
                    body={"source": "dbfs:/tmp/model", "run_id": "r1"})


def test_a_catalog_change_is_planned_as_a_replace_and_refused_without_the_flag(deploy, w):
    assert deploy().code == 0
    add_version(w, OLD)
    add_version(w, OLD)
    plan = deploy(*OTHER, command="plan")
    assert plan.code == 0, plan.stderr
    assert re.search(r"\n  ± registered_models\.model +replace +other\.churn_model\.churn_model \(", plan.stderr)
    assert "catalog_name 'staging' → 'other': Unity Catalog cannot move a model, so " \
           f"{OLD} is DELETED with its 2 versions, aliases and grants, and an empty {NEW} is created" in plan.stderr
    assert "1 to replace (delete and create again)" in plan.stderr
    assert plan.outputs["to-replace"] == "1" and plan.outputs["to-update"] != "1"
    assert "⚠️ replace (delete, create)" in plan.summary

    dry = deploy(*OTHER, "--dry-run")
    assert dry.code == 0 and "a deploy would refuse this plan without --allow-replace" in dry.stderr

    before = read_state(w, ROOT)
    jobs_before = {name: [j.settings.as_dict() for j in js] for name, js in jobs_by_name(w).items()}
    refused = deploy(*OTHER)
    assert refused.code == 2, refused.stderr
    [error] = refused.errors()
    assert error.data.startswith("refusing to deploy target staging: registered_models.model: catalog_name")
    assert "--allow-replace (STACKCI_ALLOW_REPLACE=true)" in error.data and "nothing was changed" in error.data
    after = read_state(w, ROOT)
    assert models(w) == [OLD] and after["resources"] == before["resources"] and after["files"] == before["files"]
    assert {name: [j.settings.as_dict() for j in js] for name, js in jobs_by_name(w).items()} == jobs_before


def test_with_the_flag_the_model_is_replaced_and_recorded(deploy, w):
    assert deploy().code == 0
    result = deploy(*OTHER, "--allow-replace")
    assert result.code == 0, result.stderr
    assert f"replacing registered_models.model: deleting {OLD}" in result.stderr
    assert "1 replaced" in result.stderr and result.outputs["replaced"] == "1"
    assert models(w) == [NEW]
    state = read_state(w, ROOT)
    assert state["resources"]["registered_models"]["model"]["id"] == NEW and state["pending"] == {}
    [grant] = w.grants.get("function", NEW).privilege_assignments          # grants set on the new model
    assert grant.principal == "account users"
    again = deploy(*OTHER)
    assert again.code == 0 and "0 created, 0 changed, 0 deleted, 4 unchanged" in again.stderr


def test_a_replace_that_fails_half_way_keeps_the_record_and_converges(deploy, w, ws):
    from killproxy import KillPoint, KillProxy  # type: ignore[import-not-found]

    assert deploy().code == 0
    proxy = KillProxy(ws.url)      # the workspace refuses the new model's create, once
    try:
        proxy.arm(KillPoint("POST /api/2.1/unity-catalog/models", 1, "refuse"))
        failed = deploy(*OTHER, "--allow-replace", extra_env={"STACKCI_HOST": proxy.url})
    finally:
        proxy.close()
    assert failed.code == 1, failed.stderr
    [error] = failed.errors()
    assert error.data.startswith("registered_models.model: create failed: INVALID_PARAMETER_VALUE")
    assert models(w) == []                              # the old model was deleted ...
    state = read_state(w, ROOT)
    assert "registered_models" not in state["resources"]                         # ... and recorded as deleted,
    assert state["pending"]["registered_models.model"]["name"] == NEW             # the create is announced
    plan = deploy(*OTHER, command="plan")
    assert re.search(r"\n  \+ registered_models\.model +create +other\.churn_model\.churn_model \(new; an "
                     r"interrupted deploy may have created it already", plan.stderr)
    assert "deleted outside the deploy" not in plan.stderr
    converged = deploy(*OTHER)                          # no replace left: the flag is not needed
    assert converged.code == 0, converged.stderr
    assert models(w) == [NEW] and len(jobs_by_name(w)) == 2


def test_a_new_name_that_exists_already_is_refused_before_the_old_model_is_deleted(deploy, w):
    assert deploy().code == 0
    w.api_client.do("POST", "/api/2.1/unity-catalog/models",
                    body={"catalog_name": "other", "schema_name": "churn_model", "name": "churn_model"})
    result = deploy(*OTHER, "--allow-replace")
    assert result.code == 1
    [error] = result.errors()
    assert f"registered model {NEW} already exists and this deployment did not create it; {OLD} was not " \
           "deleted" in error.data
    assert models(w) == [NEW, OLD]


def test_an_empty_catalog_is_bad_input_everywhere_before_anything_changes(deploy, w):
    assert deploy().code == 0
    for command in ("validate", "plan", "deploy"):
        result = deploy("--var", "catalog_name=", command=command, extra_env={"STACKCI_CURRENT_USER": USER})
        assert result.code == 2, (command, result.stderr)
        [error] = result.errors()
        assert "resources.registered_models.model.catalog_name is empty (target staging)" in error.data
        assert error.properties["file"].endswith("resources/ml-artifacts-resource.yml")
    assert models(w) == [OLD]
    assert read_state(w, ROOT)["resources"]["registered_models"]["model"]["id"] == OLD
