"""``stackci plan`` of several targets, and ``--comment``: one pull-request comment on GitHub or Azure
Repos (a loopback fake of both, tests/hosting/fake_hosting.py) with a table per target, updated in
place on later pushes, against the local workspace."""

from __future__ import annotations

import json
import re

import pytest

from conftest import SMALL_BUNDLE, write_bundle  # type: ignore[import-not-found]
from hosting.fake_hosting import FakeHosting  # type: ignore[import-not-found]

TWO_TARGETS = SMALL_BUNDLE["databricks.yml"].replace("""
            default: true
            workspace:
              host: https://adb-2222222222222222.12.azuredatabricks.net
""", """
            default: true
            workspace:
              host: https://adb-2222222222222222.12.azuredatabricks.net
          prod:
            mode: production
            workspace:
              host: https://adb-3333333333333333.13.azuredatabricks.net
              root_path: /Workspace/Shared/.bundle/small/prod
""")
MARKER = "<!-- stackci:plan:small -->"


@pytest.fixture
def bundle(tmp_path):
    return write_bundle(tmp_path / "two", {**SMALL_BUNDLE, "databricks.yml": TWO_TARGETS})


@pytest.fixture
def fake():
    server = FakeHosting()
    yield server
    server.close()


@pytest.fixture
def gh_event(tmp_path):
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"number": 7, "pull_request": {"number": 7, "head": {"sha": "feedface" * 5}}}))
    return str(path)


@pytest.fixture
def plan(run_cli, env, bundle):
    def run(*args, extra_env=None, platform="github", root=None):
        argv = ["plan", "--project", str(root or bundle), *args]
        return run_cli(argv, env={**env, **(extra_env or {})}, platform=platform)
    return run


def ours(fake, number=7):
    return [c for c in fake.comments.get(number, []) if MARKER in c["body"]]


def test_several_targets_sum_the_outputs_and_report_each(plan):
    result = plan("-t", "staging", "-t", "prod")
    assert result.code == 0, result.stderr
    plans = json.loads(result.outputs["plans"])
    assert set(plans) == {"staging", "prod"}
    assert plans["staging"]["create"] == 4 and plans["prod"]["create"] == 4
    assert result.outputs["to-create"] == "8"
    assert result.outputs["files-to-upload"] == str(plans["staging"]["files_upload"] * 2)
    assert result.outputs["has-changes"] == "true" and result.outputs["comment-url"] == ""
    assert "Plan for bundle small, target staging" in result.stderr
    assert "Plan for bundle small, target prod" in result.stderr
    assert "### Plan: `small` → `staging`" in result.summary and "### Plan: `small` → `prod`" in result.summary


def test_targets_from_the_environment_split_on_whitespace_and_newlines(plan):
    result = plan("-o", "json", platform="local", extra_env={"STACKCI_TARGET": "staging\n prod staging"})
    assert result.code == 0, result.stderr
    assert list(json.loads(result.stdout)["plans"]) == ["staging", "prod"]


def test_every_target_is_checked_before_the_workspace_is_asked(plan, requests_counter):
    requests_counter.start()
    result = plan("-t", "staging", "-t", "nope", "--user", "someone@example.com")
    assert result.code == 2
    [error] = result.errors()
    assert "nope" in error.data and "staging, prod" in error.data
    assert requests_counter.stop() == 0           # not even the state of staging was read
    assert "Plan for bundle" not in result.stderr and "plans" not in result.outputs


def test_comment_is_created_then_updated_in_place_on_the_next_push(plan, fake, gh_event, deploy, bundle):
    env = fake.github_env(gh_event)
    first = plan("-t", "staging", "-t", "prod", "--comment", extra_env=env)
    assert first.code == 0, first.stderr
    [comment] = ours(fake)
    assert first.outputs["comment-url"] == comment["html_url"]
    body = comment["body"]
    assert body.startswith(MARKER)
    assert "## 📋 Deployment plan for `small`" in body
    assert "| `staging` | yes | 4 | 0 | 0 | 0 |" in body and "| `prod` | yes | 4 | 0 | 0 | 0 |" in body
    assert "### Plan: `small` → `staging`" in body and "### Plan: `small` → `prod`" in body
    assert "| `jobs.a` | `small-a` | ➕ create | `new` |" in body
    assert "commit `feedfacefeed`" in body                      # the PR head, not the merge commit
    assert "[CI run](https://github.com/acme/churn/actions/runs/4242)" in body
    # the token is masked first, and never printed otherwise
    log = (first.stdout + first.stderr).splitlines()
    assert [line for line in log if "ghs_fake_token" in line] == ["::add-mask::ghs_fake_token"]
    assert log.index("::add-mask::ghs_fake_token") == 0

    # the next push: staging was deployed meanwhile, so its plan has no changes left
    assert deploy(root=bundle, target="staging").code == 0
    second = plan("-t", "staging", "-t", "prod", "--comment", extra_env=env)
    assert second.code == 0, second.stderr
    [again] = ours(fake)
    assert again["id"] == comment["id"] and second.outputs["comment-url"] == comment["html_url"]
    assert "| `staging` | no | 0 | 0 | 0 | 4 |" in again["body"]
    assert "No resource changes." in again["body"]
    assert [m for m, p in fake.requests if m == "POST"] == ["POST"]   # created once, then PATCHed
    assert ("PATCH", f"/github/repos/acme/churn/issues/comments/{comment['id']}") in fake.requests


def test_our_comment_is_found_beyond_the_first_page(plan, fake, gh_event):
    for i in range(120):
        fake.add_github_comment(7, f"review comment {i}")
    mine = fake.add_github_comment(7, f"{MARKER}\nold plan")
    for i in range(30):
        fake.add_github_comment(7, f"later comment {i}")
    result = plan("-t", "staging", "--comment", extra_env=fake.github_env(gh_event))
    assert result.code == 0, result.stderr
    assert [c["id"] for c in ours(fake)] == [mine["id"]] and "old plan" not in mine["body"]
    assert len(fake.comments[7]) == 151
    pages = [p for m, p in fake.requests if m == "GET"]
    assert len(pages) == 2                                    # per_page=100: the marker was on page 2


def test_a_token_without_write_permission_says_which_one(plan, fake, gh_event):
    fake.deny_write = True
    result = plan("-t", "staging", "--comment", extra_env=fake.github_env(gh_event))
    assert result.code == 2
    [error] = result.errors()
    assert "403" in error.data and "pull-requests: write" in error.data and "permissions:" in error.data
    assert "Traceback" not in result.stderr and fake.comments.get(7, []) == []


def test_outside_a_pull_request_the_comment_is_skipped_with_a_notice(plan, fake):
    env = fake.github_env(None, ref="refs/heads/main")
    result = plan("-t", "staging", "--comment", extra_env=env)
    assert result.code == 0, result.stderr
    [notice] = [c for c in result.commands if c.name == "notice"]
    assert "does not run for a pull request" in notice.data
    assert fake.requests == [] and result.outputs["comment-url"] == ""
    assert result.outputs["to-create"] == "4"
    local = plan("-t", "staging", "--comment", platform="local")
    assert local.code == 0 and "not a GitHub Actions or Azure Pipelines job" in local.stderr


def test_comment_without_a_token_is_refused_before_anything_runs(plan, fake, gh_event, requests_counter):
    env = {**fake.github_env(gh_event), "GITHUB_TOKEN": ""}
    requests_counter.start()
    result = plan("-t", "staging", "--comment", extra_env=env)
    assert result.code == 2 and requests_counter.stop() == 0
    [error] = result.errors()
    assert "--github-token" in error.data and "pull-requests: write" in error.data
    # --github-token (STACKCI_GITHUB_TOKEN) wins over GITHUB_TOKEN
    ok = plan("-t", "staging", "--comment", extra_env={**env, "STACKCI_GITHUB_TOKEN": fake.token})
    assert ok.code == 0, ok.stderr
    assert len(ours(fake)) == 1


def test_azure_repos_thread_is_created_then_updated(plan, fake, deploy, bundle):
    fake.azure_page = 2
    for i in range(3):
        fake.add_azure_thread(42, f"review {i}")
    fake.add_azure_thread(42, f"{MARKER}\nfrom a deleted thread", deleted=True)
    env = fake.azure_env()
    first = plan("-t", "staging", "-t", "prod", "--comment", extra_env=env, platform="azure")
    assert first.code == 0, first.stderr
    mine = [t for t in fake.threads[42] if not t["isDeleted"] and MARKER in t["comments"][0]["content"]]
    assert len(mine) == 1 and mine[0]["status"] == "closed"
    assert first.outputs["comment_url"].endswith(f"/pullrequest/42?discussionId={mine[0]['id']}")
    assert "| `prod` | yes | 4 |" in mine[0]["comments"][0]["content"]
    assert [line for line in (first.stdout + first.stderr).splitlines() if "azure_fake_token" in line] == \
        ["##vso[task.setsecret]azure_fake_token"]

    assert deploy(root=bundle, target="prod").code == 0
    second = plan("-t", "staging", "-t", "prod", "--comment", extra_env=env, platform="azure")
    assert second.code == 0, second.stderr
    again = [t for t in fake.threads[42] if not t["isDeleted"] and MARKER in t["comments"][0]["content"]]
    assert [t["id"] for t in again] == [mine[0]["id"]]
    assert "| `prod` | no | 0 | 0 | 0 | 4 |" in again[0]["comments"][0]["content"]
    assert len(fake.threads[42]) == 5


def test_azure_403_names_the_build_service_permission(plan, fake):
    fake.deny_write = True
    result = plan("-t", "staging", "--comment", extra_env=fake.azure_env(), platform="azure")
    assert result.code == 2
    [error] = [c for c in result.commands if c.name == "task.logissue" and c.properties.get("type") == "error"]
    assert "TF401027" in error.data
    assert "Contribute to pull requests" in error.data and "Build Service" in error.data


HOSTILE = "[click me](https://evil.example/x) ![](https://evil.example/t.png) @octocat <img src=x> **b** | c ``"


def test_names_from_the_bundle_cannot_become_markup(plan, fake, gh_event, tmp_path):
    files = dict(SMALL_BUNDLE)
    files["resources/jobs.yml"] = files["resources/jobs.yml"].replace("name: small-b", f"name: '{HOSTILE}'")
    root = write_bundle(tmp_path / "hostile", files)
    result = plan("-t", "staging", "--comment", root=root, extra_env=fake.github_env(gh_event))
    assert result.code == 0, result.stderr
    [comment] = [c for c in fake.comments[7] if "stackci:plan:small" in c["body"]]
    row = next(line for line in comment["body"].splitlines() if line.startswith("| `jobs.b`"))
    # the name sits in one code span (fence longer than its backticks), its pipe escaped for the table
    assert "| ``` [click me](https://evil.example/x) ![](https://evil.example/t.png) @octocat <img src=x> " \
           "**b** \u200b\\| c `` ``` |" in row
    outside = re.sub(r"(`+).*?\1", "", comment["body"])           # everything outside code spans
    assert "evil.example" not in outside and "@octocat" not in outside and "<img" not in outside


def test_a_huge_plan_stays_under_the_comment_limit(plan, fake, gh_event, tmp_path):
    jobs = "".join(f"""
    job_{i:03d}:
      name: {'x' * 180}-{i:03d}
      tasks:
        - task_key: t
          spark_python_task:
            python_file: ../src/tool.py
""" for i in range(400))
    files = {**SMALL_BUNDLE, "databricks.yml": TWO_TARGETS, "resources/jobs.yml": "resources:\n  jobs:" + jobs}
    for i in range(300):
        files[f"src/gen/{'d' * 60}/file_{i:03d}.py"] = "X = 1\n"
    root = write_bundle(tmp_path / "huge", files)
    result = plan("-t", "staging", "-t", "prod", "--comment", root=root, extra_env=fake.github_env(gh_event))
    assert result.code == 0, result.stderr
    [comment] = [c for c in fake.comments[7] if "stackci:plan:small" in c["body"]]
    assert len(comment["body"]) <= 65536                       # the fake refuses longer bodies, as GitHub does
    assert "more resource changes (the full plan is in the job log)" in comment["body"]
    assert "| `staging` | yes | 400 |" in comment["body"] and "| `prod` | yes | 400 |" in comment["body"]
