"""Fixtures for the runs tests: a local workspace per test, the SDK client on it, the
environment a CI step would have, and a copy of the example project (plus a slow job)."""

from __future__ import annotations

import pytest


#: the CI ids of whatever runs this suite must not leak into a test's step (blank = unset)
NOT_IN_CI = {"GITHUB_RUN_ID": "", "GITHUB_RUN_ATTEMPT": "", "GITHUB_JOB": "", "GITHUB_REF": "",
             "GITHUB_EVENT_PATH": "", "BUILD_BUILDID": "", "SYSTEM_JOBATTEMPT": "",
             "SYSTEM_PULLREQUEST_PULLREQUESTID": "", "SYSTEM_PULLREQUEST_PULLREQUESTNUMBER": ""}


@pytest.fixture
def env(ws):
    return {"DATABRICKS_HOST": ws.url, "DATABRICKS_TOKEN": ws.token, "DATABRICKS_AUTH_TYPE": "pat",
            "STACKCI_HOST": ws.url, **NOT_IN_CI}


@pytest.fixture
def project(tmp_path):
    from itest_support import make_project

    return make_project(tmp_path / "project")
