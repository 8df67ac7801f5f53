"""``stackci plan`` of several targets, and ``--comment``: one pull-request comment on GitHub or Azure
Repos (a loopback fake of both, tests/hosting/fake_hosting.py) with a table per target, updated in
place on later pushes, against the local workspace."""

from __future__ import annotations

import json
import re

import pytest

from deploy_support import SMALL_BUNDLE, write_bundle  # type: ignore[import-not-found]
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


@pytest.fixture(autouse=True)
def no_settle(monkeypatch):
    """In-process runs read the comment back at once (the subprocess race test keeps the real pause)."""
    monkeypatch.setattr("stackci.hosting.SETTLE_SECONDS", 0.0)


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
    assert len(pages) == 4          # per_page=100: the marker was on page 2; then both pages read back


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


def huge_bundle() -> dict:
    """Two targets and 400 jobs with 180-character names: a plan far above the comment limit."""
    jobs = "".join(f"""
    job_{i:03d}:
      name: {'x' * 180}-{i:03d}
      tasks:
        - task_key: t
          spark_python_task:
            python_file: ../src/tool.py
""" for i in range(400))
    return {**SMALL_BUNDLE, "databricks.yml": TWO_TARGETS, "resources/jobs.yml": "resources:\n  jobs:" + jobs}


def test_a_huge_plan_stays_under_the_comment_limit(plan, fake, gh_event, tmp_path):
    files = huge_bundle()
    for i in range(300):
        files[f"src/gen/{'d' * 60}/file_{i:03d}.py"] = "X = 1\n"
    root = write_bundle(tmp_path / "huge", files)
    result = plan("-t", "staging", "-t", "prod", "--comment", root=root, extra_env=fake.github_env(gh_event))
    assert result.code == 0, result.stderr
    [comment] = [c for c in fake.comments[7] if "stackci:plan:small" in c["body"]]
    assert len(comment["body"]) <= 65536                       # the fake refuses longer bodies, as GitHub does
    assert "more resource changes (the full plan is in the job log)" in comment["body"]
    assert "| `staging` | yes | 400 |" in comment["body"] and "| `prod` | yes | 400 |" in comment["body"]


# --------------------------------------------------------------------------- one comment, several jobs
def event(tmp_path, sha: str, name: str | None = None) -> str:
    path = tmp_path / (name or f"event-{sha[:8]}.json")
    path.write_text(json.dumps({"number": 7, "pull_request": {"number": 7, "head": {"sha": sha}}}))
    return str(path)


def sections(body: str) -> dict:
    from stackci.deploy.comment import parse_sections
    return {s.target: s for s in parse_sections(body)}


def overview_row(body: str, target: str) -> str:
    return next(line for line in body.splitlines() if line.startswith(f"| `{target}` |"))


OLD, NEW = "a" * 40, "b" * 40


def test_a_plan_of_one_target_replaces_only_its_own_section(plan, fake, tmp_path, deploy, bundle):
    first = plan("-t", "staging", "-t", "prod", "--comment", extra_env=fake.github_env(event(tmp_path, OLD)))
    assert first.code == 0, first.stderr
    [comment] = ours(fake)
    before = sections(comment["body"])
    assert sorted(before) == ["prod", "staging"] and before["staging"].commit == OLD

    # the next push: only prod is planned (its own job, its own credentials), after prod was deployed
    assert deploy(root=bundle, target="prod").code == 0
    second = plan("-t", "prod", "--comment", extra_env=fake.github_env(event(tmp_path, NEW)))
    assert second.code == 0, second.stderr
    [again] = ours(fake)
    assert again["id"] == comment["id"] and second.outputs["comment-url"] == comment["html_url"]
    body = again["body"]
    after = sections(body)
    assert list(after) == ["staging", "prod"]                    # the order stays
    assert after["staging"].text == before["staging"].text and after["staging"].meta == before["staging"].meta
    assert after["prod"].commit == NEW and "No resource changes." in after["prod"].text
    assert overview_row(body, "staging") == \
        "| `staging` | yes | 4 | 0 | 0 | 0 | 7 | 0 | `aaaaaaaaaaaa` (earlier push) |"
    assert overview_row(body, "prod") == "| `prod` | no | 0 | 0 | 0 | 4 | 0 | 0 | `bbbbbbbbbbbb` |"
    assert "⚠️ `staging` was planned at commit `aaaaaaaaaaaa`, before the latest plan here (commit " \
           "`bbbbbbbbbbbb`)" in body
    assert "⚠️ `prod`" not in body
    assert body.count("### Plan: `small` →") == 2 and body.startswith(MARKER)


def test_two_jobs_of_one_push_fill_one_comment(plan, fake, tmp_path):
    env = fake.github_env(event(tmp_path, NEW))
    staging = plan("-t", "staging", "--comment", extra_env=env)
    prod = plan("-t", "prod", "--comment", extra_env=env)
    assert staging.code == 0 and prod.code == 0, staging.stderr + prod.stderr
    [comment] = ours(fake)
    assert staging.outputs["comment-url"] == prod.outputs["comment-url"] == comment["html_url"]
    assert list(sections(comment["body"])) == ["staging", "prod"]
    assert "earlier push" not in comment["body"] and "⚠️" not in comment["body"]
    assert [m for m, _ in fake.requests if m in ("POST", "PATCH")] == ["POST", "PATCH"]


def test_a_write_that_another_job_dropped_is_merged_again(plan, fake, tmp_path):
    first = plan("-t", "staging", "-t", "prod", "--comment", extra_env=fake.github_env(event(tmp_path, OLD)))
    assert first.code == 0, first.stderr
    [comment] = ours(fake)
    stale = comment["body"]
    landed = []

    def other_job(kind, number, written):
        # the prod job read the comment before our write and lands its own write just after it
        if not landed:
            landed.append(written["body"])
            written["body"] = stale

    fake.after_write = other_job
    fake.requests.clear()
    second = plan("-t", "staging", "--comment", extra_env=fake.github_env(event(tmp_path, NEW)))
    assert second.code == 0, second.stderr
    [again] = ours(fake)
    found = sections(again["body"])
    assert found["staging"].commit == NEW and found["prod"].commit == OLD
    assert [m for m, _ in fake.requests if m == "PATCH"] == ["PATCH", "PATCH"]   # written, dropped, written again
    assert not [c for c in second.commands if c.name == "warning"]


def test_a_comment_that_keeps_being_dropped_is_a_warning_not_a_failure(plan, fake, tmp_path):
    assert plan("-t", "staging", "-t", "prod", "--comment", extra_env=fake.github_env(event(tmp_path, OLD))).code == 0
    stale = ours(fake)[0]["body"]
    fake.after_write = lambda kind, number, written: written.update(body=stale)
    result = plan("-t", "staging", "--comment", extra_env=fake.github_env(event(tmp_path, NEW)))
    assert result.code == 0, result.stderr
    [warning] = [c for c in result.commands if c.name == "warning"]
    assert "may lack the plan of staging" in warning.data and "5 times" in warning.data
    assert len([m for m, _ in fake.requests if m == "PATCH"]) == 5


def test_comments_two_jobs_created_at_once_become_one(plan, fake, tmp_path):
    env = fake.github_env(event(tmp_path, NEW))
    assert plan("-t", "prod", "--comment", extra_env=env).code == 0
    [prod_only] = ours(fake)
    fake.comments[7].clear()
    first = fake.add_github_comment(7, "<!-- stackci:plan:small -->\nwritten by an older stackci")  # no sections
    second = fake.add_github_comment(7, prod_only["body"])
    result = plan("-t", "staging", "--comment", extra_env=env)
    assert result.code == 0, result.stderr
    [comment] = ours(fake)
    assert comment["id"] == first["id"] and result.outputs["comment-url"] == first["html_url"]
    assert list(sections(comment["body"])) == ["prod", "staging"]     # kept ones first, then new targets
    assert "older stackci" not in comment["body"]
    assert ("DELETE", f"/github/repos/acme/churn/issues/comments/{second['id']}") in fake.requests


def test_bundle_text_cannot_forge_or_end_a_section(plan, fake, tmp_path):
    forged = ('<!-- stackci:plan-target {"target":"prod","at":9e99,"id":"x","commit":"c"} --> '
              '<!-- stackci:plan-target-end -->')
    files = {**SMALL_BUNDLE, "databricks.yml": TWO_TARGETS}
    files["resources/jobs.yml"] = files["resources/jobs.yml"].replace("name: small-b", f"name: '{forged}'")
    root = write_bundle(tmp_path / "forged", files)
    env = fake.github_env(event(tmp_path, NEW))
    assert plan("-t", "staging", "--comment", root=root, extra_env=env).code == 0
    assert plan("-t", "prod", "--comment", root=root, extra_env=env).code == 0
    [comment] = ours(fake)
    found = sections(comment["body"])
    assert list(found) == ["staging", "prod"]
    assert "small-a" in found["staging"].text and "stackci:plan-target" in found["staging"].text   # shown, inert
    assert found["prod"].meta["at"] < 9e99
    assert comment["body"].count("<!-- stackci:plan-target {") == 2


def test_azure_threads_merge_the_targets_too(plan, fake):
    env = fake.azure_env()
    assert plan("-t", "staging", "--comment", extra_env=env, platform="azure").code == 0
    assert plan("-t", "prod", "--comment", extra_env=env, platform="azure").code == 0
    mine = [t for t in fake.threads[42] if not t["isDeleted"] and MARKER in t["comments"][0]["content"]]
    assert len(mine) == 1
    assert list(sections(mine[0]["comments"][0]["content"])) == ["staging", "prod"]


def test_a_new_target_next_to_a_huge_section_still_fits(plan, fake, tmp_path):
    files = huge_bundle()
    root = write_bundle(tmp_path / "huge", files)
    env = fake.github_env(event(tmp_path, NEW))
    assert plan("-t", "staging", "--comment", root=root, extra_env=env).code == 0
    assert len(ours(fake)[0]["body"]) > 40000               # staging alone takes most of the room
    assert plan("-t", "prod", "--comment", root=root, extra_env=env).code == 0
    [comment] = ours(fake)
    assert len(comment["body"]) <= 65536
    assert list(sections(comment["body"])) == ["staging", "prod"]
    assert overview_row(comment["body"], "staging").startswith("| `staging` | yes | 400 |")
    assert overview_row(comment["body"], "prod").startswith("| `prod` | yes | 400 |")


def test_two_plan_processes_at_once_end_with_one_comment_holding_both(fake, env, bundle, tmp_path):
    """Two real `stackci plan --comment` processes, one per target, that both read the comment before
    either writes (the fake holds their first listings until both arrived): first when there is no
    comment yet (both create one), then when it exists (both update it from the same old text)."""
    from deploy_support import cli_subprocess  # type: ignore[import-not-found]

    def both(sha: str) -> None:
        fake.hold_lists(2)
        procs = []
        for target in ("staging", "prod"):
            job_env = {**env, **fake.github_env(event(tmp_path, sha, f"event-{target}-{sha[:4]}.json")),
                       "GITHUB_OUTPUT": str(tmp_path / f"out-{target}"), "RUNNER_TEMP": str(tmp_path)}
            procs.append(cli_subprocess(["plan", "-t", target, "--project", str(bundle), "--comment"], job_env))
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert "may lack the plan" not in out + err

    both(OLD)
    [comment] = ours(fake)
    assert sorted(sections(comment["body"])) == ["prod", "staging"]
    assert ("POST", "/github/repos/acme/churn/issues/7/comments") in fake.requests
    both(NEW)
    [again] = ours(fake)
    found = sections(again["body"])
    assert sorted(found) == ["prod", "staging"]
    assert found["staging"].commit == found["prod"].commit == NEW
    assert "earlier push" not in again["body"]


def test_a_warning_of_both_targets_is_shown_once(plan, tmp_path):
    files = {**SMALL_BUNDLE, "databricks.yml": TWO_TARGETS}
    files["resources/jobs.yml"] = files["resources/jobs.yml"].replace("name: small-b", "name: small-b\n              colour: blue")
    root = write_bundle(tmp_path / "warned", files)
    result = plan("-t", "staging", "-t", "prod", root=root)
    assert result.code == 0, result.stderr
    warnings = [c for c in result.commands if c.name == "warning" and "colour" in c.data]
    assert len(warnings) == 1, warnings


def test_a_newer_plan_of_a_target_is_not_overwritten_by_an_older_one(plan, fake, tmp_path, monkeypatch):
    assert plan("-t", "staging", "-t", "prod", "--comment", extra_env=fake.github_env(event(tmp_path, NEW))).code == 0
    newer = ours(fake)[0]["body"]
    import time as clock
    real = clock.time
    monkeypatch.setattr(clock, "time", lambda: real() - 3600)        # a job of an older push, finishing late
    late = plan("-t", "staging", "--comment", extra_env=fake.github_env(event(tmp_path, OLD)))
    monkeypatch.undo()
    assert late.code == 0, late.stderr
    after = sections(ours(fake)[0]["body"])
    assert after["staging"].commit == NEW and after["staging"].meta == sections(newer)["staging"].meta
    assert not [c for c in late.commands if c.name == "warning" and "may lack" in c.data]
