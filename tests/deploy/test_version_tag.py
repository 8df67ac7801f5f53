"""The version tag a deploy records: a tag on the checked-out commit, found with ``git tag
--points-at HEAD`` only when the repository has a tag at all (read from ``.git`` first)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stackci.deploy import guard

BRANCH = guard.Ref("branch", "main", "git checkout")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "databricks.yml").write_text("bundle: {name: x}\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


@pytest.fixture
def git_calls(monkeypatch) -> list:
    calls: list = []
    run = subprocess.run

    def counting(args, *a, **k):
        if args[:2] == ["git", "tag"] and "--points-at" in args:   # the deploy's own question
            calls.append(args)
        return run(args, *a, **k)
    monkeypatch.setattr(guard.subprocess, "run", counting)
    return calls


def test_no_tag_in_the_repository_needs_no_git_process(repo, git_calls):
    assert guard.head_tag(repo, {}, BRANCH) is None
    assert git_calls == []


def test_outside_a_checkout_there_is_no_tag_and_no_git_process(tmp_path, git_calls):
    assert guard.head_tag(tmp_path, {}, BRANCH) is None
    assert git_calls == []


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
@pytest.mark.parametrize("annotated", [False, True], ids=["lightweight", "annotated"])
def test_a_tag_on_the_commit_is_found(repo, git_calls, packed, annotated):
    git(repo, "tag", *(["-a", "-m", "release"] if annotated else []), "v0.1.0")
    git(repo, "tag", "not-a-version")
    if packed:
        git(repo, "pack-refs", "--all")
        assert not any((repo / ".git" / "refs" / "tags").iterdir())
    assert guard.head_tag(repo, {}, BRANCH) == "v0.1.0"
    assert len(git_calls) == 1


def test_a_tag_on_another_commit_is_not_this_deploys(repo, git_calls):
    git(repo, "tag", "release/v0.1.0")               # a nested tag name: refs/tags/release/v0.1.0
    (repo / "more.txt").write_text("more\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "second")
    assert guard.head_tag(repo, {}, BRANCH) is None
    assert len(git_calls) == 1                      # a tag exists, so git was asked


def test_the_bundle_in_a_subfolder_and_a_ci_tag_ref(repo, git_calls):
    sub = repo / "project"
    sub.mkdir()
    git(repo, "tag", "v1.2.3")
    assert guard.head_tag(sub, {}, BRANCH) == "v1.2.3"
    assert guard.head_tag(sub, {}, guard.Ref("tag", "v2.0.0", "GITHUB_REF")) == "v2.0.0"
