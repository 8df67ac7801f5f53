"""Naming of isolated copies from the CI environment."""

from __future__ import annotations

import json

import pytest

from stackci.errors import ConfigError
from stackci.runs.isolation import TAG_COPY, copy_root, isolation_id, overrides


def test_github_pull_request_and_push(tmp_path):
    env = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "9001", "GITHUB_RUN_ATTEMPT": "1",
           "GITHUB_REF": "refs/pull/42/merge"}
    assert isolation_id(env) == "pr42-9001"
    assert isolation_id({**env, "GITHUB_RUN_ATTEMPT": "2"}) == "pr42-9001-2"
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}}))
    assert isolation_id({**env, "GITHUB_REF": "refs/heads/feature", "GITHUB_EVENT_PATH": str(event)}) == "pr7-9001"
    assert isolation_id({**env, "GITHUB_REF": "refs/heads/main"}) == "run9001"


def test_azure_pull_request():
    env = {"TF_BUILD": "True", "BUILD_BUILDID": "314", "SYSTEM_PULLREQUEST_PULLREQUESTID": "12"}
    assert isolation_id(env) == "pr12-314"
    assert isolation_id({"TF_BUILD": "True", "BUILD_BUILDID": "314"}) == "run314"


def test_explicit_ids_are_cleaned_and_required_locally():
    assert isolation_id({}, "My Branch/ÄB") == "my-branch-b"
    with pytest.raises(ConfigError) as info:
        isolation_id({})
    assert "--isolation-id" in info.value.one_line()
    with pytest.raises(ConfigError):
        isolation_id({}, "///")


def test_overrides_layer():
    layer = overrides("/Workspace/Shared/.bundle/churn/test", "pr7-1", now=1700000000)
    assert layer["workspace"]["root_path"] == "/Workspace/Shared/.bundle/churn/test-ci/pr7-1"
    assert layer["presets"]["name_prefix"] == "[ci pr7-1] "
    assert layer["presets"]["tags"] == {TAG_COPY: "pr7-1", "stackci-ci-created": "1700000000"}
    assert copy_root("/a/b/", "x") == "/a/b-ci/x"
