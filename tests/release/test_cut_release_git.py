"""``stackci cut-release`` against real git repositories with a bare origin (git-only hosting)."""

from __future__ import annotations

import subprocess

import pytest

from release_support import git


def only_line(result):
    lines = [line for line in result.stdout.splitlines() if line.startswith("::error")]
    assert len(lines) == 1, result.stdout + result.stderr
    return lines[0]


def test_first_release_is_0_1_0_with_branch_tag_and_notes(release, repo):
    repo.commit("feat: training job")
    repo.commit("fix: seed the split")
    repo.push()
    sha = repo.head()
    result = release("--bump", "minor")
    assert result.code == 0, result.stdout + result.stderr
    assert result.outputs == {"version": "0.1.0", "branch": "release/v0.1.0", "tag": "v0.1.0", "sha": sha,
                              "release-url": ""}
    refs = repo.remote_refs()
    assert refs["refs/heads/release/v0.1.0"] == sha and refs["refs/tags/v0.1.0"] == sha
    message = repo.tag_message("v0.1.0")
    assert message.startswith("Release 0.1.0") and "### Features" in message and "- training job" in message
    assert "### Bug fixes" in result.summary and "🚀 Released v0.1.0" in result.summary
    assert result.errors() == []


def test_bump_from_existing_tags(release, repo):
    repo.tag("v0.1.0")
    repo.commit("more")
    repo.tag("v0.2.0")
    repo.commit("feat: new thing")
    repo.push()
    assert release("--bump", "patch").outputs["version"] == "0.2.1"
    repo.commit("fix: another")
    repo.push()
    result = release("--bump", "major")
    assert result.outputs["version"] == "1.0.0"
    assert "Changes since v0.2.1" in result.summary and "another" in result.summary
    assert "new thing" not in result.summary


def test_prereleases_count_up_and_then_promote(release, repo):
    repo.tag("v1.0.0")
    for n in range(1, 11):
        repo.commit(f"rc work {n}")
        repo.tag(f"v1.1.0-rc.{n}")
    repo.commit("feat: last rc change")
    repo.push()
    result = release("--bump", "minor", "--prerelease", "rc")
    assert result.code == 0, result.stderr
    assert result.outputs["tag"] == "v1.1.0-rc.11"        # rc.10 < rc.11 numerically, not as text
    assert "Changes since v1.1.0-rc.10" in result.summary
    repo.commit("fix: final fix")
    repo.push()
    final = release("--bump", "minor")
    assert final.outputs["version"] == "1.1.0"
    assert "Changes since v1.0.0" in final.summary and "rc work 1 (" in final.summary


def test_rerun_at_the_same_commit_is_success_and_pushes_nothing_new(release, repo):
    repo.commit("feat: x")
    repo.push()
    first = release("--bump", "minor")
    before = repo.remote_refs()
    again = release("--bump", "minor")          # a re-run of the same workflow: same version, not 0.2.0
    assert again.code == 0, again.stdout + again.stderr
    assert again.outputs == first.outputs
    assert repo.remote_refs() == before
    assert "(exists)" in again.summary
    assert [w.data for w in first.commands if w.name == "warning"] == []
    # the bump was not applied: said once, as a warning and in the summary, still exit 0
    warnings = [w.data for w in again.commands if w.name == "warning"]
    assert len(warnings) == 1 and f"{repo.head()[:12]} is already released as v0.1.0: --bump minor was not " \
        "applied" in warnings[0]
    assert "--bump minor was not applied" in again.summary
    patch = release("--bump", "patch", "--dry-run")
    assert patch.code == 0 and patch.outputs["version"] == "0.1.0"
    assert any("--bump patch was not applied" in w.data for w in patch.commands if w.name == "warning")


def test_rerun_finishes_a_release_whose_tag_push_was_missing(release, repo):
    repo.commit("feat: x")
    repo.push("HEAD:refs/heads/release/v0.1.0", "HEAD:refs/heads/main")
    result = release("--version", "0.1.0")
    assert result.code == 0, result.stdout + result.stderr
    assert repo.remote_refs()["refs/tags/v0.1.0"] == repo.head()


def test_existing_branch_at_another_commit_is_an_error_and_nothing_is_pushed(release, repo):
    old = repo.head()
    repo.push(f"{old}:refs/heads/release/v0.1.0")
    repo.commit("feat: newer")
    repo.push()
    before = repo.remote_refs()
    result = release("--version", "0.1.0")
    assert result.code == 2
    assert "branch release/v0.1.0 already exists at " + old[:12] in only_line(result)
    assert repo.remote_refs() == before


def test_existing_tag_at_another_commit_is_an_error(release, repo):
    repo.tag("v0.3.0")
    repo.commit("later")
    repo.push()
    result = release("--version", "0.3.0")
    assert result.code == 2 and "tag v0.3.0 already exists at" in only_line(result)


def test_version_not_greater_than_the_latest_is_refused(release, repo):
    repo.tag("v1.2.0")
    repo.commit("later")
    repo.push()
    before = repo.remote_refs()
    result = release("--version", "1.1.9")
    assert result.code == 2
    assert "1.1.9 is not greater than the latest release 1.2.0" in only_line(result)
    assert repo.remote_refs() == before


def test_shallow_clone_is_refused_with_fetch_depth_0(release, repo, tmp_path):
    repo.commit("one")
    repo.commit("two")
    repo.push()
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo.origin}", str(shallow))
    result = release("--bump", "patch", cwd=shallow)
    assert result.code == 2
    assert "shallow" in only_line(result) and "fetch-depth: 0" in only_line(result)
    az = release("--bump", "patch", cwd=shallow, platform="azure")
    assert az.code == 2 and "fetchDepth: 0" in az.stdout


def test_dirty_tree_is_refused_naming_the_file(release, repo):
    (repo.root / "f0.txt").write_text("edited\n")
    (repo.root / "untracked.txt").write_text("fine\n")
    result = release("--bump", "patch")
    assert result.code == 2 and "uncommitted changes (f0.txt)" in only_line(result)
    assert "refs/tags/v0.1.0" not in repo.remote_refs()


def test_long_lived_release_branch_fast_forwards(release, repo):
    first = release("--bump", "minor", "--release-branch", "release")
    assert first.code == 0, first.stderr
    assert first.outputs["branch"] == "release"
    repo.commit("feat: more")
    repo.commit("fix: bug")
    repo.push()
    second = release("--bump", "minor", "--release-branch", "release")
    assert second.code == 0, second.stdout + second.stderr
    refs = repo.remote_refs()
    assert refs["refs/heads/release"] == repo.head() and refs["refs/tags/v0.2.0"] == repo.head()
    assert "(fast-forward)" in second.summary


def test_long_lived_branch_that_diverged_is_never_forced(release, repo, tmp_path):
    release("--bump", "minor", "--release-branch", "release")
    # a hotfix pushed straight to release, not merged back into main
    git(repo.root, "checkout", "-q", "-b", "hotfix", "origin/main")
    repo.commit("hotfix on release")
    repo.push("HEAD:refs/heads/release")
    hotfix = repo.head()
    git(repo.root, "checkout", "-q", "main")
    repo.commit("feat: main moves on")
    repo.push()
    result = release("--bump", "minor", "--release-branch", "release")
    assert result.code == 2
    line = only_line(result)
    assert "cannot fast-forward" in line and "never force-pushes" in line
    assert repo.remote_refs()["refs/heads/release"] == hotfix
    assert "refs/tags/v0.2.0" not in repo.remote_refs()


def test_dry_run_pushes_nothing_and_creates_no_local_tag(release, repo):
    repo.commit("feat: x")
    repo.push()
    before = repo.remote_refs()
    result = release("--bump", "minor", "--dry-run")
    assert result.code == 0, result.stderr
    assert result.outputs["version"] == "0.1.0" and result.outputs["release-url"] == ""
    assert "dry run: would create branch release/v0.1.0" in result.stderr
    assert "Dry run" in result.summary
    assert repo.remote_refs() == before
    assert git(repo.root, "tag", "-l") == ""


@pytest.mark.parametrize("args, words", [
    (["--version", "1.2"], "not a semantic version"),
    (["--bump", "minor", "--version", "1.2.0"], "either --bump or --version"),
    ([], "give --bump"),
    (["--bump", "patch", "--from", "no-such-branch"], "--from 'no-such-branch' is not a known"),
    (["--bump", "patch", "--branch-pattern", "release/latest"], "must contain {version}"),
    (["--bump", "patch", "--branch-pattern", "r/{version}", "--release-branch", "release"],
     "either --branch-pattern or --release-branch"),
    (["--bump", "patch", "--prerelease", "rc.1"], "not a prerelease name"),
    (["--bump", "patch", "--notes", "missing.md"], "no such file"),
    (["--bump", "patch", "--remote", "upstream"], "remote 'upstream' does not exist"),
    (["--bump", "sideways"], "sideways"),
    (["--bump", "minor", "--repo", "/nonexistent/checkout"], "--repo '/nonexistent/checkout' does not exist"),
    (["--bump", "minor", "--repo", "f0.txt"], "'f0.txt' is a file"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_pushed(release, repo, args, words):
    before = repo.remote_refs()
    result = release(*args)
    assert result.code == 2, result.stdout + result.stderr
    assert words in only_line(result)
    assert repo.remote_refs() == before
    assert "Traceback" not in result.stderr


def test_from_a_remote_branch_and_a_notes_file(release, repo):
    git(repo.root, "checkout", "-q", "-b", "feature")
    repo.commit("feature work, not released")
    notes = repo.root.parent / "NOTES.md"
    notes.write_text("Hand-written notes\n")
    main = git(repo.root, "rev-parse", "origin/main")
    git(repo.root, "branch", "-q", "-D", "main")
    result = release("--version", "2.0.0", "--from", "main", "--notes", str(notes))
    assert result.code == 0, result.stdout + result.stderr
    assert result.outputs["sha"] == main
    assert "Hand-written notes" in repo.tag_message("v2.0.0")


def test_detached_head(release, repo):
    published = repo.head()
    repo.commit("local only")
    git(repo.root, "checkout", "-q", "--detach", "HEAD")
    result = release("--bump", "patch")
    assert result.code == 2 and "HEAD is detached" in only_line(result)
    git(repo.root, "checkout", "-q", "--detach", published)   # what Azure Pipelines checks out
    ok = release("--bump", "patch")
    assert ok.code == 0, ok.stdout + ok.stderr
    assert ok.outputs["sha"] == published and ok.outputs["version"] == "0.1.0"


def test_missing_push_permission_says_how_to_fix(release, repo):
    hook = repo.origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'Permission to acme/churn.git denied to github-actions[bot].' >&2\nexit 1\n")
    hook.chmod(0o755)
    repo.commit("feat: x")
    git(repo.root, "push", "-q", "--no-verify", "origin", "HEAD:refs/heads/side", check=False)
    result = release("--bump", "minor")
    assert result.code == 2
    line = only_line(result)
    assert "no permission to push" in line and "contents: write" in line
    assert "refs/tags/v0.1.0" not in repo.remote_refs()


def test_the_cli_runs_as_a_process_without_identity(repo, tmp_path):
    """In a CI job git has no user.email: the tag still gets a tagger."""
    import os
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "TF_BUILD", "GIT_"))}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "stackci", "cut-release", "--bump", "minor", "--hosting", "none"],
                          cwd=repo.root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "released v0.1.0" in proc.stderr
    tagger = git(repo.origin, "tag", "-l", "--format=%(taggeremail)", "v0.1.0")
    assert tagger == "<stackci@noreply.invalid>"


def test_a_secret_in_a_commit_message_stays_out_of_the_tag_and_summary(release, repo):
    repo.commit("fix: rotate the token ghp_s3cretvalue0123456789 that was pasted here")
    repo.push()
    result = release("--bump", "minor", "--token", "ghp_s3cretvalue0123456789")
    assert result.code == 0, result.stdout + result.stderr
    message = repo.tag_message("v0.1.0")
    assert "rotate the token *** that was pasted here" in message
    assert "ghp_s3cretvalue0123456789" not in message + result.summary
